import { syncEventsQueue } from '../../queues/index.js';
import type { ActorFactory } from '../factory.js';
import { loadSyncEventsConfig, type SyncEventsConfig } from './config.js';
import { syncEventsActor, SYNC_EVENTS } from './actor.js';

export { loadSyncEventsConfig, type SyncEventsConfig } from './config.js';
export { SYNC_EVENTS } from './actor.js';

export function syncEventsFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory & { config(): SyncEventsConfig } {
  let config: SyncEventsConfig | undefined;
  const cfg = () => (config ??= loadSyncEventsConfig(env));
  return {
    name: SYNC_EVENTS,
    queues: [syncEventsQueue],
    enabled: () => cfg().enabled,
    create: () => syncEventsActor(cfg()),
    config: cfg,
  };
}
