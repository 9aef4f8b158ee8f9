import type { DuckDBConnection } from '@duckdb/node-api';
import type { CdcRelation } from '../../queues/cdc.js';
import { copyTable, mapColumn, quoteIdent, type ColumnMapping } from './pg-types.js';

/** Schema of the dual-writer's own tables in the DuckDB file. */
export const STATE_SCHEMA = 'concord';

/** A copy table's shape as the applier uses it. */
export interface CopyShape {
  sql: string;
  mappings: ColumnMapping[];
  keyIdx: number[];
}

/** Thrown when the copy cannot follow the source without drift; needs a person (or a full sync). */
export class CopyDriftError extends Error {
  override readonly name = 'CopyDriftError';
}

export async function ensureStateTables(conn: DuckDBConnection): Promise<void> {
  await conn.run(`CREATE SCHEMA IF NOT EXISTS ${STATE_SCHEMA};
    CREATE TABLE IF NOT EXISTS ${STATE_SCHEMA}.cdc_state (slot VARCHAR PRIMARY KEY, applied_lsn VARCHAR NOT NULL, batches UBIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE IF NOT EXISTS ${STATE_SCHEMA}.table_sync (table_name VARCHAR PRIMARY KEY, mode VARCHAR NOT NULL, rows UBIGINT NOT NULL, finished_at TIMESTAMPTZ NOT NULL)`);
}

/**
 * Copy tables have NO primary key and no index: see applyPlan for how keys stay unique.
 * Key columns are NOT NULL, as in PostgreSQL.
 */
function columnsDdl(relation: CdcRelation, mappings: ColumnMapping[]): string {
  return relation.columns.map((c, i) => `${quoteIdent(c.name)} ${mappings[i]!.duckType}${c.isKey ? ' NOT NULL' : ''}`).join(', ');
}

/**
 * Copies created by earlier versions carry a PRIMARY KEY (an ART index). DuckDB cannot drop
 * it in place, so the table is rebuilt once without it (CREATE TABLE AS keeps the column
 * types; views on the copy bind by name and keep working), inside the caller's
 * transaction: the first apply after an upgrade pays one full copy of the table.
 */
async function dropLegacyPrimaryKey(conn: DuckDBConnection, schema: string, table: string, sql: string): Promise<boolean> {
  const pk = await conn.runAndReadAll(`SELECT 1 FROM duckdb_constraints() WHERE schema_name = $1 AND table_name = $2 AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')`, [schema, table]);
  if (pk.currentRowCount === 0) return false;
  const tmp = `${table}__concord_rebuild`;
  await conn.run(`CREATE OR REPLACE TABLE ${quoteIdent(schema)}.${quoteIdent(tmp)} AS SELECT * FROM ${sql}`);
  await conn.run(`DROP TABLE ${sql}`);
  await conn.run(`ALTER TABLE ${quoteIdent(schema)}.${quoteIdent(tmp)} RENAME TO ${quoteIdent(table)}`);
  return true;
}

/**
 * Creates the copy table of `relation` (no primary key, see columnsDdl), or brings it to
 * the relation's shape: a legacy primary key is dropped (dropLegacyPrimaryKey), a new
 * column is added (ALTER TABLE ADD COLUMN, NULL in existing rows, as in PostgreSQL).
 * A column the copy has but the source no longer sends (dropped or renamed) throws
 * CopyDriftError: guessing would drift silently. A full sync rebuilds the table.
 */
export async function ensureCopyTable(conn: DuckDBConnection, relation: CdcRelation, known: Map<string, string>): Promise<CopyShape> {
  const { schema, table, sql } = copyTable(relation.table);
  const mappings = relation.columns.map((c) => mapColumn(c));
  const keyIdx: number[] = [];
  relation.columns.forEach((c, i) => c.isKey && keyIdx.push(i));
  if (keyIdx.length === 0) throw new CopyDriftError(`table ${relation.table} has no primary key: it cannot be mirrored without drift`);
  const signature = relation.columns.map((c) => `${c.name}:${c.pgType}:${c.isKey ? 'k' : ''}`).join('|');
  if (known.get(relation.table) === signature) return { sql, mappings, keyIdx };
  const existing = await conn.runAndReadAll(`SELECT column_name FROM duckdb_columns() WHERE schema_name = $1 AND table_name = $2 ORDER BY column_index`, [schema, table]);
  const have = existing.getRows().map((r) => String(r[0]).toLowerCase());
  if (have.length === 0) {
    if (schema !== 'main') await conn.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await conn.run(`CREATE TABLE IF NOT EXISTS ${sql} (${columnsDdl(relation, mappings)})`);
  } else {
    await dropLegacyPrimaryKey(conn, schema, table, sql);
    const wanted = relation.columns.map((c) => c.name.toLowerCase());
    const gone = have.filter((c) => !wanted.includes(c));
    if (gone.length > 0) {
      throw new CopyDriftError(
        `table ${relation.table}: the copy has column(s) ${gone.join(', ')} that the source no longer has (dropped or renamed); ` +
          `run a full sync of the table to rebuild its copy (POST /api/v1/data-sync/sync/table/${relation.table}/full)`,
      );
    }
    for (const [i, c] of relation.columns.entries()) {
      if (!have.includes(c.name.toLowerCase())) await conn.run(`ALTER TABLE ${sql} ADD COLUMN ${quoteIdent(c.name)} ${mappings[i]!.duckType}`);
    }
  }
  known.set(relation.table, signature);
  return { sql, mappings, keyIdx };
}

/** Drops and recreates the copy of `relation` (a full sync's rebuild). */
export async function recreateCopyTable(conn: DuckDBConnection, relation: CdcRelation, known: Map<string, string>): Promise<CopyShape> {
  const { schema, sql } = copyTable(relation.table);
  if (schema !== 'main') await conn.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  await conn.run(`DROP TABLE IF EXISTS ${sql}`);
  known.delete(relation.table);
  return ensureCopyTable(conn, relation, known);
}
