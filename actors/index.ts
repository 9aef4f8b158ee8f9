import type { ActorFactory } from './factory.js';
import { syncSchedulerFactory } from './sync-scheduler/index.js';
import { outboxRelayFactory } from './outbox-relay/index.js';
import { syncEventsFactory } from './sync-events/index.js';
import { sequenceAllocatorFactory } from './sequence-allocator/index.js';
import { cdcReaderFactory } from './cdc-reader/index.js';
import { projectionsFactory } from './projections/index.js';
import { sagaCoordinatorFactory } from './saga-coordinator/index.js';
import { dualWriterFactory } from './dual-writer/index.js';
import { validatorFactory } from './validator/index.js';
import { monitoringFactory } from './monitoring/index.js';

export type { ActorFactory } from './factory.js';

/**
 * The actors `concord start` can run, by name. Each capability adds an entry
 * from its own folder (actors/<name>/index.ts); actors never import each other.
 */
export function actorCatalog(env: NodeJS.ProcessEnv = process.env): Record<string, ActorFactory> {
  const factories = [syncSchedulerFactory(env), outboxRelayFactory(env), syncEventsFactory(env), sequenceAllocatorFactory(env), cdcReaderFactory(env), projectionsFactory(env), sagaCoordinatorFactory(env), dualWriterFactory(env), validatorFactory(env), monitoringFactory(env)];
  return Object.fromEntries(factories.map((f) => [f.name, f]));
}
