import type pg from 'pg';
import type { CdcRelation, CdcText } from '../../queues/cdc.js';
import { NotFoundError } from '../../runtime/index.js';
import { quoteIdent } from './pg-types.js';

/**
 * Every value as PostgreSQL's text output: the same text pgoutput sends, so rows read
 * here go through exactly the conversion CDC changes go through.
 */
export const TEXT_TYPES = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/** `public.users` → `"public"."users"` */
export function pgTableSql(table: string): string {
  const [schema, name] = table.split('.');
  return `${quoteIdent(schema!)}.${quoteIdent(name!)}`;
}

/** The table's columns (format_type spelling) and primary key, read from the catalog. */
export async function readRelation(db: pg.Pool | pg.PoolClient, table: string): Promise<CdcRelation> {
  const [schema, name] = table.split('.');
  const { rows } = await db.query<{ name: string; pg_type: string; oid: number; is_key: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS pg_type, a.atttypid::int AS oid,
            coalesce(a.attnum = ANY(i.indkey), false) AS is_key
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
      WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [schema, name],
  );
  if (rows.length === 0) throw new NotFoundError(`table ${table} does not exist in PostgreSQL`, { table });
  return { table, columns: rows.map((r) => ({ name: r.name, pgType: r.pg_type, typeOid: r.oid, isKey: r.is_key })) };
}

export function keyColumns(relation: CdcRelation): Array<{ name: string; pgType: string; index: number }> {
  return relation.columns.flatMap((c, index) => (c.isKey ? [{ name: c.name, pgType: c.pgType, index }] : []));
}

/**
 * The current rows (text values, relation column order) of `keys` (text key values in
 * key-column order), read in one statement; keys absent from the map were not found.
 */
export async function readRowsByKeys(db: pg.Pool | pg.PoolClient, relation: CdcRelation, keys: readonly CdcText[][]): Promise<Map<string, CdcText[]>> {
  const keyCols = keyColumns(relation);
  const args = keyCols.map((_, j) => keys.map((k) => k[j] ?? null));
  const unnest = keyCols.map((_, j) => `$${j + 1}::text[]`).join(', ');
  const on = keyCols.map((k, j) => `t.${quoteIdent(k.name)} = u.k${j}::${k.pgType}`).join(' AND ');
  const res = await db.query<CdcText[]>({
    text: `SELECT ${relation.columns.map((c) => `t.${quoteIdent(c.name)}`).join(', ')}
             FROM unnest(${unnest}) AS u(${keyCols.map((_, j) => `k${j}`).join(', ')})
             JOIN ${pgTableSql(relation.table)} t ON ${on}`,
    values: args,
    rowMode: 'array',
    types: TEXT_TYPES,
  });
  const out = new Map<string, CdcText[]>();
  for (const row of res.rows) out.set(keyCols.map((k) => row[k.index] ?? '').join('\u0000'), row);
  return out;
}

/** The lookup key `readRowsByKeys` uses for one key tuple. */
export function rowKey(key: readonly CdcText[]): string {
  return key.map((v) => v ?? '').join('\u0000');
}

/**
 * Streams `SELECT cols FROM table [WHERE where]` through a server-side cursor in
 * `batchSize` rows (text values), inside one REPEATABLE READ READ ONLY transaction so the
 * whole read is one consistent snapshot.
 */
export async function* readTableBatches(
  pool: pg.Pool,
  relation: CdcRelation,
  batchSize: number,
  filter?: { sql: string; values: unknown[] },
): AsyncGenerator<CdcText[][]> {
  const client = await pool.connect();
  let ok = false;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const cols = relation.columns.map((c) => quoteIdent(c.name)).join(', ');
    await client.query({ text: `DECLARE concord_sync NO SCROLL CURSOR FOR SELECT ${cols} FROM ${pgTableSql(relation.table)}${filter ? ` WHERE ${filter.sql}` : ''}`, values: filter?.values ?? [] });
    for (;;) {
      const res = await client.query<CdcText[]>({ text: `FETCH ${Math.trunc(batchSize)} FROM concord_sync`, rowMode: 'array', types: TEXT_TYPES });
      if (res.rows.length === 0) break;
      yield res.rows;
      if (res.rows.length < batchSize) break;
    }
    await client.query('COMMIT');
    ok = true;
  } finally {
    if (!ok) await client.query('ROLLBACK').catch(() => undefined);
    client.release();
  }
}
