import { ValidationError } from '../../runtime/index.js';
import type { SideWork } from '../../queues/validate.js';
import { KH, KH_SPACE, keyColumnsOf, keyOfRow, keyPartsSql, khSql } from './key-hash.js';
import { duckTable, pgTable, quoteIdent, rowHash64, rowMd5, rowText, type Dialect } from './normalize.js';
import type { SideResult } from './side-work.js';

type Cell = string | null;
export type Query = (sql: string, params: unknown[]) => Promise<Cell[][]>;

export interface Side {
  dialect: Dialect;
  table: string;
  query: Query;
  duckTypes: Record<string, string>;
}

const need = <T>(v: T | undefined, field: string): T => {
  if (v === undefined) throw new ValidationError(`side work needs ${field}`, [{ field, reason: 'required for this op' }]);
  return v;
};

/**
 * A key value given as PostgreSQL text, in the copy's DuckDB type (the dual-writer's
 * conversion: BLOB from `\x` hex, everything else a cast). TRY_CAST: a text DuckDB cannot
 * read matches no row instead of failing the whole lookup.
 */
function duckKeyValue(x: string, duckType: string): string {
  const t = duckType.trim().toUpperCase();
  if (t === 'VARCHAR') return x;
  if (t === 'BLOB') return `from_hex(substr(${x}, 3))`;
  return `TRY_CAST(${x} AS ${duckType})`;
}

/**
 * Side work for tables whose key is not one integer column: segments are ranges of kh (see
 * key-hash.ts), computed once per row in a subquery (`OFFSET 0` keeps PostgreSQL from
 * inlining it, which would compute the md5 of the key three times per row), and keys travel
 * as their PostgreSQL text. Both sides share this; only SQL spelling differs.
 */
