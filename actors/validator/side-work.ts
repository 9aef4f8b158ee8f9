import type { DuckDBConnection } from '@duckdb/node-api';
import type pg from 'pg';
import { NotFoundError, ValidationError } from '../../runtime/index.js';
import type { SideColumn, SideWork } from '../../queues/validate.js';
import { cachedChecksum, type ChecksumCache } from './checksum-cache.js';
import { isIntegerKey } from './key-hash.js';
import { runHashed } from './side-work-hashed.js';
import { duckdb, duckTable, pgTable, postgresDialect, quoteIdent, rowHash64, rowMd5, type Dialect } from './normalize.js';

/** What one side returns for each op (JSON: it travels back as the job's return value). */
export interface SideResult {
  bounds?: { n: string; min: string | null; max: string | null };
  buckets?: Array<{ b: string; n: string; h: string }>;
  /**
   * rows/lookup: [key text, md5 of the canonical row]; lookup adds each column's canonical text and raw value.
   * The key text is the integer, or for other keys the PostgreSQL text (a JSON array of the columns' texts for composite keys).
   */
  rows?: Array<[string, string]>;
  detail?: Array<{ key: string; canonical: Record<string, string | null>; raw: Record<string, unknown> }>;
  violations?: string;
  sample?: string[];
  value?: string | null;
}

type Cell = string | null;
type Query = (sql: string, params: unknown[]) => Promise<Cell[][]>;

interface Side {
  dialect: Dialect;
  table: string;
  query: Query;
  duckTypes: Record<string, string>;
}

function keyColumn(columns: readonly SideColumn[]): SideColumn {
  const keys = columns.filter((c) => c.isKey);
  if (keys.length !== 1) throw new ValidationError('segment work needs a single-column key', [{ field: 'columns', reason: `expected one key column, got ${keys.length}` }]);
  return keys[0]!;
}

const need = <T>(v: T | undefined, field: string): T => {
  if (v === undefined) throw new ValidationError(`side work needs ${field}`, [{ field, reason: 'required for this op' }]);
  return v;
};

/** Row estimates below this are replaced by an exact count (a cheap one at that size). */
const ESTIMATE_FLOOR = 100_000;

