/**
 * `npm run demo`: Concord on embedded defaults. Starts (or reuses) Redis and an
 * embedded PostgreSQL with logical replication, migrates, and runs the api and
 * the actors in this process, with a small demo workload. Ctrl-C stops it.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, loadConfig, openDuckDb, createPgPool } from '../runtime/index.js';
import { migrateDuckDb, migratePostgres, migrationsDir, readMigrations } from '../runtime/migrate.js';
import { actorCatalog } from '../actors/index.js';
import { exitOnSignals, startProcess } from '../cli/process.js';
import { startServices } from './services/index.js';
import { demoConsumer, demoProducer, demoReadings } from './demo-workload.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const say = (m: string) => console.log(`[demo] ${m}`);

const services = await startServices({ mode: 'demo', log: say });
const env = {
  ...process.env,
  REDIS_URL: services.redis.url,
  DATABASE_URL: services.postgres.url,
  DUCKDB_DATABASE_PATH: process.env.DUCKDB_DATABASE_PATH ?? join(root, '.concord', 'analytics.duckdb'),
  AUTH_MODE: process.env.SECRET_KEY || process.env.AUTH_JWKS_URL || process.env.AUTH0_DOMAIN ? (process.env.AUTH_MODE ?? 'jwt') : 'none',
  CONCORD_QUEUE_PREFIX: process.env.CONCORD_QUEUE_PREFIX ?? 'concord-demo',
};
const config = loadConfig(env);
const log = createLogger(config.logLevel);
if (config.auth.mode === 'none') say('AUTH_MODE=none: no token needed (demo only; set SECRET_KEY to turn auth on)');

const pool = createPgPool(services.postgres.url, 2);
const appliedPg = await migratePostgres(pool, await readMigrations(migrationsDir('postgres')));
await pool.end();
const duck = await openDuckDb(config.duckdb);
const appliedDuck = await migrateDuckDb(duck.connection, await readMigrations(migrationsDir('duckdb')));
duck.close();
say(`migrations applied: PostgreSQL ${appliedPg.length}, DuckDB ${appliedDuck.length}`);

const capabilityActors = Object.values(actorCatalog).filter((f) => f.enabledByDefault(config));
const proc = await startProcess({
  config,
  role: 'all',
  actors: [...capabilityActors.map((f) => f.create(config)), demoConsumer(), demoProducer()],
  queues: [...capabilityActors.flatMap((f) => f.queues), demoReadings],
  log,
});
exitOnSignals(
  {
    ...proc,
    async stop(timeoutMs) {
      const clean = await proc.stop(timeoutMs);
      await services.stop();
      return clean;
    },
  },
  log,
  config.shutdownTimeoutMs,
);

const url = proc.http.url;
console.log(`
Concord is running (role all, ${capabilityActors.length} capability actor(s) + the demo workload)
  control plane  ${url}/            stats   ${url}/api/v1/stats
  Bull Board     ${url}/admin/queues
  metrics        ${url}/metrics       ready   ${url}/ready
  API docs       ${url}/docs          DLQ     ${url}/api/v1/dlq/demo.readings
  Redis          ${services.redis.url}${services.redis.owned ? '' : ' (already running, reused)'}
  PostgreSQL     ${services.postgres.url}
  DuckDB         ${config.duckdb.path}
Ctrl-C drains and stops.
`);
if (process.env.DEMO_EXIT_AFTER_MS) setTimeout(() => process.kill(process.pid, 'SIGTERM'), Number(process.env.DEMO_EXIT_AFTER_MS));