export async function runHashed(side: Side, w: SideWork): Promise<SideResult> {
  const { dialect: d, table, query, duckTypes } = side;
  const keys = keyColumnsOf(w.columns);
  if (keys.length === 0) throw new ValidationError('segment work needs a key', [{ field: 'columns', reason: 'no key column' }]);
  const pgSide = d.name === 'postgres';
  const parts = keyPartsSql(d, keys, duckTypes);
  const md5 = rowMd5(d, w.columns, duckTypes);
  // kh once per row: PostgreSQL would otherwise inline the subquery and compute it in each
  // qual and in the select list (measured 1.2-3x slower); DuckDB pushes the range filter into
  // its scan either way, and its OFFSET 0 costs more (an ordered, single-threaded limit)
  // than computing kh again for the rows that pass.
  const keyed = `(SELECT ${khSql(d, keys, duckTypes)} AS ${KH}, * FROM ${table}${pgSide ? ' OFFSET 0' : ''}) s`;
  const args: unknown[] = [];
  const arg = (v: unknown) => (args.push(v), `CAST($${args.length} AS BIGINT)`);
  /** The segment's filter; none for the whole space (the first, full-table checksum). */
  const range = (lo: string, hi: string) => (lo === '0' && hi === KH_SPACE.toString() ? '' : ` AND ${KH} >= ${arg(lo)} AND ${KH} < ${arg(hi)}`);
  const toKey = (r: Cell[]) => keyOfRow(keys, r.slice(0, keys.length));
  const orderByKey = keys.map((c) => quoteIdent(c.name)).join(', ');
  switch (w.op) {
    case 'bounds': {
      // The whole hash space: counting needs no md5, and bisection cuts [0, 2^62) anyway.
      const [r] = await query(`SELECT CAST(count(*) AS VARCHAR) FROM ${table}`, []);
      const n = r![0]!;
      return { bounds: { n, min: n === '0' ? null : '0', max: n === '0' ? null : (KH_SPACE - 1n).toString() } };
    }
    case 'checksum': {
      const [lo, hi] = [need(w.lo, 'lo'), need(w.hi, 'hi')];
      const b = d.intDiv(`${KH} - ${arg(lo)}`, arg(need(w.width, 'width')));
      const rows = await query(
        `SELECT CAST(b AS VARCHAR), CAST(count(*) AS VARCHAR), CAST(bit_xor(h) AS VARCHAR) FROM (
           SELECT ${b} AS b, ${rowHash64(d, w.columns, duckTypes)} AS h FROM ${keyed} WHERE true${range(lo, hi)}) x GROUP BY b`,
        args,
      );
      return { buckets: rows.map((r) => ({ b: r[0]!, n: r[1]!, h: BigInt.asUintN(64, BigInt(r[2]!)).toString() })) };
    }
    case 'rows': {
      let where = `true${range(need(w.lo, 'lo'), need(w.hi, 'hi'))}`;
      if (w.buckets) {
        // Many small sub-segments of one parent in one scan (hashed keys have no index to range-scan).
        const b = d.intDiv(`${KH} - ${arg(w.lo)}`, arg(need(w.width, 'width')));
        args.push(pgSide ? w.buckets : JSON.stringify(w.buckets));
        where += pgSide ? ` AND ${b} = ANY($${args.length}::bigint[])` : ` AND ${b} IN (SELECT unnest(CAST(CAST($${args.length} AS JSON) AS BIGINT[])))`;
      }
      const rows = await query(`SELECT ${parts.join(', ')}, ${md5} FROM ${keyed} WHERE ${where}`, args);
      return { rows: rows.map((r) => [toKey(r), r[keys.length]!]) };
    }
    case 'lookup': {
      const tuples = need(w.keyTuples, 'keyTuples');
      if (tuples.length === 0) return { rows: [], detail: [] };
      const bad = tuples.findIndex((t) => t.length !== keys.length);
      if (bad >= 0) throw new ValidationError('lookup key of the wrong length', [{ field: `keyTuples.${bad}`, reason: `expected ${keys.length} values` }]);
      const columns = keys.map((_, j) => tuples.map((t) => t[j]!));
      const canon = w.columns.map((c, i) => `${d.norm(c, quoteIdent(c.name), duckTypes[c.name])} AS ${quoteIdent(`n${i}`)}`);
      const select = `SELECT ${parts.join(', ')}, ${md5}, ${canon.join(', ')}, CAST(${pgSide ? 'row_to_json(t)' : 'to_json(t)'} AS VARCHAR) FROM ${table} t`;
      const rows = pgSide
        ? // On the real key columns (the primary key's index), the texts cast to the columns' types.
          await query(
            `${select} WHERE (${keys.map((c) => `t.${quoteIdent(c.name)}`).join(', ')}) IN (
               SELECT ${keys.map((c, j) => `u.k${j}::${c.pgType}`).join(', ')} FROM unnest(${keys.map((_, j) => `$${j + 1}::text[]`).join(', ')}) AS u(${keys.map((_, j) => `k${j}`).join(', ')}))`,
            columns,
          )
        : // The copy has no index: match canonical key texts, so char(n) padding and DECIMAL scale do not matter.
          await query(
            `${select} WHERE ${rowText(d, keys, duckTypes)} IN (
               SELECT ${rowText(d, keys, duckTypes)} FROM (SELECT ${keys.map((c, j) => `${duckKeyValue(`k${j}`, duckTypes[c.name] ?? 'VARCHAR')} AS ${quoteIdent(c.name)}`).join(', ')}
                 FROM (SELECT ${keys.map((_, j) => `unnest(CAST(CAST($${j + 1} AS JSON) AS VARCHAR[])) AS k${j}`).join(', ')})))`,
            columns.map((c) => JSON.stringify(c)),
          );
      const n = keys.length;
      return {
        rows: rows.map((r) => [toKey(r), r[n]!]),
        detail: rows.map((r) => ({
          key: toKey(r),
          canonical: Object.fromEntries(w.columns.map((c, i) => [c.name, r[n + 1 + i] ?? null])),
          raw: JSON.parse(r[n + 1 + w.columns.length] ?? '{}') as Record<string, unknown>,
        })),
      };
    }
    case 'predicate': {
      const sql = need(w.sql, 'sql');
      const [count] = await query(`SELECT CAST(count(*) AS VARCHAR) FROM ${table} WHERE NOT coalesce((${sql}), true)`, []);
      const sample = await query(`SELECT ${parts.join(', ')} FROM ${table} WHERE NOT coalesce((${sql}), true) ORDER BY ${orderByKey} LIMIT ${w.sample ?? 100}`, []);
      return { violations: count![0]!, sample: sample.map(toKey) };
    }
    case 'aggregate': {
      const [r] = await query(`SELECT CAST((${need(w.sql, 'sql')}) AS VARCHAR) FROM ${table}`, []);
      return { value: r?.[0] ?? null };
    }
    case 'orphans': {
      const fk = need(w.fk, 'fk');
      const ref = pgSide ? pgTable(fk.refTable) : duckTable(fk.refTable).sql;
      const notNull = fk.columns.map((c) => `c.${quoteIdent(c)} IS NOT NULL`).join(' AND ');
      const on = fk.columns.map((c, i) => `p.${quoteIdent(fk.refColumns[i]!)} = c.${quoteIdent(c)}`).join(' AND ');
      const where = `${notNull} AND NOT EXISTS (SELECT 1 FROM ${ref} p WHERE ${on})`;
      const [count] = await query(`SELECT CAST(count(*) AS VARCHAR) FROM ${table} c WHERE ${where}`, []);
      const cParts = keyPartsSql(d, keys, duckTypes, 'c.');
      const sample = await query(`SELECT ${cParts.join(', ')} FROM ${table} c WHERE ${where} ORDER BY ${keys.map((k) => `c.${quoteIdent(k.name)}`).join(', ')} LIMIT ${w.sample ?? 100}`, []);
      return { violations: count![0]!, sample: sample.map(toKey) };
    }
  }
}
