#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { actorCatalog } from '../actors/index.js';
import { ConfigError, createLogger, errorMessage, loadConfig, openDuckDb, type Role } from '../runtime/index.js';
import { migrateDuckDb, migrationsDir, readMigrations } from '../runtime/migrate.js';
import { migrateDatabase, selectCapabilities } from './capabilities.js';
import { exitOnSignals, startProcess } from './process.js';

const HELP = `concord - data-consistency runtime on BullMQ/Redis

Usage:
  concord start [--role all|api|worker] [--actors a,b]   run a process (default role: all)
  concord migrate                                        apply PostgreSQL and DuckDB migrations
  concord actors                                         list the actors this build can run
  concord --help

Roles:
  all     control plane and every enabled actor in one process (development, small installs)
  api     the Koa control plane only: enqueues work, reads state, serves Bull Board
  worker  supervised actors; serves /health, /ready and /metrics on PORT

Configuration comes from the environment (see README: Configuration).
SIGTERM/SIGINT drain in-flight jobs and exit 0 within SHUTDOWN_TIMEOUT_MS.`;

const ROLES: readonly Role[] = ['all', 'api', 'worker'];

async function start(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { role: { type: 'string', default: 'all' }, actors: { type: 'string' } }, strict: true });
  const role = values.role as Role;
  if (!ROLES.includes(role)) throw new Error(`--role: expected one of ${ROLES.join(', ')}, got ${JSON.stringify(values.role)}`);
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (config.auth.mode === 'none') log.warn('AUTH_MODE=none: the control plane and Bull Board are open to anyone who can reach them');
  const capabilities = selectCapabilities(role, values.actors);
  const proc = await startProcess({ config, role, log, ...capabilities });
  exitOnSignals(proc, log, config.shutdownTimeoutMs);
}

async function migrate(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (!config.databaseUrl) throw new ConfigError([{ variable: 'DATABASE_URL', value: undefined, expected: 'a postgres:// URL to migrate' }]);
  await migrateDatabase('postgres', config.databaseUrl, log);
  // The consistency manager's two databases, when configured.
  if (process.env.QUEUE_DB_URI) await migrateDatabase('queue-db', process.env.QUEUE_DB_URI, log);
  if (process.env.USER_PORTFOLIO_DB_URI) await migrateDatabase('portfolio-db', process.env.USER_PORTFOLIO_DB_URI, log);
  const duck = await openDuckDb(config.duckdb);
  try {
    const dd = await migrateDuckDb(duck.connection, await readMigrations(migrationsDir('duckdb')));
    log.info({ applied: dd }, `duckdb: ${dd.length} migration(s) applied`);
  } finally {
    duck.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest);
    case 'migrate':
      return migrate();
    case 'actors':
      for (const f of Object.values(actorCatalog())) console.log(`${f.name}\t${f.enabled() ? 'enabled' : 'not configured'}`);
      return;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      console.log(HELP);
      return;
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}; see concord --help`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  // Config and usage errors are for a human: the message, no stack.
  console.error(err instanceof ConfigError ? err.message : `concord: ${errorMessage(err)}`);
  process.exit(2);
});
