import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
// Pulls in the `ProvidedContext['services']` typing declared by the global setup.
import type {} from '../setup/global.js';

/** The Redis / PostgreSQL started once for the whole run by test/setup/global.ts. */
export function testServices(): { redisUrl: string; databaseUrl: string } {
  const services = inject('services');
  if (services === undefined) {
    throw new Error(
      'test services were not started: test/setup/global.ts skips them when only test/unit files are selected ' +
        '(or the globalSetup is not configured). Run the file through `vitest run` with the project config.',
    );
  }
  return services;
}

/**
 * A per-test unique name such as `t-outbox-k3j9x2ab`, to use as a BullMQ key prefix or
 * queue-name suffix so tests never collide in the shared Redis (or PostgreSQL).
 */
export function uniquePrefix(label: string): string {
  const safe = label.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '') || 'x';
  return `t-${safe}-${randomBytes(5).toString('hex')}`;
}

/**
 * The environment of a Concord process under test: auth off, a free port on loopback,
 * an in-memory DuckDB and silent logs, on the given Redis, database and key prefix;
 * `extra` adds or overrides variables.
 */
export function runtimeEnv(on: { redisUrl: string; databaseUrl: string; prefix: string }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: on.redisUrl,
    DATABASE_URL: on.databaseUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    AUTH_MODE: 'none',
    CONCORD_QUEUE_PREFIX: on.prefix,
    DUCKDB_DATABASE_PATH: ':memory:',
    LOG_LEVEL: 'silent',
    ...extra,
  };
}
