#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { actorCatalog } from '../actors/index.js';
import { ConfigError, createLogger, createPgPool, errorMessage, loadConfig, openDuckDb, type Config, type Role } from '../runtime/index.js';
import { migrateDuckDb, migratePostgres, migrationsDir, readMigrations } from '../runtime/migrate.js';
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

function selectActors(config: Config, role: Role, names: string | undefined) {
  if (role === 'api') return [];
  const known = Object.keys(actorCatalog);
  const wanted = names
    ? names.split(',').map((s) => s.trim()).filter(Boolean)
    : known.filter((name) => actorCatalog[name]?.enabledByDefault(config));
  const unknown = wanted.filter((n) => !known.includes(n));
  if (unknown.length > 0) {
    throw new Error(`--actors: unknown actor(s) ${unknown.join(', ')}; known: ${known.join(', ') || '(none yet)'}`);
  }
  return wanted.map((name) => actorCatalog[name]!.create(config));
}

async function start(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { role: { type: 'string', default: 'all' }, actors: { type: 'string' } }, strict: true });
  const role = values.role as Role;
  if (!ROLES.includes(role)) throw new Error(`--role: expected one of ${ROLES.join(', ')}, got ${JSON.stringify(values.role)}`);
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (config.auth.mode === 'none') log.warn('AUTH_MODE=none: the control plane and Bull Board are open to anyone who can reach them');
  const actors = selectActors(config, role, values.actors);
  const queues = Object.values(actorCatalog).flatMap((f) => f.queues);
  const proc = await startProcess({ config, role, actors, queues, log });
  exitOnSignals(proc, log, config.shutdownTimeoutMs);
}

async function migrate(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (!config.databaseUrl) throw new ConfigError([{ variable: 'DATABASE_URL', value: undefined, expected: 'a postgres:// URL to migrate' }]);
  const pool = createPgPool(config.databaseUrl, 2);
  try {
    const pg = await migratePostgres(pool, await readMigrations(migrationsDir('postgres')));
    log.info({ applied: pg }, `PostgreSQL: ${pg.length} migration(s) applied`);
  } finally {
    await pool.end();
  }
  const duck = await openDuckDb(config.duckdb);
  try {
    const dd = await migrateDuckDb(duck.connection, await readMigrations(migrationsDir('duckdb')));
    log.info({ applied: dd }, `DuckDB: ${dd.length} migration(s) applied`);
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
      console.log(Object.keys(actorCatalog).join('\n') || '(no actors yet)');
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
