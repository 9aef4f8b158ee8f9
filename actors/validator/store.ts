import type pg from 'pg';
import type { CheckResult } from './checks.js';
import { consistencyScore } from '../../queues/consistency-reports.js';

/** Reports in PostgreSQL: concord_validation_runs (one per run) and concord_validation_results (one per verdict). */

export async function markRunning(db: pg.Pool, runId: string): Promise<void> {
  await db.query(`UPDATE concord_validation_runs SET status = 'running', started_at = coalesce(started_at, now()) WHERE id = $1`, [runId]);
}

/** Idempotent: a retried run overwrites its earlier verdict for the same check. */
export async function saveResult(db: pg.Pool, runId: string, r: CheckResult, cap: number): Promise<void> {
  await db.query(
    `INSERT INTO concord_validation_results (run_id, table_name, check_type, check_name, status, weight, source_count, copy_count, diff_total, diff_keys, details, duration_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
     ON CONFLICT (run_id, table_name, check_type, check_name) DO UPDATE SET status = excluded.status, weight = excluded.weight,
       source_count = excluded.source_count, copy_count = excluded.copy_count, diff_total = excluded.diff_total, diff_keys = excluded.diff_keys,
       details = excluded.details, duration_ms = excluded.duration_ms, finished_at = now()`,
    [runId, r.table, r.checkType, r.checkName, r.status, r.weight, r.sourceCount ?? null, r.copyCount ?? null, r.diffTotal, JSON.stringify(r.diffKeys.slice(0, cap)), JSON.stringify(r.details), r.durationMs],
  );
}

export async function finishRun(db: pg.Pool, runId: string, status: 'completed' | 'failed', score: number | null, error?: string): Promise<void> {
  await db.query(`UPDATE concord_validation_runs SET status = $2, score = $3, error = $4, finished_at = now() WHERE id = $1`, [runId, status, score, error ?? null]);
}

export async function deleteOldRuns(db: pg.Pool, days: number): Promise<number> {
  const res = await db.query(`DELETE FROM concord_validation_runs WHERE created_at < now() - ($1::int * interval '1 day')`, [days]);
  return res.rowCount ?? 0;
}

export interface RunReport {
  id: string;
  trigger: string;
  status: string;
  tables: string[];
  check_types: string[];
  repair: boolean;
  consistency_score: number | null;
  error: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  results: Array<Record<string, unknown>>;
}

export async function readReport(db: pg.Pool | pg.PoolClient, runId: string): Promise<RunReport | undefined> {
  const run = await db.query<Omit<RunReport, 'results' | 'consistency_score' | 'duration_ms'> & { score: string | null; duration_ms: string | null }>(
    `SELECT id, trigger, status, tables, check_types, repair, score, error, created_at, started_at, finished_at,
            (extract(epoch FROM finished_at - started_at) * 1000)::bigint AS duration_ms
       FROM concord_validation_runs WHERE id = $1`,
    [runId],
  );
  const r = run.rows[0];
  if (!r) return undefined;
  const results = await db.query(
    `SELECT table_name AS table, check_type, check_name, status, weight::float8 AS weight, source_count::float8 AS source_count, copy_count::float8 AS copy_count,
            diff_total::float8 AS diff_total, diff_keys, details, duration_ms, finished_at
       FROM concord_validation_results WHERE run_id = $1 ORDER BY table_name, check_type, check_name`,
    [runId],
  );
  const { score, duration_ms, ...rest } = r;
  return { ...rest, consistency_score: score === null ? null : Number(score), duration_ms: duration_ms === null ? null : Number(duration_ms), results: results.rows };
}

/** Differing keys stored by a run's data_hash checks, per table (capped at VALIDATOR_DIFF_KEYS_CAP). */
export async function storedDiffKeys(db: pg.Pool, runId: string): Promise<Array<{ table: string; keys: string[]; total: number }>> {
  const { rows } = await db.query<{ table_name: string; diff_keys: Array<{ key: string }>; diff_total: string }>(
    `SELECT table_name, diff_keys, diff_total FROM concord_validation_results WHERE run_id = $1 AND check_type = 'data_hash' AND status = 'failed'`,
    [runId],
  );
  return rows.map((r) => ({ table: r.table_name, keys: r.diff_keys.map((k) => k.key), total: Number(r.diff_total) }));
}

/** One table's score in one completed run: a point of the dashboard's score-over-time chart. */
export interface TableScorePoint {
  table: string;
  run_id: string;
  finished_at: string;
  consistency_score: number | null;
}

/**
 * The scores of each table in its last `runs` completed runs (a table counts only the runs
 * that checked it), oldest first per table; each score is weighted as the run's own score is.
 */
export async function tableScoreHistory(db: pg.Pool, tables: readonly string[], runs: number): Promise<TableScorePoint[]> {
  const { rows } = await db.query<{ run_id: string; table_name: string; finished_at: Date | string; status: string; weight: number }>(
    `WITH pairs AS (
       SELECT v.run_id, v.table_name, r.finished_at,
              row_number() OVER (PARTITION BY v.table_name ORDER BY r.finished_at DESC) AS n
         FROM (SELECT DISTINCT run_id, table_name FROM concord_validation_results WHERE table_name = ANY($1)) v
         JOIN concord_validation_runs r ON r.id = v.run_id AND r.status = 'completed')
     SELECT p.run_id, p.table_name, p.finished_at, res.status, res.weight::float8 AS weight
       FROM pairs p JOIN concord_validation_results res ON res.run_id = p.run_id AND res.table_name = p.table_name
      WHERE p.n <= $2
      ORDER BY p.table_name, p.finished_at, p.run_id`,
    [tables, runs],
  );
  const points = new Map<string, { point: TableScorePoint; verdicts: Array<{ status: string; weight: number }> }>();
  for (const r of rows) {
    const key = `${r.table_name}\u0000${r.run_id}`;
    let p = points.get(key);
    if (!p) points.set(key, (p = { point: { table: r.table_name, run_id: r.run_id, finished_at: new Date(r.finished_at).toISOString(), consistency_score: null }, verdicts: [] }));
    p.verdicts.push({ status: r.status, weight: r.weight });
  }
  return [...points.values()].map(({ point, verdicts }) => ({ ...point, consistency_score: consistencyScore(verdicts) }));
}
