/**
 * `npm run demo`: Concord on embedded defaults. Starts (or reuses) Redis and an
 * embedded PostgreSQL with logical replication, migrates, and runs the api and
 * the actors in this process, with a small demo workload. Ctrl-C stops it.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, loadConfig, openDuckDb } from '../runtime/index.js';
import { migrateDuckDb, migrationsDir, readMigrations } from '../runtime/migrate.js';
import { migrateDatabase, selectCapabilities } from '../cli/capabilities.js';
import { exitOnSignals, startProcess } from '../cli/process.js';
import { createDemoDatabases, runDemoQueueTraffic } from './demo-sync.js';
import { createDemoOrdersTable, runDemoOrders } from './demo-outbox.js';
import { runDemoEventSourcedOrders } from './demo-orders-es.js';
import { reportDemoCopy } from './demo-cdc.js';
import { startServices } from './services/index.js';
import { demoConsumer, demoProducer, demoReadings } from './demo-workload.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const say = (m: string) => console.log(`[demo] ${m}`);

// How the DuckDB copy of demo_orders follows PostgreSQL, every DEMO_CDC_REPORT_MS (10 s).
const reportMs = Number(process.env.DEMO_CDC_REPORT_MS ?? 10_000);
if (!Number.isInteger(reportMs) || reportMs < 100) throw new Error(`DEMO_CDC_REPORT_MS=${JSON.stringify(process.env.DEMO_CDC_REPORT_MS)}: expected an integer of at least 100 (milliseconds)`);
const services = await startServices({ mode: 'demo', log: say });
const syncDbs = await createDemoDatabases(services.postgres.url);
const env = {
  // The consistency manager between two demo databases, on the development profile.
  QUEUE_DB_URI: syncDbs.queueDbUri,
  USER_PORTFOLIO_DB_URI: syncDbs.portfolioDbUri,
  CONCORD_PROFILE: 'development',
  SYNC_INTERVAL: '5',
  // CDC copies the demo's orders into DuckDB (main.demo_orders) as they are written.
  CDC_ENABLED: 'true',
  CDC_MONITORED_TABLES: 'public.demo_orders',
  CDC_REPLICATION_SLOT_NAME: 'concord_demo',
  // The projections actor keeps the example order domain's read model (table order_summary) up to date.
  PROJECTIONS: 'order-summary',
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

const quiet = createLogger('warn');
await migrateDatabase('postgres', services.postgres.url, quiet);
await migrateDatabase('queue-db', syncDbs.queueDbUri, quiet);
await migrateDatabase('portfolio-db', syncDbs.portfolioDbUri, quiet);
const duck = await openDuckDb(config.duckdb);
await migrateDuckDb(duck.connection, await readMigrations(migrationsDir('duckdb')));
duck.close();
await createDemoOrdersTable(services.postgres.url);
say('migrations applied (PostgreSQL, queue and portfolio databases, DuckDB)');

const capabilities = selectCapabilities('all', undefined, env);
const traffic = runDemoQueueTraffic(syncDbs.queueDbUri);
const orders = runDemoOrders(services.postgres.url);
const esOrders = runDemoEventSourcedOrders(services.postgres.url);
const proc = await startProcess({
  config,
  role: 'all',
  log,
  ...capabilities,
  actors: [...capabilities.actors, demoConsumer(), demoProducer()],
  queues: [...capabilities.queues, demoReadings],
});
const copyReport = reportDemoCopy(services.postgres.url, proc.runtime.services, say, reportMs);
exitOnSignals(
  {
    ...proc,
    async stop(timeoutMs) {
      await copyReport.stop();
      await traffic.stop();
      await orders.stop();
      await esOrders.stop();
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
Concord is running (role all: ${capabilities.actors.map((a) => a.name).join(', ') || 'no capability actors'}, plus the demo workload)
  control plane  ${url}/            stats   ${url}/api/v1/stats
  Bull Board     ${url}/admin/queues
  dashboard      ${url}/dashboard   (consistency score per table over time, lag, queue depths, DLQ, alerts)
  metrics        ${url}/metrics       ready   ${url}/ready
  API docs       ${url}/docs          DLQ     ${url}/api/v1/dlq/demo.readings
  Redis          ${services.redis.url}${services.redis.owned ? '' : ' (already running, reused)'}
  PostgreSQL     ${services.postgres.url}
  DuckDB         ${config.duckdb.path}
  queue DB       ${syncDbs.queueDbUri}   (new entries every 3 s; sync every ${env.SYNC_INTERVAL} s)
  portfolio DB   ${syncDbs.portfolioDbUri}   (psql it: SELECT status, count(*) FROM portfolio_transactions GROUP BY 1)
  outbox         ${url}/api/v1/outbox/stats   (an order + its event every 2 s; broker: ${config.kafkaBrokers ? 'Kafka' : `Redis Streams, stream ${config.queuePrefix}:stream:demo.orders`})
  CDC → DuckDB   ${url}/api/v1/data-sync/cdc/status   (demo_orders inserted, updated and deleted every 2 s, copied into ${config.duckdb.path} as main.demo_orders;
                 every ${reportMs / 1000} s a "[demo] CDC copy" line compares the copy with PostgreSQL)
  sync status    ${url}/api/v1/data-sync/sync/status
  event sourcing ${url}/api/v1/projections   (an order through the command bus every 2 s, then item added, paid, shipped on the next ticks;
                 events of one: ${url}/api/v1/streams/order-<id>; read model: psql ${services.postgres.url} -c 'SELECT status, count(*), sum(total_cents) FROM order_summary GROUP BY 1')
Ctrl-C drains and stops.
`);
if (process.env.DEMO_EXIT_AFTER_MS) setTimeout(() => process.kill(process.pid, 'SIGTERM'), Number(process.env.DEMO_EXIT_AFTER_MS));
