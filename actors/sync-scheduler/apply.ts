import type pg from 'pg';
import { ConflictError } from '../../runtime/index.js';
import { classify, type Plan, type PortfolioRow } from './classify.js';
import type { Cursor, QueueEntry, Source } from './entries.js';
import { START_CURSOR } from './entries.js';

export interface PageResult {
  plan: Plan;
  cursor: Cursor;
}

export async function readCursor(portfolioDb: pg.Pool | pg.PoolClient, source: Source, forUpdate = false): Promise<Cursor> {
  const { rows } = await portfolioDb.query<{ updated_at: string; id: string }>(
    `SELECT updated_at::text AS updated_at, id FROM concord_sync_cursors WHERE source = $1${forUpdate ? ' FOR UPDATE' : ''}`,
    [source.table],
  );
  return rows[0] ? { updatedAt: rows[0].updated_at, id: rows[0].id } : START_CURSOR;
}

/**
 * Applies one page in one portfolio transaction: creates, forward status moves,
 * conflicts, and the cursor past the page's last entry. Either all of it lands or
 * none, so a failure at any point leaves the cursor before the page and the page
 * is read again. The cursor is checked under a row lock: if another run moved it
 * since this page was read, the page is refused rather than applied twice.
 */
export async function applyPage(portfolioDb: pg.Pool, source: Source, readFrom: Cursor, entries: readonly QueueEntry[]): Promise<PageResult> {
  const last = entries[entries.length - 1]!;
  const next: Cursor = { updatedAt: last.updated_at, id: last.id };
  const client = await portfolioDb.connect();
  let failure: Error | undefined;
  // A checked-out client has no pool listener: a server shutdown between two
  // queries would otherwise be an unhandled 'error' event. Keep it as the failure.
  const onError = (err: Error) => (failure ??= err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    await client.query(`INSERT INTO concord_sync_cursors (source, updated_at, id) VALUES ($1, '-infinity', $2) ON CONFLICT (source) DO NOTHING`, [source.table, START_CURSOR.id]);
    const current = await readCursor(client, source, true);
    if (current.updatedAt !== readFrom.updatedAt || current.id !== readFrom.id) {
      throw new ConflictError(`sync cursor of ${source.table} moved during the run (another run applied this page)`, { source: source.table });
    }
    const ids = entries.map((e) => e.id);
    const { rows } = await client.query<PortfolioRow>(
      `SELECT id, user_id, type, amount::text AS amount, currency, status FROM portfolio_transactions WHERE id = ANY($1::uuid[]) FOR UPDATE`,
      [ids],
    );
    const plan = classify(source, entries, new Map(rows.map((r) => [r.id, r])));

    if (plan.create.length > 0) {
      const c = plan.create;
      await client.query(
        `INSERT INTO portfolio_transactions (id, user_id, type, amount, currency, status, created_at, updated_at)
         SELECT id, user_id, $3, amount, currency, status, created_at, updated_at
           FROM unnest($1::uuid[], $2::uuid[], $4::numeric[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[])
                AS u(id, user_id, amount, currency, status, created_at, updated_at)`,
        [c.map((e) => e.id), c.map((e) => e.user_id), source.type, c.map((e) => e.amount), c.map((e) => e.currency), c.map((e) => e.status), c.map((e) => e.created_at), c.map((e) => e.updated_at)],
      );
    }
    if (plan.update.length > 0) {
      const u = plan.update;
      await client.query(
        `UPDATE portfolio_transactions p SET status = u.status, updated_at = u.updated_at, synced_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS u(id, status, updated_at)
          WHERE p.id = u.id`,
        [u.map((e) => e.id), u.map((e) => e.status), u.map((e) => e.updated_at)],
      );
    }
    if (plan.conflicts.length > 0) {
      const k = plan.conflicts;
      await client.query(
        `INSERT INTO concord_sync_conflicts (transaction_id, source, kind, fields, queue_side, portfolio_side, source_updated_at)
         SELECT u.id, $2, u.kind, string_to_array(u.fields, ','), u.queue_side::jsonb, u.portfolio_side::jsonb, u.updated_at
           FROM unnest($1::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
                AS u(id, kind, fields, queue_side, portfolio_side, updated_at)
         ON CONFLICT (transaction_id, kind, source_updated_at) DO NOTHING`,
        [
          k.map((c) => c.entry.id),
          source.table,
          k.map((c) => c.kind),
          k.map((c) => c.fields.join(',')),
          k.map((c) => JSON.stringify({ ...c.entry, type: source.type })),
          k.map((c) => (c.existing ? JSON.stringify(c.existing) : null)),
          k.map((c) => c.entry.updated_at),
        ],
      );
    }
    await client.query(`UPDATE concord_sync_cursors SET updated_at = $2::timestamptz, id = $3::uuid, moved_at = now() WHERE source = $1`, [source.table, next.updatedAt, next.id]);
    await client.query('COMMIT');
    return { plan, cursor: next };
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err));
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    // A client that failed mid-transaction may be broken (server gone): discard it.
    client.off('error', onError);
    client.release(failure);
  }
}
