import type pg from 'pg';
import type { CheckType } from './validate.js';

/**
 * The validator's reports as other capabilities read them (monitoring, the API): the
 * weights of the consistency score and each table's latest verdicts, from PostgreSQL
 * (concord_validation_results, written by actors/validator).
 */

/**
 * Weight of each check type in the consistency score; a type holding several checks
 * (one per rule or foreign key) splits its weight evenly among them. data_hash weighs
 * most: it is the only check that vouches for every value of every row.
 */
export const CHECK_WEIGHTS: Record<CheckType, number> = { row_count: 1, data_hash: 3, business_rules: 2, referential_integrity: 2 };

/** Score of a set of verdicts: 100 x (weight passed) / (weight with a verdict); skipped checks do not count, errors count as not passed. */
export function consistencyScore(results: ReadonlyArray<{ status: string; weight: number }>): number | null {
  let total = 0;
  let passed = 0;
  for (const r of results) {
    if (r.status === 'skipped') continue;
    total += r.weight;
    if (r.status === 'passed') passed += r.weight;
  }
  return total === 0 ? null : Math.round((10_000 * passed) / total) / 100;
}

export interface TableState {
  table: string;
  run_id: string;
  consistency_score: number | null;
  checked_at: string;
  checks: Array<{ check_type: string; check_name: string; status: string; diff_total: number }>;
}

/** The latest verdict of each check of each table (whichever run gave it) and the score from them. */
export async function latestTableStates(db: pg.Pool, tables: readonly string[]): Promise<TableState[]> {
  const { rows } = await db.query<{ table_name: string; run_id: string; check_type: string; check_name: string; status: string; weight: string; diff_total: string; finished_at: string }>(
    `SELECT DISTINCT ON (table_name, check_type, check_name) table_name, run_id, check_type, check_name, status, weight, diff_total, finished_at
       FROM concord_validation_results WHERE table_name = ANY($1) ORDER BY table_name, check_type, check_name, finished_at DESC`,
    [tables],
  );
  const out = new Map<string, TableState & { verdicts: Array<{ status: string; weight: number }> }>();
  for (const r of rows) {
    let t = out.get(r.table_name);
    if (!t) out.set(r.table_name, (t = { table: r.table_name, run_id: r.run_id, consistency_score: null, checked_at: r.finished_at, checks: [], verdicts: [] }));
    if (r.finished_at > t.checked_at) Object.assign(t, { checked_at: r.finished_at, run_id: r.run_id });
    t.checks.push({ check_type: r.check_type, check_name: r.check_name, status: r.status, diff_total: Number(r.diff_total) });
    t.verdicts.push({ status: r.status, weight: Number(r.weight) });
  }
  return [...out.values()].map(({ verdicts, ...t }) => ({ ...t, consistency_score: consistencyScore(verdicts) }));
}

