import type { DuckDBAppender, DuckDBConnection } from '@duckdb/node-api';
import { FIELD_SEP, rowFieldSql, unpackRow } from '../../queues/cdc-rows.js';
import { copyTable, quoteIdent } from './pg-types.js';
import { ensureCopyTable, type CopyShape } from './copy-schema.js';
import type { PlanRow, TablePlan } from './reduce.js';

/** Per-connection caches: known copy shapes, staging tables by name, applied LSN per slot. Dropped after any failure. */
export interface ApplyCache {
  known: Map<string, string>;
  stages: Set<string>;
  lsns: Map<string, string | null>;
}

export function newApplyCache(): ApplyCache {
  return { known: new Map(), stages: new Set(), lsns: new Map() };
}

/**
 * Loads rows into a VARCHAR staging table with the Appender (one temp table per role
 * and width, reused; roles keep the delete keys, the upserts and the partial rows of one
 * plan apart, since the delete reads them together). `cols` picks and orders the
 * values; `prepare[i]` converts column i's text. Returns what to read the rows FROM, as
 * columns `c0..` (staged column j = row field `cols[j]`):
 * - packed rows (queues/cdc-rows.ts, what the reader sends) go in whole, one string per row,
 *   and DuckDB splits them: no value becomes a JavaScript string in this process (columns
 *   that need `prepare`, arrays, are converted here and staged beside the row);
 * - value rows (table syncs, older readers, merged rows) are appended value by value; a plan
 *   that mixes the two forms (rare) is staged as values.
 */
async function stage(
  conn: DuckDBConnection,
  cache: ApplyCache,
  role: string,
  rows: readonly PlanRow[],
  cols: readonly number[],
  prepare: ReadonlyArray<((t: string) => string) | undefined>,
): Promise<string> {
  if (rows.every((r) => typeof r === 'string')) {
    // Columns that need `prepare` (arrays) are converted here and staged beside the row: c1, c2, ..
    const prepared = cols.filter((i) => prepare[i] !== undefined);
    const name = await appendRows(conn, cache, `_concord_${role}_packed${prepared.length}`, 1 + prepared.length, (ap) => {
      for (const row of rows as readonly string[]) {
        ap.appendVarchar(row);
        if (prepared.length > 0) {
          const values = unpackRow(row);
          for (const i of prepared) {
            const v = values[i];
            if (v === null || v === undefined) ap.appendNull();
            else ap.appendVarchar(prepare[i]!(v));
          }
        }
        ap.endRow();
      }
    });
    const field = (i: number) => (prepare[i] === undefined ? rowFieldSql('p', i) : `c${1 + prepared.indexOf(i)}`);
    return `(SELECT ${cols.map((i, j) => `${field(i)} AS c${j}`).join(', ')} FROM (SELECT string_split(c0, '${FIELD_SEP}') AS p, * FROM ${name}))`;
  }
  const width = cols.length;
  return appendRows(conn, cache, `_concord_${role}_${width}`, width, (ap) => {
    for (const r of rows) {
      const row = typeof r === 'string' ? unpackRow(r) : r;
      for (let j = 0; j < width; j++) {
        const i = cols[j]!;
        const v = row[i];
        if (v === null || v === undefined) ap.appendNull();
        else {
          const p = prepare[i];
          ap.appendVarchar(p ? p(v) : v);
        }
      }
      ap.endRow();
    }
  });
}

/** (Re)fills the temp table `name` of `width` VARCHAR columns through an Appender; returns its qualified name. */
async function appendRows(conn: DuckDBConnection, cache: ApplyCache, name: string, width: number, fill: (ap: DuckDBAppender) => void): Promise<string> {
  if (!cache.stages.has(name)) {
    await conn.run(`CREATE OR REPLACE TEMP TABLE ${name} (${Array.from({ length: width }, (_, i) => `c${i} VARCHAR`).join(', ')})`);
    cache.stages.add(name);
  } else {
    await conn.run(`DELETE FROM temp.main.${name}`);
  }
  const ap = await conn.createAppender(name, 'main', 'temp');
  try {
    fill(ap);
    ap.flushSync();
  } finally {
    ap.closeSync();
  }
  return `temp.main.${name}`;
}

/** The key columns of a staging table as typed `k0, k1, ..` (`at[j]` = staging column of key j). */
function keySelect(shape: CopyShape, at: readonly number[], from: string): string {
  return `SELECT ${shape.keyIdx.map((i, j) => `${shape.mappings[i]!.castSql(`c${at[j]!}`)} AS k${j}`).join(', ')} FROM ${from}`;
}

