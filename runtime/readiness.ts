import { errorMessage } from './errors.js';
import { withTimeout } from './connections.js';
import type { DependencyStatus, ProcessRegistry } from './process-registry.js';
import type { RuntimeServices } from './services.js';
import type { ReadinessCheck } from './extensions.js';

export interface Readiness {
  ready: boolean;
  checks: Record<string, DependencyStatus>;
}

const CHECK_TIMEOUT_MS = 2_000;

async function probe(what: string, work: () => Promise<unknown>): Promise<DependencyStatus> {
  try {
    await withTimeout(what, CHECK_TIMEOUT_MS, work());
    return { ok: true };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
}

/**
 * Redis, PostgreSQL and DuckDB must answer. DuckDB is checked here when this
 * process holds it; an api-only process relies on what worker processes report
 * in their heartbeats, since only one process may open a DuckDB file.
 */
export async function checkReadiness(services: RuntimeServices, processes: ProcessRegistry, extra: readonly ReadinessCheck[] = []): Promise<Readiness> {
  const [redis, postgres, duckdb, ...others] = await Promise.all([
    probe('Redis', () => services.redis.ping()),
    services.config.databaseUrl
      ? probe('PostgreSQL', () => services.pg().query('SELECT 1'))
      : Promise.resolve<DependencyStatus>({ ok: false, error: 'DATABASE_URL is not set' }),
    checkDuckDb(services, processes),
    ...extra.map((c) => probe(c.name, () => c.check())),
  ]);
  const checks: Record<string, DependencyStatus> = { redis, postgres, duckdb };
  extra.forEach((c, i) => (checks[c.name] = others[i]!));
  return { ready: Object.values(checks).every((c) => c.ok), checks };
}

export async function checkDuckDb(services: RuntimeServices, processes: ProcessRegistry): Promise<DependencyStatus> {
  // A worker opens DuckDB here only when no lease governs the file or it holds that lease.
  const mayOpen = services.role !== 'api' && (!services.duckDbLease.governed || services.duckDbLease.held);
  if (services.hasDuckDb() || mayOpen) {
    const local = await probe('DuckDB', async () => (await services.duckdb()).connection.run('SELECT 1'));
    if (local.ok || services.hasDuckDb()) return local;
  }
  try {
    const others = await processes.list();
    const holder = others.find((p) => p.id !== services.processId && p.dependencies.duckdb?.ok);
    if (holder) return { ok: true };
    const failing = others.find((p) => p.dependencies.duckdb && !p.dependencies.duckdb.ok);
    return { ok: false, error: failing?.dependencies.duckdb?.error ?? 'no worker process reports DuckDB open' };
  } catch (err) {
    return { ok: false, error: `cannot read worker heartbeats: ${errorMessage(err)}` };
  }
}
