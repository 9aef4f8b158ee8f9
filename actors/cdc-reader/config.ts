import { EnvReader, qualifiedTable } from '../../runtime/env-reader.js';

/** The seed's CDCConfiguration, as environment variables, plus the reader's own knobs. */
export interface CdcConfig {
  enabled: boolean;
  /** `schema.table` names (unquoted; `public.` added when no schema is given), monitored minus excluded. */
  tables: string[];
  /** The slot this reader owns. @defaultValue 'concord_cdc' */
  slot: string;
  /** Publication the slot reads. @defaultValue `${slot}_pub` */
  publication: string;
  /** Row changes per `cdc.apply` batch at most (a single larger transaction is one batch). @defaultValue 1000 */
  maxBatchSize: number;
  /** A partial batch of complete transactions is sent after this long. @defaultValue 50 (ms) */
  flushIntervalMs: number;
  /**
   * Waiting batches in `cdc.apply` at which reading the slot pauses (resumes at half). Deep enough
   * that the reader keeps streaming while the writer applies a group (50 left the reader paused
   * for part of every transaction in the CDC bench). @defaultValue 200
   */
  maxQueuedBatches: number;
  /** How often the applied LSN is read from Redis and acknowledged to the slot. @defaultValue 500 (ms) */
  ackIntervalMs: number;
  /** After a small read of the replication stream, rest this long so messages accumulate (0: off; see ReplicationConnection). @defaultValue 1 (ms) */
  readPauseMs: number;
  /** A heartbeat message is written to the WAL this often, so quiet tables do not pin WAL. @defaultValue 10000 (ms) */
  heartbeatIntervalMs: number;
  /** Rows per snapshot batch and per backfill chunk. @defaultValue 5000 */
  snapshotChunkSize: number;
  /** Lease TTL of the slot reader (failover time after the holder dies). @defaultValue 5000 (ms) */
  leaseTtlMs: number;
}

const IDENT = /^[a-z_][a-z0-9_$]{0,62}$/;
/** `users` → `public.users`; null when not a plain (lower-case, unquoted) identifier. */
export const normalizeTable = qualifiedTable;

export function loadCdcConfig(env: NodeJS.ProcessEnv = process.env): CdcConfig {
  const read = new EnvReader(env);
  const monitored = read.tables('CDC_MONITORED_TABLES') ?? [];
  const excluded = read.tables('CDC_EXCLUDED_TABLES') ?? [];
  const slot = read.raw('CDC_REPLICATION_SLOT_NAME') ?? 'concord_cdc';
  if (!IDENT.test(slot)) read.problem('CDC_REPLICATION_SLOT_NAME', slot, 'a slot name: lower-case letters, digits and _, at most 63');
  const publication = read.raw('CDC_PUBLICATION_NAME') ?? `${slot}_pub`;
  if (!IDENT.test(publication)) read.problem('CDC_PUBLICATION_NAME', publication, 'a publication name: lower-case letters, digits and _, at most 63');
  const config: CdcConfig = {
    enabled: read.bool('CDC_ENABLED', false),
    tables: monitored.filter((t) => !excluded.includes(t)),
    slot,
    publication,
    maxBatchSize: read.int('CDC_MAX_BATCH_SIZE', 1000, 1, 100_000),
    flushIntervalMs: read.int('CDC_FLUSH_INTERVAL_MS', 50, 1, 60_000),
    maxQueuedBatches: read.int('CDC_MAX_QUEUED_BATCHES', 200, 2, 100_000),
    ackIntervalMs: read.int('CDC_ACK_INTERVAL_MS', 500, 10, 60_000),
    readPauseMs: read.int('CDC_READ_PAUSE_MS', 1, 0, 1000),
    heartbeatIntervalMs: read.int('CDC_HEARTBEAT_INTERVAL_MS', 10_000, 100, 3_600_000),
    snapshotChunkSize: read.int('CDC_SNAPSHOT_CHUNK_SIZE', 5000, 1, 100_000),
    leaseTtlMs: read.int('CDC_LEASE_TTL_MS', 5000, 500, 600_000),
  };
  if (config.enabled) {
    if (!read.raw('DATABASE_URL')) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: the tables CDC reads live there');
    if (config.tables.length === 0) read.problem('CDC_MONITORED_TABLES', read.raw('CDC_MONITORED_TABLES'), 'at least one table not in CDC_EXCLUDED_TABLES when CDC_ENABLED is on');
  }
  read.done();
  return config;
}
