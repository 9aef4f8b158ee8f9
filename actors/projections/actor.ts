import { Counter, Gauge, type Registry } from 'prom-client';
import type pg from 'pg';
import { errorMessage, type Actor } from '../../runtime/index.js';
import { ProjectionRunner, QueryCache, Upcasters, projectionCatalog, projectionStatuses } from '../../cqrs/index.js';
import type { ProjectionsConfig } from './config.js';

export const PROJECTIONS = 'projections';

/** Made once per process: the actor may be restarted. Lag is read from PostgreSQL at scrape time. */
function projectionMetrics(registry: Registry, pool: () => pg.Pool | undefined): Counter<'projection'> {
  const existing = registry.getSingleMetric('concord_projection_events_total');
  if (existing) return existing as Counter<'projection'>;
  const registers = [registry];
  const lag: Gauge<'projection'> = new Gauge({
    name: 'concord_projection_lag_events',
    help: 'Global log positions between the head and each projection\'s checkpoint, read at scrape time',
    labelNames: ['projection'],
    registers,
    collect: async () => {
      const db = pool();
      const rows = db ? await projectionStatuses(db).catch(() => undefined) : undefined;
      if (!rows) return;
      lag.reset();
      for (const r of rows) lag.set({ projection: r.name }, r.lag);
    },
  });
  return new Counter({ name: 'concord_projection_events_total', help: 'Events applied by async projections', labelNames: ['projection'], registers });
}

/**
 * Runs the configured async projections of this process. Not a lease
 * singleton: each projection's runner takes a PostgreSQL advisory lock, so with
 * several worker processes one is active per projection and the others stand by.
 */
export function projectionsActor(config: ProjectionsConfig): Actor {
  let runners: ProjectionRunner[] = [];
  return {
    name: PROJECTIONS,
    spec: { restart: 'permanent', shutdownMs: 15_000 },
    async start(ctx) {
      const { services } = ctx;
      const url = services.config.databaseUrl;
      if (!url) throw new Error('projections need DATABASE_URL');
      const events = projectionMetrics(services.metrics.registry, () => services.pg());
      const cache = config.enableCaching ? new QueryCache(services.redis, services.config.queuePrefix, config.cacheTtlSeconds) : undefined;
      const catalog = projectionCatalog();
      runners = config.projections.map((name) => {
        const entry = catalog.get(name)!;
        const upcasters = new Upcasters();
        entry.upcasters?.(upcasters);
        const projection = entry.make();
        return new ProjectionRunner({
          connectionString: url,
          projection: { ...projection, name, failurePolicy: config.failurePolicy ?? projection.failurePolicy ?? 'stop' },
          upcasters,
          ...(cache ? { cache } : {}),
          batchSize: config.batchSize,
          pollMs: config.pollIntervalMs,
          maxAttempts: config.maxAttempts,
          log: ctx.log,
          onBatch: (n) => events.inc({ projection: name }, n),
        });
      });
      for (const r of runners) r.start();
      if (runners.length === 0) ctx.log.info('no projections configured (PROJECTIONS is empty): idle');
      ctx.log.info({ projections: config.projections }, 'projections running');
    },
    async stop() {
      const results = await Promise.allSettled(runners.map((r) => r.stop()));
      runners = [];
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw new Error(`a projection runner did not stop cleanly: ${errorMessage(failed.reason)}`);
    },
    describe: () => Object.fromEntries(runners.map((r) => [r.name, r.describe()])),
  };
}
