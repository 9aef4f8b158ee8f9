import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';

interface Run {
  runId: string;
  scanned: number;
  created: number;
  updated: number;
  unchanged?: number;
  conflicts: number;
  startedAt: string;
  finishedAt: string;
}

/** The consistency manager over two real PostgreSQL databases and real Redis, driven through HTTP. */
describe('consistency manager (sync-scheduler)', () => {
  let proc: RunningProcess;
  let queueDb: pg.Pool;
  let portfolioDb: pg.Pool;
  let base: string;
  const tag = uniquePrefix('sync').replace(/-/g, '_');

  beforeAll(async () => {
    const { redisUrl, databaseUrl } = testServices();
    const queueDbUri = await freshDatabase(databaseUrl, `${tag}_queue`, 'queue-db');
    const portfolioDbUri = await freshDatabase(databaseUrl, `${tag}_portfolio`, 'portfolio-db');
    queueDb = new pg.Pool({ connectionString: queueDbUri, max: 4 });
    portfolioDb = new pg.Pool({ connectionString: portfolioDbUri, max: 4 });
    const env = runtimeEnv({ redisUrl, databaseUrl, prefix: uniquePrefix('sync') }, {
      QUEUE_DB_URI: queueDbUri,
      USER_PORTFOLIO_DB_URI: portfolioDbUri,
      SYNC_INTERVAL: '3600',
      OUTBOX_ENABLED: 'false',
      BATCH_SIZE: '10',
    });
    const capabilities = selectCapabilities('all', undefined, env);
    proc = await startProcess({ config: loadConfig(env), role: 'all', ...capabilities, onEscalate: () => undefined });
    base = proc.http.url;
    await waitIdle();
  });
  afterAll(async () => {
    await proc?.stop(10_000);
    await queueDb?.end();
    await portfolioDb?.end();
  });

  const stats = async () => (await (await fetch(`${base}/api/v1/stats`)).json()) as { sync: { lastRun: Run | null; recentRuns: Run[]; conflicts: { total: number; byKind: Record<string, number> }; totals: Record<string, number>; cursors: Record<string, { updatedAt: string }> } };
  const waitIdle = () => eventually(async () => (await proc.runtime.services.queues.queue('reconcile').getActiveCount()) === 0, 20_000, 50, 'no active run');
  /** Triggers a run through the API and waits for its report. */
  async function syncNow(): Promise<Run> {
    await waitIdle();
    const res = await fetch(`${base}/api/v1/sync`, { method: 'POST' });
    expect(res.status).toBe(202);
    const { runId } = (await res.json()) as { runId: string };
    return eventually(async () => (await stats()).sync.recentRuns.find((r) => r.runId === runId), 30_000, 50, `run ${runId} finished`);
  }
  async function enqueue(table: 'investment_queue' | 'withdrawal_queue', n: number, over: Partial<{ status: string; user: string; amount: string }> = {}): Promise<string[]> {
    const ids = Array.from({ length: n }, () => randomUUID());
    await queueDb.query(
      `INSERT INTO ${table} (id, user_id, amount, currency, status) SELECT id, $2, $3, 'EUR', $4 FROM unnest($1::uuid[]) AS id`,
      [ids, over.user ?? randomUUID(), over.amount ?? '100.25', over.status ?? 'pending'],
    );
    return ids;
  }
  const portfolio = async (ids: string[]) =>
    new Map((await portfolioDb.query<{ id: string; status: string; type: string; amount: string; user_id: string }>('SELECT id, status, type, amount::text AS amount, user_id FROM portfolio_transactions WHERE id = ANY($1::uuid[])', [ids])).rows.map((r) => [r.id, r]));

  it('entries of both queues become transactions with the same UUIDs and statuses; a later status change is followed', async () => {
    const inv = await enqueue('investment_queue', 23);
    const wd = await enqueue('withdrawal_queue', 12, { status: 'processing', amount: '5.5' });
    const run = await syncNow();
    expect(run).toMatchObject({ scanned: 35, created: 35, updated: 0, conflicts: 0 });
    const rows = await portfolio([...inv, ...wd]);
    expect(rows.size).toBe(35);
    for (const id of inv) expect(rows.get(id)).toMatchObject({ type: 'investment', status: 'pending', amount: '100.25000000' });
    for (const id of wd) expect(rows.get(id)).toMatchObject({ type: 'withdrawal', status: 'processing', amount: '5.50000000' });

    await queueDb.query(`UPDATE investment_queue SET status = 'completed' WHERE id = ANY($1::uuid[])`, [inv.slice(0, 5)]);
    await queueDb.query(`UPDATE withdrawal_queue SET status = 'failed' WHERE id = $1`, [wd[0]]);
    const second = await syncNow();
    expect(second).toMatchObject({ scanned: 6, created: 0, updated: 6, conflicts: 0 });
    const after = await portfolio([...inv.slice(0, 5), wd[0]!]);
    expect([...after.values()].filter((r) => r.status === 'completed')).toHaveLength(5);
    expect(after.get(wd[0]!)!.status).toBe('failed');
  });

  it('a run is idempotent: run again from the start, nothing changes', async () => {
    const before = (await portfolioDb.query('SELECT id, status, updated_at::text, synced_at::text FROM portfolio_transactions ORDER BY id')).rows;
    await waitIdle();
    await portfolioDb.query('DELETE FROM concord_sync_cursors'); // forget where we were: re-read everything
    const run = await syncNow();
    expect(run.scanned).toBe(before.length);
    expect(run).toMatchObject({ created: 0, updated: 0, conflicts: 0, unchanged: before.length });
    const after = (await portfolioDb.query('SELECT id, status, updated_at::text, synced_at::text FROM portfolio_transactions ORDER BY id')).rows;
    expect(after).toEqual(before);
  });

  it('entries sharing one updated time across a page boundary are all synced', async () => {
    // One transaction: one now(), so 25 entries share updated_at; pages hold 10.
    const ids = await enqueue('investment_queue', 25);
    const ts = await queueDb.query('SELECT count(DISTINCT updated_at) AS n FROM investment_queue WHERE id = ANY($1::uuid[])', [ids]);
    expect(Number(ts.rows[0].n)).toBe(1);
    const run = await syncNow();
    expect(run.created).toBe(25);
    expect((await portfolio(ids)).size).toBe(25);
  });

  it('an entry of a transaction still open when the run starts is not skipped once it commits', async () => {
    const slow = await queueDb.connect();
    const slowId = randomUUID();
    try {
      await slow.query('BEGIN');
      await slow.query(`INSERT INTO investment_queue (id, user_id, amount, currency) VALUES ($1, $2, 1, 'EUR')`, [slowId, randomUUID()]);
      await new Promise((r) => setTimeout(r, 50));
      const later = await enqueue('investment_queue', 3); // committed, with a later updated_at
      const run = await syncNow();
      // The horizon stops before the open transaction: the later rows wait too.
      expect(run.created).toBe(0);
      expect((await portfolio(later)).size).toBe(0);
      await slow.query('COMMIT');
      const next = await syncNow();
      expect(next.created).toBe(4);
      expect((await portfolio([slowId, ...later])).size).toBe(4);
    } finally {
      slow.release();
    }
  });

  it('conflicting immutable fields and a backward status move are recorded as conflicts and leave the row untouched', async () => {
    // A portfolio row that already holds this UUID for another user.
    const clashId = randomUUID();
    const otherUser = randomUUID();
    await portfolioDb.query(
      `INSERT INTO portfolio_transactions (id, user_id, type, amount, currency, status, created_at, updated_at) VALUES ($1, $2, 'investment', 100.25, 'EUR', 'pending', now(), now())`,
      [clashId, otherUser],
    );
    await queueDb.query(`INSERT INTO investment_queue (id, user_id, amount, currency) VALUES ($1, $2, 100.25, 'EUR')`, [clashId, randomUUID()]);
    const fine = await enqueue('investment_queue', 3);
    const back = await enqueue('withdrawal_queue', 1, { status: 'processing' });
    const first = await syncNow();
    expect(first).toMatchObject({ created: 4, conflicts: 1 });
    expect((await portfolio([clashId])).get(clashId)!.user_id).toBe(otherUser);
    expect((await portfolio(fine)).size).toBe(3); // the rest of the batch went ahead

    await queueDb.query(`UPDATE withdrawal_queue SET status = 'pending' WHERE id = $1`, [back[0]]);
    const second = await syncNow();
    expect(second).toMatchObject({ updated: 0, conflicts: 1 });
    expect((await portfolio(back)).get(back[0]!)!.status).toBe('processing');

    const { rows } = await portfolioDb.query<{ transaction_id: string; kind: string; fields: string[]; queue_side: { user_id: string }; portfolio_side: { user_id: string } | null }>(
      'SELECT transaction_id, kind, fields, queue_side, portfolio_side FROM concord_sync_conflicts ORDER BY id',
    );
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ transaction_id: clashId, kind: 'immutable_mismatch', fields: ['user_id'], portfolio_side: { user_id: otherUser } });
    expect(rows[1]).toMatchObject({ transaction_id: back[0], kind: 'backward_transition', fields: ['status'] });
    const s = await stats();
    expect(s.sync.conflicts).toEqual({ total: 2, byKind: { immutable_mismatch: 1, backward_transition: 1 } });
  });

  it('a repeated manual trigger while a run is requested answers with that run', async () => {
    await waitIdle();
    await enqueue('investment_queue', 200);
    const [a, b] = await Promise.all([fetch(`${base}/api/v1/sync`, { method: 'POST' }), fetch(`${base}/api/v1/sync`, { method: 'POST' })]);
    const ra = (await a.json()) as { runId: string };
    const rb = (await b.json()) as { runId: string };
    expect(ra.runId).toBe(rb.runId);
    await eventually(async () => (await stats()).sync.recentRuns.find((r) => r.runId === ra.runId), 30_000, 50, 'shared run finished');
  });

  it('reports portfolio transactions whose UUID is in no queue as orphans', async () => {
    const orphan = randomUUID();
    await portfolioDb.query(
      `INSERT INTO portfolio_transactions (id, user_id, type, amount, currency, status, created_at, updated_at) VALUES ($1, $2, 'withdrawal', 1, 'EUR', 'completed', now(), now())`,
      [orphan, randomUUID()],
    );
    await waitIdle();
    const job = await proc.runtime.services.queues.add('reconcile', 'orphans', { trigger: 'manual', kind: 'orphans' });
    const orphans = await eventually(async () => {
      const o = ((await stats()).sync as unknown as { orphans: { scannedAt: string; orphans: number; sample: string[]; scanned: number } | null }).orphans;
      return o && Date.parse(o.scannedAt) >= job.timestamp - 5 && o.sample.includes(orphan) ? o : undefined;
    }, 20_000, 100, 'orphan scan');
    expect(orphans.orphans).toBe(1);
    expect(orphans.scanned).toBe(Number((await portfolioDb.query('SELECT count(*) AS n FROM portfolio_transactions')).rows[0].n));
  });

  it('/ready names both databases; stats report the cursors and totals', async () => {
    const ready = (await (await fetch(`${base}/ready`)).json()) as { checks: Record<string, { ok: boolean }> };
    expect(ready.checks).toMatchObject({ queue_db: { ok: true }, portfolio_db: { ok: true } });
    const s = await stats();
    expect(Object.keys(s.sync.cursors).sort()).toEqual(['investment_queue', 'withdrawal_queue']);
    expect(s.sync.totals.created).toBeGreaterThanOrEqual(35 + 25 + 4 + 4);
  });
});
