import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import pg from 'pg';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { DependencyError, errorMessage } from './errors.js';

/**
 * Workers block on Redis and must wait out a restart rather than fail commands
 * (BullMQ requires maxRetriesPerRequest: null for them). Producers and checks
 * use a bounded retry so a dead Redis surfaces as an error instead of a hang.
 */
export function createRedis(url: string, purpose: 'worker' | 'client', name = 'concord'): Redis {
  const common: RedisOptions = {
    connectionName: `${name}:${purpose}`,
    lazyConnect: false,
    connectTimeout: 5_000,
    // Reconnect forever with a capped delay: Redis restarts are survivable faults.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 3_000),
  };
  return new Redis(url, purpose === 'worker' ? { ...common, maxRetriesPerRequest: null, enableReadyCheck: true } : { ...common, maxRetriesPerRequest: 2 });
}

export function createPgPool(connectionString: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5_000, idleTimeoutMillis: 30_000 });
  // An idle client's error (server restart) must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  return pool;
}

export interface DuckDb {
  instance: DuckDBInstance;
  connection: DuckDBConnection;
  close(): void;
}

export async function openDuckDb(opts: { path: string; memoryLimit?: string | undefined; threads?: number; checkpointThreshold?: string | undefined }): Promise<DuckDb> {
  if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
  const settings: Record<string, string> = {};
  if (opts.memoryLimit) settings.memory_limit = opts.memoryLimit;
  if (opts.threads) settings.threads = String(opts.threads);
  if (opts.checkpointThreshold) settings.checkpoint_threshold = opts.checkpointThreshold;
  try {
    const instance = await DuckDBInstance.create(opts.path, settings);
    const connection = await instance.connect();
    return {
      instance,
      connection,
      close() {
        connection.closeSync();
        instance.closeSync();
      },
    };
  } catch (err) {
    throw new DependencyError(`DuckDB could not open ${opts.path}: ${errorMessage(err)}`, { path: opts.path }, { cause: err });
  }
}

/** Resolves with the value, or rejects naming what timed out. */
export async function withTimeout<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DependencyError(`${what} did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
