import { actorCatalog, type ActorFactory } from '../actors/index.js';
import { SYNC_SCHEDULER } from '../actors/sync-scheduler/index.js';
import { syncRoutes } from '../http/routes/sync.js';
import { outboxRoutes } from '../http/routes/outbox.js';
import { OUTBOX_RELAY } from '../actors/outbox-relay/index.js';
import { loadSyncEventsConfig, SYNC_EVENTS } from '../actors/sync-events/index.js';
import { syncEventsRoutes } from '../http/routes/sync-events.js';
import { loadSequenceConfig, SEQUENCE_ALLOCATOR } from '../actors/sequence-allocator/index.js';
import { klinesRoutes } from '../http/routes/klines.js';
import { CDC_READER, collectCdcStatus, loadCdcConfig } from '../actors/cdc-reader/index.js';
import { cdcRoutes } from '../http/routes/cdc.js';
import { PROJECTIONS } from '../actors/projections/index.js';
import { projectionsRoutes } from '../http/routes/projections.js';
import { SAGA_COORDINATOR } from '../actors/saga-coordinator/index.js';
import { sagaRoutes } from '../http/routes/sagas.js';
import { DUAL_WRITER, dataSyncDeps, type dualWriterFactory } from '../actors/dual-writer/index.js';
import { dataSyncRoutes } from '../http/routes/data-sync.js';
import { tableScoreHistory, VALIDATOR, type validatorFactory } from '../actors/validator/index.js';
import { consistencyRoutes } from '../http/routes/consistency.js';
import { MONITORING, monitoringDeps, type monitoringFactory } from '../actors/monitoring/index.js';
import { monitoringRoutes } from '../http/routes/monitoring.js';
import { dashboardRoutes } from '../http/routes/dashboard.js';
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
      ...(enabled.some((f) => f.name === DUAL_WRITER) ? dualWriterRoutes(runtime, catalog[DUAL_WRITER] as ReturnType<typeof dualWriterFactory>) : []),
      ...(enabled.some((f) => f.name === SYNC_EVENTS) ? syncEventsRoutes(runtime, { metadataMaxBytes: loadSyncEventsConfig(env).metadataMaxBytes }) : []),
      ...(enabled.some((f) => f.name === SEQUENCE_ALLOCATOR) ? klinesRoutes(runtime, { mode: loadSequenceConfig(env).mode, lanes: loadSequenceConfig(env).lanes }) : []),
      ...(enabled.some((f) => f.name === PROJECTIONS) ? projectionsRoutes(runtime) : []),
      ...(enabled.some((f) => f.name === SAGA_COORDINATOR) ? sagaRoutes(runtime) : []),
      ...(enabled.some((f) => f.name === VALIDATOR) ? consistencyRoutes((catalog[VALIDATOR] as ReturnType<typeof validatorFactory>).api(runtime.services)) : []),
      ...(enabled.some((f) => f.name === MONITORING) ? monitoringRoutes(monitoringDeps(runtime.services, (catalog[MONITORING] as ReturnType<typeof monitoringFactory>).config())) : []),
      ...(enabled.some((f) => f.name === MONITORING)
        ? dashboardRoutes({ tables: (catalog[MONITORING] as ReturnType<typeof monitoringFactory>).config().tables, scoreHistory: (tables, runs) => tableScoreHistory(runtime.services.pg(), tables, runs) })
        : []),
      ...(enabled.some((f) => f.name === CDC_READER)
        ? cdcRoutes(runtime, { status: (rt) => collectCdcStatus(rt.services.pg(), rt.services.redis, rt.services.config.queuePrefix, loadCdcConfig(env)) })
        : []),
    ],
  };
}

/** `/api/v1/data-sync`, bound to the factory whose extension closes its QueueEvents connection. */
function dualWriterRoutes(runtime: ConcordRuntime, factory: ReturnType<typeof dualWriterFactory>): RouteSpec[] {
  const { services } = runtime;
  return dataSyncRoutes(runtime, dataSyncDeps(services, factory.config(), factory.dualWrite(services)));
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