/** Runs one piece of side work with the given dialect; both sides share this, only SQL spelling differs. */
async function run(side: Side, w: SideWork): Promise<SideResult> {
  const { dialect: d, table, query } = side;
  const key = keyColumn(w.columns);
  const k = d.bigint(quoteIdent(key.name));
  // Range filters on the bare column in PostgreSQL: `int4_col::bigint >= $1` could not use the index.
  const kw = d.name === 'postgres' ? quoteIdent(key.name) : k;
  const md5 = rowMd5(d, w.columns, side.duckTypes);
  const keyText = d.norm({ ...key, pgType: 'bigint' }, quoteIdent(key.name));
  switch (w.op) {
    case 'bounds': {
      if (w.estimate && d.name === 'postgres') {
        // min/max are two probes of the key index; a count(*) of 10M rows was about a second.
        // Below ESTIMATE_FLOOR rows (or never analysed) the exact count is cheap and safer.
        const [r] = await query(
          `SELECT (SELECT min(${kw}) FROM ${table})::text, (SELECT max(${kw}) FROM ${table})::text,
                  CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL
                       ELSE (c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint END::text
             FROM pg_class c WHERE c.oid = $1::regclass`,
          [table],
        );
        if (r && r[2] !== null && Number(r[2]) >= ESTIMATE_FLOOR) return { bounds: { n: r[2]!, min: r[0] ?? null, max: r[1] ?? null } };
      }
      const [r] = await query(`SELECT CAST(count(*) AS VARCHAR), CAST(min(${k}) AS VARCHAR), CAST(max(${k}) AS VARCHAR) FROM ${table}`, []);
      return { bounds: { n: r![0]!, min: r![1] ?? null, max: r![2] ?? null } };
    }
    case 'checksum': {
      const rows = await query(
        `SELECT CAST(b AS VARCHAR), CAST(count(*) AS VARCHAR), CAST(bit_xor(h) AS VARCHAR) FROM (
           SELECT ${d.intDiv(`${k} - CAST($1 AS BIGINT)`, 'CAST($3 AS BIGINT)')} AS b, ${rowHash64(d, w.columns, side.duckTypes)} AS h
             FROM ${table} WHERE ${kw} >= CAST($1 AS BIGINT) AND ${kw} < CAST($2 AS BIGINT)) s GROUP BY b`,
        [need(w.lo, 'lo'), need(w.hi, 'hi'), need(w.width, 'width')],
      );
      // The same 64 bits are a signed BIGINT in PostgreSQL and an unsigned UBIGINT in DuckDB.
      return { buckets: rows.map((r) => ({ b: r[0]!, n: r[1]!, h: BigInt.asUintN(64, BigInt(r[2]!)).toString() })) };
    }
    case 'rows': {
      const range = [need(w.lo, 'lo'), need(w.hi, 'hi')];
      if (!w.buckets) {
        const rows = await query(`SELECT ${keyText}, ${md5} FROM ${table} WHERE ${kw} >= CAST($1 AS BIGINT) AND ${kw} < CAST($2 AS BIGINT)`, range);
        return { rows: rows.map((r) => [r[0]!, r[1]!]) };
      }
      // Many small sub-segments (numbered by `width` from lo) in one query: PostgreSQL range-scans
      // the key index once per sub-segment; DuckDB filters one scan of [lo, hi) by sub-segment.
      const width = need(w.width, 'width');
      const rows =
        d.name === 'postgres'
          ? await query(
              `SELECT s.* FROM unnest($3::bigint[]) AS c(b) CROSS JOIN LATERAL (
                 SELECT ${keyText}, ${md5} FROM ${table}
                  WHERE ${kw} >= $1::bigint + c.b * $4::bigint AND ${kw} < least($1::bigint + (c.b + 1) * $4::bigint, $2::bigint)) s`,
              [...range, w.buckets, width],
            )
          : await query(
              `SELECT ${keyText}, ${md5} FROM ${table} WHERE ${kw} >= CAST($1 AS BIGINT) AND ${kw} < CAST($2 AS BIGINT)
                  AND ${d.intDiv(`${k} - CAST($1 AS BIGINT)`, 'CAST($4 AS BIGINT)')} IN (SELECT unnest(CAST(CAST($3 AS JSON) AS BIGINT[])))`,
              [...range, JSON.stringify(w.buckets.map(Number)), width],
            );
      return { rows: rows.map((r) => [r[0]!, r[1]!]) };
    }
    case 'lookup': {
      const keys = need(w.keys, 'keys');
      if (keys.length === 0) return { rows: [], detail: [] };
      const canon = w.columns.map((c, i) => `${d.norm(c, quoteIdent(c.name), side.duckTypes[c.name])} AS ${quoteIdent(`n${i}`)}`);
      // DuckDB: a semi-join on the key; list_contains per row was a 10M-row scan of ~0.4 s for 100 keys.
      const inList = d.name === 'postgres' ? `${kw} = ANY($1::bigint[])` : `${k} IN (SELECT unnest(CAST($1 AS BIGINT[])))`;
      const rows = await query(`SELECT ${keyText}, ${md5}, ${canon.join(', ')}, CAST(${d.name === 'postgres' ? 'row_to_json(t)' : 'to_json(t)'} AS VARCHAR) FROM ${table} t WHERE ${inList}`, [d.name === 'postgres' ? keys : `[${keys.join(',')}]`]);
      return {
        rows: rows.map((r) => [r[0]!, r[1]!]),
        detail: rows.map((r) => ({
          key: r[0]!,
          canonical: Object.fromEntries(w.columns.map((c, i) => [c.name, r[2 + i] ?? null])),
          raw: JSON.parse(r[2 + w.columns.length] ?? '{}') as Record<string, unknown>,
        })),
      };
    }
    case 'predicate': {
      // As a CHECK constraint: a row fails only when the predicate is false (NULL passes).
      const sql = need(w.sql, 'sql');
      const [count] = await query(`SELECT CAST(count(*) AS VARCHAR) FROM ${table} WHERE NOT coalesce((${sql}), true)`, []);
      const sample = await query(`SELECT ${keyText} FROM ${table} WHERE NOT coalesce((${sql}), true) ORDER BY ${k} LIMIT ${w.sample ?? 100}`, []);
      return { violations: count![0]!, sample: sample.map((r) => r[0]!) };
    }
    case 'aggregate': {
      const [r] = await query(`SELECT CAST((${need(w.sql, 'sql')}) AS VARCHAR) FROM ${table}`, []);
      return { value: r?.[0] ?? null };
    }
    case 'orphans': {
      const fk = need(w.fk, 'fk');
      const ref = d.name === 'postgres' ? pgTable(fk.refTable) : duckTable(fk.refTable).sql;
      const notNull = fk.columns.map((c) => `c.${quoteIdent(c)} IS NOT NULL`).join(' AND ');
      const on = fk.columns.map((c, i) => `p.${quoteIdent(fk.refColumns[i]!)} = c.${quoteIdent(c)}`).join(' AND ');
      const where = `${notNull} AND NOT EXISTS (SELECT 1 FROM ${ref} p WHERE ${on})`;
      const [count] = await query(`SELECT CAST(count(*) AS VARCHAR) FROM ${table} c WHERE ${where}`, []);
      const ck = d.bigint(`c.${quoteIdent(key.name)}`);
      const sample = await query(`SELECT CAST(${ck} AS VARCHAR) FROM ${table} c WHERE ${where} ORDER BY ${ck} LIMIT ${w.sample ?? 100}`, []);
      return { violations: count![0]!, sample: sample.map((r) => r[0]!) };
    }
  }
}

