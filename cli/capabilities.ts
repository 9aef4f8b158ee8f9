import { actorCatalog, type ActorFactory } from '../actors/index.js';
import { SYNC_SCHEDULER } from '../actors/sync-scheduler/index.js';
import { syncRoutes } from '../http/routes/sync.js';
import { outboxRoutes } from '../http/routes/outbox.js';
import { OUTBOX_RELAY } from '../actors/outbox-relay/index.js';
import { loadSyncEventsConfig, SYNC_EVENTS } from '../actors/sync-events/index.js';
import { syncEventsRoutes } from '../http/routes/sync-events.js';
import type { RouteSpec } from '../http/route.js';
import { createPgPool, type ConcordRuntime, type Logger, type Role } from '../runtime/index.js';
import { migrateDownPostgres, migratePostgres, migrationsDir, readMigrations, type MigrateDownOptions, type MigrationSet } from '../runtime/migrate.js';

/** The capabilities this process takes part in, and the actors it runs of them. */
export function selectCapabilities(role: Role, names: string | undefined, env: NodeJS.ProcessEnv = process.env) {
  const catalog = actorCatalog(env);
  const known = Object.keys(catalog);
  const enabled = Object.values(catalog).filter((f) => f.enabled());
  let running: ActorFactory[] = [];
  if (role !== 'api') {
    const wanted = names ? names.split(',').map((s) => s.trim()).filter(Boolean) : enabled.map((f) => f.name);
    const unknown = wanted.filter((n) => !known.includes(n));
    if (unknown.length > 0) throw new Error(`--actors: unknown actor(s) ${unknown.join(', ')}; known: ${known.join(', ') || '(none yet)'}`);
    running = wanted.map((n) => catalog[n]!);
  }
  return {
    actors: running.map((f) => f.create()),
    queues: Object.values(catalog).flatMap((f) => f.queues),
    extensions: enabled.flatMap((f) => (f.extension ? [f.extension()] : [])),
    /** Routes of enabled capabilities, mounted in the control plane. */
    routes: (runtime: ConcordRuntime): RouteSpec[] => [
      ...(enabled.some((f) => f.name === SYNC_SCHEDULER) ? syncRoutes(runtime) : []),
      ...(enabled.some((f) => f.name === OUTBOX_RELAY) ? outboxRoutes(runtime) : []),
      ...(enabled.some((f) => f.name === SYNC_EVENTS) ? syncEventsRoutes(runtime, { metadataMaxBytes: loadSyncEventsConfig(env).metadataMaxBytes }) : []),
    ],
  };
}

/**
 * Applies one folder of SQL migrations to one PostgreSQL database; returns the names
 * applied. With `down`, reverts instead (see migrateDownPostgres) and returns the
 * names reverted.
 */
export async function migrateDatabase(set: MigrationSet, url: string, log: Logger, options: { down?: MigrateDownOptions } = {}): Promise<string[]> {
  const pool = createPgPool(url, 2);
  try {
    const migrations = await readMigrations(migrationsDir(set));
    if (options.down) {
      const reverted = await migrateDownPostgres(pool, migrations, options.down);
      log.info({ reverted }, `${set}: ${reverted.length} migration(s) reverted`);
      return reverted;
    }
    const applied = await migratePostgres(pool, migrations);
    log.info({ applied }, `${set}: ${applied.length} migration(s) applied`);
    return applied;
  } finally {
    await pool.end();
  }
}

