import type pg from 'pg';

export interface OrphanReport {
  scannedAt: string;
  scanned: number;
  orphans: number;
  /** The first orphan ids found, for a human to look at. */
  sample: string[];
}

const CHUNK = 5_000;
const SAMPLE = 100;

/**
 * Portfolio transactions whose UUID is in neither queue. Walks the portfolio by
 * id in chunks (memory stays flat) and asks the queue database about each chunk.
 */
export async function scanOrphans(queueDb: pg.Pool, portfolioDb: pg.Pool): Promise<OrphanReport> {
  const report: OrphanReport = { scannedAt: new Date().toISOString(), scanned: 0, orphans: 0, sample: [] };
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const { rows } = await portfolioDb.query<{ id: string }>('SELECT id FROM portfolio_transactions WHERE id > $1 ORDER BY id LIMIT $2', [after, CHUNK]);
    if (rows.length === 0) break;
    const ids = rows.map((r) => r.id);
    const found = await queueDb.query<{ id: string }>(
      'SELECT id FROM investment_queue WHERE id = ANY($1::uuid[]) UNION ALL SELECT id FROM withdrawal_queue WHERE id = ANY($1::uuid[])',
      [ids],
    );
    const known = new Set(found.rows.map((r) => r.id));
    for (const id of ids) {
      if (known.has(id)) continue;
      report.orphans++;
      if (report.sample.length < SAMPLE) report.sample.push(id);
    }
    report.scanned += ids.length;
    after = ids[ids.length - 1]!;
    if (rows.length < CHUNK) break;
  }
  return report;
}
