import type { ActorFactory } from './factory.js';
import { syncSchedulerFactory } from './sync-scheduler/index.js';
import { outboxRelayFactory } from './outbox-relay/index.js';
import { syncEventsFactory } from './sync-events/index.js';

export type { ActorFactory } from './factory.js';

/**
 * The actors `concord start` can run, by name. Each capability adds an entry
 * from its own folder (actors/<name>/index.ts); actors never import each other.
 */
export function actorCatalog(env: NodeJS.ProcessEnv = process.env): Record<string, ActorFactory> {
  const factories = [syncSchedulerFactory(env), outboxRelayFactory(env), syncEventsFactory(env)];
  return Object.fromEntries(factories.map((f) => [f.name, f]));
}
