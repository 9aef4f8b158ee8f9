import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { QueueRegistry } from '../queues/index.js';
import type { Config } from './config.js';
import type { DuckDb } from './connections.js';
import type { DeadLetters } from './dead-letters.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { Role } from './process-registry.js';
import type { QueueSet } from './queue-set.js';

/** What every actor and route stands on: made once per process at start. */
export interface RuntimeServices {
  readonly config: Config;
  readonly role: Role;
  readonly processId: string;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly registry: QueueRegistry;
  readonly queues: QueueSet;
  readonly deadLetters: DeadLetters;
  /** For plain commands (leases, heartbeats, producers): fails fast when Redis is down. */
  readonly redis: Redis;
  /** For BullMQ workers: waits out Redis restarts instead of failing. */
  readonly workerConnection: Redis;
  /** The PostgreSQL pool; throws if DATABASE_URL is not set. */
  pg(): pg.Pool;
  /** This process's DuckDB, opened on first use (a DuckDB file has one writer process). */
  duckdb(): Promise<DuckDb>;
  /** Whether this process has DuckDB open. */
  hasDuckDb(): boolean;
  /**
   * Set by an actor that decides by lease which process opens the DuckDB file (the
   * dual-writer): while `governed` and not `held`, this process leaves the file alone
   * and readiness reads the holder's heartbeat instead (a second opener would fail on,
   * or worse take, the file lock).
   */
  readonly duckDbLease: { governed: boolean; held: boolean };
  /** Closes this process's DuckDB (a lease holder stepping down), so another process can open the file. */
  releaseDuckDb(): Promise<void>;
}
