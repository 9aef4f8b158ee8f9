import type pg from 'pg';
import type { TableSyncJob } from '../../queues/dual-write.js';
import { ValidationError } from '../../runtime/index.js';
import { applyPlan } from './apply-plans.js';
import { STATE_SCHEMA, ensureCopyTable, recreateCopyTable } from './copy-schema.js';
import { readRelation, readTableBatches } from './pg-source.js';
import { quoteIdent } from './pg-types.js';
import { DuckWriter } from './writer.js';

export interface TableSyncProgress {
  table: string;
  mode: 'full' | 'incremental';
  rows: number;
  batches: number;
}

export interface TableSyncResult extends TableSyncProgress {
  seconds: number;
}

/**
 * Copies a table from PostgreSQL to DuckDB through `pg` (a server-side cursor in one
 * REPEATABLE READ snapshot) and the Appender; the DuckDB `postgres` extension is not used
 * (it is downloaded at run time). The whole sync holds the writer's exclusive section and
 * runs in ONE DuckDB transaction, so readers see the old copy until it commits, and the
 * CDC applier waits meanwhile (its lag grows by the sync's duration): the snapshot is
 * then never older than what the applier has applied, and later changes replay on top.
 *
 * - full: the copy is dropped and rebuilt from the table's current shape (this also
 *   repairs a copy whose columns drifted), then every row is copied.
 * - incremental: rows whose `column` (DATA_SYNC_UPDATED_AT_COLUMN) is at or after `since`
 *   are upserted. Deletions are not seen by an incremental sync (CDC or a full sync carry them).
 */
export async function syncTable(writer: DuckWriter, pool: pg.Pool, job: TableSyncJob, progress: (p: TableSyncProgress) => Promise<void> | void): Promise<TableSyncResult> {
  const started = Date.now();
  const relation = await readRelation(pool, job.table);
  let filter: { sql: string; values: unknown[] } | undefined;
  if (job.mode === 'incremental') {
    const column = job.column ?? 'updated_at';
    if (!relation.columns.some((c) => c.name === column)) {
      throw new ValidationError(`table ${job.table} has no column ${column} for an incremental sync`, [{ field: 'since', reason: `table ${job.table} has no ${column} column (DATA_SYNC_UPDATED_AT_COLUMN)` }]);
    }
    if (!job.since || Number.isNaN(Date.parse(job.since))) throw new ValidationError('incremental sync needs a timestamp', [{ field: 'since', reason: 'an ISO 8601 timestamp' }]);
    filter = { sql: `${quoteIdent(column)} >= $1::timestamptz`, values: [job.since] };
  }
  const state: TableSyncProgress = { table: job.table, mode: job.mode, rows: 0, batches: 0 };
  await writer.exclusive((conn, cache) =>
    DuckWriter.transaction(conn, async () => {
      if (job.mode === 'full') await recreateCopyTable(conn, relation, cache.known);
      else await ensureCopyTable(conn, relation, cache.known);
      for await (const rows of readTableBatches(pool, relation, job.batchSize, filter)) {
        // A full sync fills the empty table it just created with rows unique by their PostgreSQL key: no delete needed.
        await applyPlan(conn, cache, { table: job.table, relation, truncate: false, upserts: rows, partial: [], deletes: [] }, job.mode === 'full');
        state.rows += rows.length;
        state.batches++;
        await progress({ ...state });
      }
      await conn.run(
        `INSERT INTO ${STATE_SCHEMA}.table_sync VALUES ($1, $2, $3, now())
           ON CONFLICT (table_name) DO UPDATE SET mode = excluded.mode, rows = excluded.rows, finished_at = excluded.finished_at`,
        [job.table, job.mode, state.rows],
      );
    }),
  );
  return { ...state, seconds: (Date.now() - started) / 1000 };
}
