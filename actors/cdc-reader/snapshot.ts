import pg from 'pg';
import type { CdcChange, CdcRelation, CdcText } from '../../queues/cdc.js';
import type { CatalogTable } from './relations.js';
import { TEXT_SETTINGS } from './replication.js';
import { quoteTable } from './setup.js';

/** Every value as PostgreSQL's text output, the way pgoutput sends it. */
const RAW_TEXT = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

/** A snapshot batch to hand to the queue (all rows at one LSN). */
export type EmitSnapshot = (changes: CdcChange[], relation: CdcRelation) => Promise<void>;

export function relationOf(t: CatalogTable): CdcRelation {
  return { table: t.table, columns: t.columns };
}

function columnList(t: CatalogTable): string {
  return t.columns.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', ');
}

/** A client whose session spells values like the replication connection does. */
export async function snapshotClient(connectionString: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, options: TEXT_SETTINGS });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/**
 * Copies whole tables as of an exported slot snapshot: every row visible at the
 * slot's consistent point and none after, so streaming from the slot continues
 * exactly where the copy stops. Rows go out in batches of `chunkSize` through a
 * cursor; each table's first batch starts with a truncate of its copy (a snapshot
 * interrupted earlier is redone whole). Returns rows copied per table.
 */
export async function copyTablesAtSnapshot(
  client: pg.Client,
  snapshotName: string,
  tables: CatalogTable[],
  chunkSize: number,
  lsn: string,
  emit: EmitSnapshot,
): Promise<Map<string, number>> {
  const copied = new Map<string, number>();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SET TRANSACTION SNAPSHOT '${snapshotName.replace(/'/g, "''")}'`);
    for (const t of tables) {
      const relation = relationOf(t);
      await client.query(`DECLARE concord_cdc_snap NO SCROLL CURSOR FOR SELECT ${columnList(t)} FROM ${quoteTable(t.table)}`);
      let first = true;
      let n = 0;
      for (;;) {
        const { rows } = await client.query<CdcText[]>({ text: `FETCH ${chunkSize} FROM concord_cdc_snap`, rowMode: 'array', types: RAW_TEXT });
        const changes: CdcChange[] = first ? [{ op: 'truncate', tables: [t.table], lsn }] : [];
        for (const values of rows) changes.push({ op: 'upsert', table: t.table, lsn, values });
        n += rows.length;
        if (changes.length > 0) await emit(changes, relation);
        first = false;
        if (rows.length < chunkSize) break;
      }
      await client.query('CLOSE concord_cdc_snap');
      copied.set(t.table, n);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return copied;
}

/**
 * Up to `limit` rows after `afterKey` in primary-key order (a backfill chunk),
 * as text; `afterKey` null starts at the beginning.
 */
export async function selectChunk(db: pg.Client | pg.PoolClient, t: CatalogTable, afterKey: string[] | null, limit: number): Promise<CdcText[][]> {
  const keys = t.columns.filter((c) => c.isKey);
  const keyList = keys.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', ');
  const params: unknown[] = [];
  let where = '';
  if (afterKey) {
    const casts = keys.map((c, i) => {
      params.push(afterKey[i]);
      return `$${i + 1}::${c.pgType}`;
    });
    where = `WHERE (${keyList}) > (${casts.join(', ')})`;
  }
  params.push(limit);
  const { rows } = await db.query<CdcText[]>({
    text: `SELECT ${columnList(t)} FROM ${quoteTable(t.table)} ${where} ORDER BY ${keyList} LIMIT $${params.length}`,
    values: params,
    rowMode: 'array',
    types: RAW_TEXT,
  });
  return rows;
}
