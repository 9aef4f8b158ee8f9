import type pg from 'pg';
import { ConcordError } from '../../runtime/errors.js';
import type { CdcConfig } from './config.js';

/**
 * The database cannot serve this reader as configured (wal_level, rights, a
 * missing table). Retrying does not help until an operator acts; the message
 * says what to do.
 */
export class CdcSetupError extends ConcordError {
  readonly code = 'dependency_unavailable' as const;
  readonly status = 503;
  readonly retryable = false;
}

export const WATERMARK_TABLE = 'public.concord_cdc_watermark';

/** `schema.table` (validated lower-case identifiers) → `"schema"."table"`. */
export function quoteTable(table: string): string {
  return table
    .split('.')
    .map((p) => `"${p.replace(/"/g, '""')}"`)
    .join('.');
}

export interface Preflight {
  walLevel: string;
  role: string;
  canReplicate: boolean;
}

/** Checks wal_level and the REPLICATION attribute, with the fix in the message. */
export async function preflight(db: pg.Pool | pg.PoolClient): Promise<Preflight> {
  const { rows } = await db.query<{ wal_level: string; role: string; can: boolean }>(
    `SELECT current_setting('wal_level') AS wal_level, current_user AS role,
            (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS can`,
  );
  const r = rows[0]!;
  const result = { walLevel: r.wal_level, role: r.role, canReplicate: r.can };
  checkPreflight(result);
  return result;
}

export function checkPreflight(p: Preflight): void {
  if (p.walLevel !== 'logical') {
    throw new CdcSetupError(
      `CDC needs wal_level=logical, the server has wal_level=${p.walLevel}: run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL`,
      { walLevel: p.walLevel },
    );
  }
  if (!p.canReplicate) {
    throw new CdcSetupError(`CDC: role ${p.role} lacks the REPLICATION attribute needed to read a replication slot: run ALTER ROLE "${p.role}" WITH REPLICATION; as a superuser`, {
      role: p.role,
    });
  }
}

/** Tables of `tables` that do not exist, or the role cannot SELECT. */
async function checkTables(db: pg.Pool, tables: readonly string[], role: string): Promise<void> {
  const { rows } = await db.query<{ t: string; found: boolean; can_select: boolean }>(
    `SELECT t, to_regclass(t) IS NOT NULL AS found,
            CASE WHEN to_regclass(t) IS NULL THEN false ELSE has_table_privilege(to_regclass(t), 'SELECT') END AS can_select
       FROM unnest($1::text[]) AS t`,
    [tables],
  );
  const missing = rows.filter((r) => !r.found).map((r) => r.t);
  if (missing.length > 0) throw new CdcSetupError(`CDC_MONITORED_TABLES: table(s) ${missing.join(', ')} do not exist`, { missing });
  const denied = rows.filter((r) => !r.can_select).map((r) => r.t);
  if (denied.length > 0) throw new CdcSetupError(`CDC: role ${role} cannot SELECT ${denied.join(', ')} (needed for the snapshot): GRANT SELECT ON ... TO "${role}"`, { denied });
}

/**
 * Creates the publication with the tables and the watermark table, or adds the
 * tables it lacks. Tables are never removed: changes of a table no longer
 * configured are ignored by the reader. Returns the tables that were added.
 */
export async function ensurePublication(db: pg.Pool, config: CdcConfig, role: string): Promise<string[]> {
  const wanted = [...config.tables, WATERMARK_TABLE];
  await checkTables(db, wanted, role);
  const pub = `"${config.publication}"`;
  const { rows } = await db.query<{ t: string }>(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1`, [config.publication]);
  const exists = (await db.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [config.publication])).rowCount! > 0;
  const have = new Set(rows.map((r) => r.t));
  const missing = wanted.filter((t) => !have.has(t));
  try {
    if (!exists) await db.query(`CREATE PUBLICATION ${pub} FOR TABLE ${wanted.map(quoteTable).join(', ')}`);
    else if (missing.length > 0) await db.query(`ALTER PUBLICATION ${pub} ADD TABLE ${missing.map(quoteTable).join(', ')}`);
  } catch (err) {
    if ((err as { code?: string }).code === '42501') {
      throw new CdcSetupError(
        `CDC: role ${role} may not ${exists ? 'alter' : 'create'} publication ${config.publication} for ${missing.join(', ')}: ` +
          `the role must own those tables (or be superuser); or create it as their owner: CREATE PUBLICATION ${pub} FOR TABLE ${wanted.map(quoteTable).join(', ')}`,
        { publication: config.publication, tables: missing },
        { cause: err },
      );
    }
    throw err;
  }
  return exists ? missing : [];
}

export interface SlotInfo {
  exists: boolean;
  confirmedFlush: string | null;
  active: boolean;
  activePid: number | null;
}

export async function slotInfo(db: pg.Pool, slot: string): Promise<SlotInfo> {
  const { rows } = await db.query<{ confirmed_flush_lsn: string | null; active: boolean; active_pid: number | null; plugin: string; database: string; current: string }>(
    `SELECT confirmed_flush_lsn::text, active, active_pid, plugin, database, current_database() AS current FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const r = rows[0];
  if (!r) return { exists: false, confirmedFlush: null, active: false, activePid: null };
  if (r.plugin !== 'pgoutput' || r.database !== r.current) {
    throw new CdcSetupError(`CDC_REPLICATION_SLOT_NAME: slot ${slot} exists but is a ${r.plugin} slot of database ${r.database}; choose another slot name`, { slot });
  }
  return { exists: true, confirmedFlush: r.confirmed_flush_lsn, active: r.active, activePid: r.active_pid };
}

/** Per-table state of this slot (migration 0006). */
export interface TableRow {
  table_name: string;
  state: 'snapshot' | 'backfill' | 'streaming' | 'quarantined';
  last_key: string[] | null;
  rows_copied: string;
  reason: string | null;
}

export async function readTableStates(db: pg.Pool, slot: string): Promise<Map<string, TableRow>> {
  const { rows } = await db.query<TableRow>(`SELECT table_name, state, last_key, rows_copied::text, reason FROM concord_cdc_tables WHERE slot = $1`, [slot]);
  return new Map(rows.map((r) => [r.table_name, r]));
}

export async function setTableState(db: pg.Pool | pg.PoolClient, slot: string, table: string, state: TableRow['state'], extra: { lastKey?: string[] | null; rows?: number; reason?: string | null } = {}): Promise<void> {
  await db.query(
    `INSERT INTO concord_cdc_tables (slot, table_name, state, last_key, rows_copied, reason) VALUES ($1, $2, $3, $4, coalesce($5::bigint, 0), $6)
     ON CONFLICT (slot, table_name) DO UPDATE SET state = EXCLUDED.state, last_key = EXCLUDED.last_key,
       rows_copied = CASE WHEN $5::bigint IS NULL THEN concord_cdc_tables.rows_copied ELSE EXCLUDED.rows_copied END,
       reason = EXCLUDED.reason, updated_at = now()`,
    [slot, table, state, extra.lastKey ?? null, extra.rows ?? null, extra.reason ?? null],
  );
}
