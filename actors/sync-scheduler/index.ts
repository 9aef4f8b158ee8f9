import { reconcileQueue } from '../../queues/index.js';
import { createPgPool, type CapabilityExtension } from '../../runtime/index.js';
import type { ActorFactory } from '../factory.js';
import { loadSyncConfig, type SyncConfig } from './config.js';
import { collectSyncStats } from './stats.js';
import { syncSchedulerActor, SYNC_SCHEDULER } from './actor.js';

export { loadSyncConfig, type SyncConfig } from './config.js';
export { SYNC_SCHEDULER } from './actor.js';

/** Stats (`sync` section) and readiness of both databases, for every process. */
function syncExtension(sync: SyncConfig): CapabilityExtension {
  const queueDb = createPgPool(sync.queueDbUri!, 1);
  const portfolioDb = createPgPool(sync.portfolioDbUri!, 2);
  return {
    stats: [{ name: 'sync', collect: (services) => collectSyncStats(services.redis, services.config.queuePrefix, portfolioDb) }],
    readiness: [
      { name: 'queue_db', check: () => queueDb.query('SELECT 1') },
      { name: 'portfolio_db', check: () => portfolioDb.query('SELECT 1') },
    ],
    async close() {
      await Promise.allSettled([queueDb.end(), portfolioDb.end()]);
    },
  };
}

export function syncSchedulerFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory {
  let sync: SyncConfig | undefined;
  const config = () => (sync ??= loadSyncConfig(env));
  return {
    name: SYNC_SCHEDULER,
    queues: [reconcileQueue],
    enabled: () => config().enabled,
    create: () => syncSchedulerActor(config()),
    extension: () => syncExtension(config()),
  };
}
