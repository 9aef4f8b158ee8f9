import type { Redis } from 'ioredis';
import type pg from 'pg';
import { cdcAppliedLsnKey } from '../../queues/cdc.js';
import type { CdcConfig } from './config.js';

/** What the running reader publishes about itself (every second, with a 10 s expiry). */
export interface ReaderStatus {
  phase: 'starting' | 'snapshot' | 'streaming' | 'stopped';
  epoch: number;
  consistentPoint: string | null;
  receivedLsn: string;
  confirmedLsn: string;
  appliedLsn: string;
  lagSeconds: number;
  paused: boolean;
  pendingBatches: number;
  unappliedBatches: number;
  batchesSent: number;
  changesRead: number;
  transactionsRead: number;
  backfilling: string | null;
  quarantined: Record<string, string>;
  updatedAt: string;
}

export function readerStatusKey(prefix: string, slot: string): string {
  return `${prefix}:cdc:${slot}:reader`;
}

/**
 * The CDC status any process can answer (GET /api/v1/data-sync/cdc/status and the
 * `cdc` stats section): the slot and publication as PostgreSQL sees them, each
 * table's state, the applier's LSN, and the reader's own report when one runs.
 */
export async function collectCdcStatus(db: pg.Pool, redis: Redis, prefix: string, config: CdcConfig): Promise<Record<string, unknown>> {
  const [slot, pub, tables, applied, reader] = await Promise.all([
    db.query<{ active: boolean; active_pid: number | null; confirmed_flush_lsn: string | null; restart_lsn: string | null; lag_bytes: string | null; wal_status: string | null }>(
      `SELECT active, active_pid, confirmed_flush_lsn::text, restart_lsn::text, wal_status,
              pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag_bytes
         FROM pg_replication_slots WHERE slot_name = $1`,
      [config.slot],
    ),
    db.query<{ t: string }>(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, [config.publication]),
    db
      .query<{ table_name: string; state: string; rows_copied: string; reason: string | null; updated_at: Date }>(
        `SELECT table_name, state, rows_copied::text, reason, updated_at FROM concord_cdc_tables WHERE slot = $1 ORDER BY table_name`,
        [config.slot],
      )
      .catch(() => ({ rows: [] })),
    redis.get(cdcAppliedLsnKey(prefix, config.slot)),
    redis.get(readerStatusKey(prefix, config.slot)),
  ]);
  const s = slot.rows[0];
  const states = new Map(tables.rows.map((r) => [r.table_name, r]));
  const running = reader ? (JSON.parse(reader) as ReaderStatus) : null;
  return {
    enabled: config.enabled,
    slot: {
      name: config.slot,
      exists: Boolean(s),
      active: s?.active ?? false,
      confirmedLsn: s?.confirmed_flush_lsn ?? null,
      restartLsn: s?.restart_lsn ?? null,
      walStatus: s?.wal_status ?? null,
    },
    publication: { name: config.publication, tables: pub.rows.map((r) => r.t) },
    tables: config.tables.map((t) => {
      const st = states.get(t);
      return { table: t, state: st?.state ?? 'pending', rowsCopied: Number(st?.rows_copied ?? 0), reason: st?.reason ?? null, updatedAt: st?.updated_at ?? null };
    }),
    appliedLsn: applied,
    lag: { bytes: s?.lag_bytes == null ? null : Number(s.lag_bytes), seconds: running?.lagSeconds ?? null },
    reader: running,
  };
}
