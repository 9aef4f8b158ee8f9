import type pg from 'pg';
import type { DualWriteJob } from '../../queues/dual-write.js';

type Db = pg.Pool | pg.PoolClient;

/** Recorded in the same PostgreSQL transaction as the write itself. */
export async function insertOp(db: Db, job: DualWriteJob): Promise<void> {
  await db.query(
    `INSERT INTO concord_dual_write_ops (id, table_name, operation, primary_key, consistency, strategy) VALUES ($1, $2, $3, $4, $5, $6)`,
    [job.operationId, job.table, job.operation, JSON.stringify(job.key), job.consistency, job.strategy],
  );
}

export async function markOp(db: Db, id: string, status: 'applied' | 'failed' | 'skipped' | 'pending', error?: string): Promise<void> {
  await db.query(
    `UPDATE concord_dual_write_ops SET status = $2, last_error = $3, applied_at = CASE WHEN $2 = 'applied' THEN now() ELSE applied_at END WHERE id = $1`,
    [id, status, error ?? null],
  );
}

/** Pending operations older than `olderThanMs`: their DuckDB leg may have lost its job. */
export async function stalePendingOps(db: Db, olderThanMs: number, limit: number): Promise<DualWriteJob[]> {
  const { rows } = await db.query<{ id: string; table_name: string; operation: DualWriteJob['operation']; primary_key: Array<string | null>; consistency: DualWriteJob['consistency']; strategy: DualWriteJob['strategy'] }>(
    `SELECT id, table_name, operation, primary_key, consistency, strategy FROM concord_dual_write_ops
      WHERE status = 'pending' AND created_at < now() - ($1::int * interval '1 millisecond') ORDER BY created_at LIMIT $2`,
    [olderThanMs, limit],
  );
  return rows.map((r) => ({ operationId: r.id, table: r.table_name, operation: r.operation, key: r.primary_key, consistency: r.consistency, strategy: r.strategy }));
}

/** Applied operations past retention are deleted (bounded per call). */
export async function deleteOldOps(db: Db, retentionHours: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM concord_dual_write_ops WHERE id IN (
       SELECT id FROM concord_dual_write_ops WHERE status IN ('applied', 'skipped') AND coalesce(applied_at, created_at) < now() - ($1::int * interval '1 hour') LIMIT 10000)`,
    [retentionHours],
  );
  return rowCount ?? 0;
}

export async function opCounts(db: Db): Promise<Record<'pending' | 'applied' | 'failed' | 'skipped', number>> {
  const { rows } = await db.query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM concord_dual_write_ops GROUP BY status`);
  const out = { pending: 0, applied: 0, failed: 0, skipped: 0 };
  for (const r of rows) if (r.status in out) out[r.status as keyof typeof out] = Number(r.n);
  return out;
}
