#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { actorCatalog } from '../actors/index.js';
import { ConfigError, createLogger, errorMessage, loadConfig, openDuckDb, type Role } from '../runtime/index.js';
import { migrateDuckDb, migrationsDir, readMigrations, type MigrateDownOptions } from '../runtime/migrate.js';
import { migrateDatabase, selectCapabilities } from './capabilities.js';
import { exitOnSignals, startProcess } from './process.js';

const HELP = `concord - data-consistency runtime on BullMQ/Redis

Usage:
  concord start [--role all|api|worker] [--actors a,b]   run a process (default role: all)
  concord migrate                                        apply PostgreSQL and DuckDB migrations
  concord migrate down [--database postgres|queue-db|portfolio-db] [--steps N | --to NAME | --all]
                                                         revert the last N (default 1) PostgreSQL migrations,
                                                         those after NAME (e.g. 0001_outbox), or all of them
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

/** The PostgreSQL databases `concord migrate down` can revert, and the variable holding each one's URL. */
const DOWN_DATABASES = { postgres: 'DATABASE_URL', 'queue-db': 'QUEUE_DB_URI', 'portfolio-db': 'USER_PORTFOLIO_DB_URI' } as const;
type DownDatabase = keyof typeof DOWN_DATABASES;

async function migrate(args: string[]): Promise<void> {
  if (args[0] === 'down') return migrateDown(args.slice(1));
  if (args.length > 0) throw new Error(`migrate: unexpected ${JSON.stringify(args[0])}; see concord --help`);
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

async function migrateDown(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { database: { type: 'string', default: 'postgres' }, steps: { type: 'string' }, to: { type: 'string' }, all: { type: 'boolean', default: false } },
    strict: true,
    allowPositionals: false,
  });
  const database = values.database as DownDatabase;
  if (!Object.hasOwn(DOWN_DATABASES, database)) {
    throw new Error(`--database: expected one of ${Object.keys(DOWN_DATABASES).join(', ')}, got ${JSON.stringify(values.database)}`);
  }
  const chosen = [values.steps !== undefined && '--steps', values.to !== undefined && '--to', values.all && '--all'].filter(Boolean);
  if (chosen.length > 1) throw new Error(`migrate down: ${chosen.join(' and ')} cannot be combined`);
  let down: MigrateDownOptions = {};
  if (values.all) down = { steps: Number.POSITIVE_INFINITY };
  else if (values.to !== undefined) down = { to: values.to };
  else if (values.steps !== undefined) {
    if (!/^[1-9]\d*$/.test(values.steps)) throw new Error(`--steps: expected a positive integer, got ${JSON.stringify(values.steps)}`);
    down = { steps: Number(values.steps) };
  }
  // Only the one URL is read (not loadConfig): reverting a database needs no Redis or auth settings.
  const variable = DOWN_DATABASES[database];
  const url = process.env[variable];
  if (!url) throw new ConfigError([{ variable, value: url, expected: `a postgres:// URL of the ${database} database to revert` }]);
  // What was reverted is printed below, one line each, rather than logged.
  const reverted = await migrateDatabase(database, url, createLogger('silent'), { down });
  if (reverted.length === 0) console.log(`${database}: nothing to revert`);
  for (const name of reverted) console.log(`${database}: reverted ${name}`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest);
    case 'migrate':
      return migrate(rest);
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