/**
 * Session settings that make PostgreSQL's float text the `%.15g` / `%.6g` the DuckDB side
 * prints (extra_float_digits = 0), and keep each statement read-only. No parallel workers:
 * the validator already runs segments side by side (`VALIDATOR_SEGMENT_CONCURRENCY` jobs per
 * side) beside the DuckDB side; parallel plans on top measured about 1.8x the CPU per row
 * (partial aggregates, workers fighting the DuckDB side for the same cores).
 */
export const PG_SESSION_OPTIONS = '-c extra_float_digits=0 -c default_transaction_read_only=on -c max_parallel_workers_per_gather=0';

const TEXT = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

/** The server's version, asked once per pool: the dialect's cheapest expressions need PostgreSQL 18. */
const serverVersions = new WeakMap<pg.Pool, Promise<number>>();
function serverVersion(pool: pg.Pool): Promise<number> {
  let v = serverVersions.get(pool);
  if (!v) {
    v = pool.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`).then((r) => Number(r.rows[0]!.v));
    v.catch(() => serverVersions.delete(pool)); // asked again next time
    serverVersions.set(pool, v);
  }
  return v;
}

/** PostgreSQL-side work; checksums go through `cache` when given (PostgreSQL 14+: bit_xor, hashtidextended). */
export async function pgSideWork(pool: pg.Pool, w: SideWork, cache?: ChecksumCache): Promise<SideResult> {
  const query: Query = async (sql, params) => (await pool.query<Cell[]>({ text: sql, values: params, rowMode: 'array', types: TEXT })).rows;
  const version = await serverVersion(pool);
  const dialect = postgresDialect(version);
  const side = { dialect, table: pgTable(w.table), query, duckTypes: {} };
  if (!isIntegerKey(w.columns)) return runHashed(side, w);
  if (w.op === 'checksum' && cache && cache.maxBuckets > 0 && version >= 140000) {
    keyColumn(w.columns);
    need(w.lo, 'lo');
    need(w.hi, 'hi');
    need(w.width, 'width');
    const buckets = await cachedChecksum(query, cache, dialect, w);
    if (buckets) return { buckets };
  }
  return run(side, w);
}

/** The copy's column types (DuckDB spelling), by column name; throws NotFound when the copy is missing. */
async function duckColumnTypes(conn: DuckDBConnection, table: string): Promise<Record<string, string>> {
  const t = duckTable(table);
  const res = await conn.runAndReadAll(`SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = $1 AND table_name = $2`, [t.schema, t.table]);
  const rows = res.getRows();
  if (rows.length === 0) throw new NotFoundError(`table ${table} has no copy in DuckDB (${t.sql})`, { table });
  return Object.fromEntries(rows.map((r) => [String(r[0]), String(r[1])]));
}

export async function duckSideWork(conn: DuckDBConnection, w: SideWork): Promise<SideResult> {
  const duckTypes = await duckColumnTypes(conn, w.table);
  const missing = w.columns.filter((c) => !(c.name in duckTypes)).map((c) => c.name);
  if (missing.length > 0) throw new NotFoundError(`the DuckDB copy of ${w.table} lacks column(s) ${missing.join(', ')}`, { table: w.table, missing });
  const query: Query = async (sql, params) => {
    const res = await conn.runAndReadAll(sql, params as never);
    return res.getRowsJson().map((r) => r.map((v) => (v === null ? null : typeof v === 'string' ? v : JSON.stringify(v))));
  };
  const side = { dialect: duckdb, table: duckTable(w.table).sql, query, duckTypes };
  return isIntegerKey(w.columns) ? run(side, w) : runHashed(side, w);
}
