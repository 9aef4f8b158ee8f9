import { EnvReader, qualifiedTable } from '../../runtime/env-reader.js';

export const CONSISTENCY_LEVELS = ['strong', 'eventual', 'weak'] as const;
export const SYNC_STRATEGIES = ['real_time', 'near_real_time', 'batch', 'recovery', 'hybrid'] as const;
export type ConsistencyLevel = (typeof CONSISTENCY_LEVELS)[number];
export type SyncStrategy = (typeof SYNC_STRATEGIES)[number];

/** Largest `batch_size` a table sync accepts (rows per PostgreSQL fetch and DuckDB insert). */
export const MAX_SYNC_BATCH_SIZE = 100_000;

/** The seed's DataSync settings, as environment variables, plus the dual-writer's own knobs. */
export interface DualWriterConfig {
  /** The dual-writer actor (the one DuckDB writer: CDC apply, dual-write legs, table syncs). @defaultValue true when DATABASE_URL is set */
  enabled: boolean;
  /** The `dualWrite` API and `POST /sync/operation`. @defaultValue true */
  dualWriteEnabled: boolean;
  /** Strategy when a call names none. @defaultValue 'hybrid' */
  strategy: SyncStrategy;
  /** Consistency when a call names none. @defaultValue 'eventual' */
  consistency: ConsistencyLevel;
  /** Rows per fetch/insert of a table sync when the request names none. @defaultValue 10000 */
  batchSize: number;
  /** Dual-write jobs the lease holder works on at once. @defaultValue 5 */
  maxConcurrentOperations: number;
  /** `schema.table` names that may be dual-written and synced. @defaultValue CDC_MONITORED_TABLES minus CDC_EXCLUDED_TABLES */
  tables: string[];
  /** Column incremental sync compares with `since` (a timestamp column every synced table must have). @defaultValue 'updated_at' */
  updatedAtColumn: string;
  /** How long a strong call waits for the DuckDB leg done by another process. @defaultValue 5000 (ms) */
  strongTimeoutMs: number;
  /** How long `batch` strategy legs wait in the queue, so many coalesce into one DuckDB write. @defaultValue 1000 (ms) */
  batchDelayMs: number;
  /** Consecutive DuckDB failures that open the circuit breaker. @defaultValue 5 */
  breakerThreshold: number;
  /** Time an open breaker waits before letting one trial through. @defaultValue 10000 (ms) */
  breakerHalfOpenMs: number;
  /** Most CDC row changes applied in one DuckDB transaction when several cdc.apply batches wait (coalescing; at or below the reader's batch size turns it off). @defaultValue 50000 (changes) */
  cdcApplyMaxChanges: number;
  /** V8 heap size above which the writer collects garbage between CDC transactions (0: leave it to V8). @defaultValue 64 (MB) */
  cdcApplyHeapSoftLimitMb: number;
  /** Lease TTL of the DuckDB writer: failover time after the holder dies. @defaultValue 10000 (ms) */
  leaseTtlMs: number;
}

const IDENT = /^[a-z_][a-z0-9_$]{0,62}$/;
/** `users` → `public.users`; null when not a plain (lower-case, unquoted) identifier. Same rule as CDC_MONITORED_TABLES. */
export const normalizeTable = qualifiedTable;

export function loadDualWriterConfig(env: NodeJS.ProcessEnv = process.env): DualWriterConfig {
  const read = new EnvReader(env);
  const hasDb = Boolean(read.raw('DATABASE_URL'));
  const enabled = read.bool('DATA_SYNC_ENABLED', hasDb);
  if (enabled && !hasDb) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: the dual-writer copies PostgreSQL tables');
  const excluded = read.tables('CDC_EXCLUDED_TABLES') ?? [];
  const tables = read.tables('DATA_SYNC_TABLES') ?? (read.tables('CDC_MONITORED_TABLES') ?? []).filter((t) => !excluded.includes(t));
  const updatedAtColumn = read.raw('DATA_SYNC_UPDATED_AT_COLUMN') ?? 'updated_at';
  if (!IDENT.test(updatedAtColumn)) read.problem('DATA_SYNC_UPDATED_AT_COLUMN', updatedAtColumn, 'a column name: lower-case letters, digits and _');
  const config: DualWriterConfig = {
    enabled,
    dualWriteEnabled: read.bool('ENABLE_DUAL_WRITE', true),
    strategy: read.oneOf('DATA_SYNC_STRATEGY', SYNC_STRATEGIES, 'hybrid'),
    consistency: read.oneOf('DATA_SYNC_CONSISTENCY_LEVEL', CONSISTENCY_LEVELS, 'eventual'),
    batchSize: read.int('DATA_SYNC_BATCH_SIZE', 10_000, 1, MAX_SYNC_BATCH_SIZE),
    maxConcurrentOperations: read.int('MAX_CONCURRENT_SYNC_OPERATIONS', 5, 1, 100),
    tables,
    updatedAtColumn,
    strongTimeoutMs: read.int('DATA_SYNC_STRONG_TIMEOUT_MS', 5_000, 100, 120_000),
    batchDelayMs: read.int('DATA_SYNC_BATCH_DELAY_MS', 1_000, 0, 600_000),
    breakerThreshold: read.int('DATA_SYNC_BREAKER_THRESHOLD', 5, 1, 1000),
    breakerHalfOpenMs: read.int('DATA_SYNC_BREAKER_HALF_OPEN_MS', 10_000, 100, 600_000),
    cdcApplyMaxChanges: read.int('CDC_APPLY_MAX_CHANGES', 50_000, 1, 1_000_000),
    cdcApplyHeapSoftLimitMb: read.int('CDC_APPLY_HEAP_SOFT_LIMIT_MB', 64, 0, 65_536),
    leaseTtlMs: read.int('DATA_SYNC_LEASE_TTL_MS', 5_000, 1_000, 120_000),
  };
  read.done();
  return config;
}