/**
 * Applies one table's plan inside the caller's transaction. The copy has NO primary
 * key (DuckDB's ART index made every update of an existing key cost a delete and an
 * insert in the index: about 6x slower than the set-based path below), so uniqueness
 * holds by construction instead:
 *   1. a plan holds at most one change per key (reduceBatch; table syncs read rows by
 *      their PostgreSQL primary key; key refreshes dedupe), and
 *   2. every key the plan writes is deleted first, in the same transaction, and only
 *      one writer (DuckWriter.exclusive) ever writes a copy.
 * Steps: TRUNCATE (a DELETE); partial rows (updates whose unchanged TOAST columns were
 * not sent) are completed from the copy's current row (an inner join: a row the copy
 * lacks stays absent, as an UPDATE would leave it); then ONE hash-join DELETE of every
 * key the plan deletes or writes, and plain INSERTs. `fresh` (a full sync into the empty
 * table it just created) skips the delete. Returns the row changes written.
 */
export async function applyPlan(conn: DuckDBConnection, cache: ApplyCache, plan: TablePlan, fresh = false): Promise<number> {
  if (!plan.relation) {
    // A truncate of a table the batch sends nothing else for: clear its copy if there is one.
    if (plan.truncate) {
      const { schema, table, sql } = copyTable(plan.table);
      const found = await conn.runAndReadAll(`SELECT 1 FROM duckdb_tables() WHERE schema_name = $1 AND table_name = $2`, [schema, table]);
      if (found.currentRowCount > 0) await conn.run(`DELETE FROM ${sql}`);
    }
    return 0;
  }
  const rel = plan.relation;
  const shape = await ensureCopyTable(conn, rel, cache.known);
  const names = rel.columns.map((c) => c.name);
  const colList = names.map(quoteIdent).join(', ');
  const prepare = shape.mappings.map((m) => m.prepare);
  const all = names.map((_, i) => i);
  if (plan.truncate) await conn.run(`DELETE FROM ${shape.sql}`);
  // Every key written or deleted, typed, for the one DELETE.
  const keySources: string[] = [];
  const merged: string[] = [];
  for (const [g, group] of plan.partial.entries()) {
    const s = await stage(conn, cache, `part${g}`, group.rows, group.sent, prepare);
    const at = shape.keyIdx.map((i) => {
      const j = group.sent.indexOf(i);
      if (j < 0) throw new Error(`key column ${names[i]} missing from the sent columns`);
      return j;
    });
    const on = shape.keyIdx.map((i, j) => `t.${quoteIdent(names[i]!)} = ${shape.mappings[i]!.castSql(`s.c${at[j]!}`)}`).join(' AND ');
    const values = all.map((i) => {
      const j = group.sent.indexOf(i);
      return j < 0 ? `t.${quoteIdent(names[i]!)}` : shape.mappings[i]!.castSql(`s.c${j}`);
    });
    // Materialised BEFORE the delete below removes the rows it reads the unsent values from.
    const name = `_concord_merged${g}`;
    await conn.run(`CREATE OR REPLACE TEMP TABLE ${name} AS SELECT ${values.join(', ')} FROM ${s} s JOIN ${shape.sql} t ON ${on}`);
    merged.push(`temp.main.${name}`);
    keySources.push(keySelect(shape, at, s));
  }
  if (plan.deletes.length > 0) {
    // Deletes carry key values only, in key-column order: stage them as columns 0..k-1.
    const s = await stage(conn, cache, 'del', plan.deletes, shape.keyIdx.map((_, j) => j), shape.keyIdx.map((i) => prepare[i]));
    keySources.push(keySelect(shape, shape.keyIdx.map((_, j) => j), s));
  }
  let upserts: string | undefined;
  if (plan.upserts.length > 0) {
    upserts = await stage(conn, cache, 'up', plan.upserts, all, prepare);
    if (!fresh) keySources.push(keySelect(shape, shape.keyIdx, upserts));
  }
  if (keySources.length > 0) {
    const cond = shape.keyIdx.map((i, j) => `t.${quoteIdent(names[i]!)} = k.k${j}`).join(' AND ');
    await conn.run(`DELETE FROM ${shape.sql} t USING (${keySources.join(' UNION ALL ')}) k WHERE ${cond}`);
  }
  if (upserts) await conn.run(`INSERT INTO ${shape.sql} (${colList}) SELECT ${all.map((i) => shape.mappings[i]!.castSql(`c${i}`)).join(', ')} FROM ${upserts}`);
  for (const m of merged) await conn.run(`INSERT INTO ${shape.sql} (${colList}) SELECT * FROM ${m}`);
  return plan.deletes.length + plan.upserts.length + plan.partial.reduce((n, g) => n + g.rows.length, 0);
}
