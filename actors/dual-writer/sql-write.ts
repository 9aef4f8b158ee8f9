import type pg from 'pg';
import type { CdcRelation } from '../../queues/cdc.js';
import { ConflictError, ConcordError, NotFoundError, ValidationError } from '../../runtime/index.js';
import { pgTableSql, TEXT_TYPES } from './pg-source.js';
import { quoteIdent } from './pg-types.js';

export type WriteKind = 'create' | 'update' | 'delete';
type Scalar = string | number | bigint | boolean;
/** A scalar for a one-column key, or `{column: value}` (required for composite keys). */
export type PrimaryKey = Scalar | Record<string, Scalar>;

/** The key's values as text, in key-column order; 400 naming `field` when it does not fit the table. */
export function keyValues(relation: CdcRelation, primaryKey: PrimaryKey | null | undefined, field: string): string[] {
  const keys = relation.columns.filter((c) => c.isKey);
  if (keys.length === 0) throw new ValidationError(`table ${relation.table} has no primary key`, [{ field: 'table_name', reason: 'the table has no primary key' }]);
  if (primaryKey === null || primaryKey === undefined) throw new ValidationError('a primary key is needed', [{ field, reason: `required: ${keys.map((k) => k.name).join(', ')}` }]);
  if (typeof primaryKey !== 'object') {
    if (keys.length > 1) throw new ValidationError('composite primary key', [{ field, reason: `an object with ${keys.map((k) => k.name).join(', ')}` }]);
    return [String(primaryKey)];
  }
  return keys.map((k) => {
    const v = primaryKey[k.name];
    if (v === undefined || v === null || typeof v === 'object') throw new ValidationError('incomplete primary key', [{ field: `${field}.${k.name}`, reason: 'required (a string or number)' }]);
    return String(v);
  });
}

/** A value as `pg` should send it: JSON columns get JSON text (a JS array would otherwise become a PostgreSQL array). */
function encode(pgType: string, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (pgType === 'json' || pgType === 'jsonb') return JSON.stringify(value);
  if (typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date) && !Buffer.isBuffer(value)) return JSON.stringify(value);
  return value;
}

export interface WriteStatement {
  query: pg.QueryConfig & { rowMode: 'array' };
  /** Throws the 404 of an update/delete that matched no row. */
  notFound(): never;
}

/**
 * The PostgreSQL leg as one parameterised statement returning the key's text values.
 * Identifiers come from the catalog (quoted); every value is a parameter cast to its
 * column's type. Columns of `data` the table lacks are a 400 naming them.
 */
export function buildWrite(kind: WriteKind, relation: CdcRelation, primaryKey: PrimaryKey | null | undefined, data: Record<string, unknown>): WriteStatement {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ValidationError('data must be an object', [{ field: 'data', reason: 'an object of column: value' }]);
  const byName = new Map(relation.columns.map((c) => [c.name, c]));
  const unknown = Object.keys(data).filter((k) => !byName.has(k));
  if (unknown.length > 0) throw new ValidationError(`unknown column(s) for ${relation.table}`, unknown.map((k) => ({ field: `data.${k}`, reason: `not a column of ${relation.table}` })));
  const keyCols = relation.columns.filter((c) => c.isKey);
  const returning = `RETURNING ${keyCols.map((c) => quoteIdent(c.name)).join(', ')}`;
  const values: unknown[] = [];
  const param = (pgType: string, v: unknown) => {
    values.push(encode(pgType, v));
    return `$${values.length}::${pgType}`;
  };
  const table = pgTableSql(relation.table);
  const where = () => {
    const key = keyValues(relation, primaryKey, 'primary_key');
    return keyCols.map((c, i) => `${quoteIdent(c.name)} = ${param(c.pgType, key[i])}`).join(' AND ');
  };
  let text: string;
  if (kind === 'create') {
    const row = { ...data };
    if (primaryKey !== null && primaryKey !== undefined) {
      const key = keyValues(relation, primaryKey, 'primary_key');
      keyCols.forEach((c, i) => {
        if (row[c.name] === undefined) row[c.name] = key[i];
      });
    }
    const cols = Object.keys(row);
    if (cols.length === 0) throw new ValidationError('nothing to insert', [{ field: 'data', reason: 'at least one column' }]);
    text = `INSERT INTO ${table} (${cols.map(quoteIdent).join(', ')}) VALUES (${cols.map((c) => param(byName.get(c)!.pgType, row[c])).join(', ')}) ${returning}`;
  } else if (kind === 'update') {
    const key = keyValues(relation, primaryKey, 'primary_key');
    const cols = Object.keys(data).filter((c) => {
      const at = keyCols.findIndex((k) => k.name === c);
      if (at < 0) return true;
      if (String(data[c]) !== key[at]) throw new ValidationError('primary keys cannot be changed by an update', [{ field: `data.${c}`, reason: 'differs from primary_key' }]);
      return false;
    });
    if (cols.length === 0) throw new ValidationError('nothing to update', [{ field: 'data', reason: 'at least one non-key column' }]);
    const sets = cols.map((c) => `${quoteIdent(c)} = ${param(byName.get(c)!.pgType, data[c])}`).join(', ');
    text = `UPDATE ${table} SET ${sets} WHERE ${where()} ${returning}`;
  } else {
    text = `DELETE FROM ${table} WHERE ${where()} ${returning}`;
  }
  return {
    query: { text, values, rowMode: 'array', types: TEXT_TYPES },
    notFound: () => {
      throw new NotFoundError(`no row of ${relation.table} with primary key ${JSON.stringify(primaryKey)}`, { table: relation.table });
    },
  };
}

const BAD_DATA = new Set(['22P02', '22003', '22007', '22008', '22001', '23502', '23503', '23514', '22023', '42804']);

/** PostgreSQL's refusals of the data as 400/409; anything else unchanged. */
export function pgErrorToConcord(err: unknown): unknown {
  if (err instanceof ConcordError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === '23505') return new ConflictError(`a row with this key already exists: ${message}`);
  if (typeof code === 'string' && BAD_DATA.has(code)) {
    const column = (err as { column?: string }).column;
    return new ValidationError(`PostgreSQL refused the data: ${message}`, [{ field: column ? `data.${column}` : 'data', reason: message }]);
  }
  return err;
}
