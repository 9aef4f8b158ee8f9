import type { ActorFactory } from '../factory.js';
import { errorMessage, type CapabilityExtension } from '../../runtime/index.js';
import { projectionStatuses } from '../../cqrs/index.js';
import { loadProjectionsConfig, type ProjectionsConfig } from './config.js';
import { projectionsActor, PROJECTIONS } from './actor.js';

export { loadProjectionsConfig, type ProjectionsConfig } from './config.js';
export { PROJECTIONS } from './actor.js';

/** `projections` section of /api/v1/stats: status and lag of every registered projection. */
function projectionsExtension(): CapabilityExtension {
  return {
    // A database without the event store migration must not fail the whole stats document.
    stats: [{ name: 'projections', collect: (services) => projectionStatuses(services.pg()).then((projections) => ({ projections }), (err: unknown) => ({ projections: [], error: errorMessage(err) })) }],
    close: async () => undefined,
  };
}

export function projectionsFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory & { config(): ProjectionsConfig } {
  let config: ProjectionsConfig | undefined;
  const cfg = () => (config ??= loadProjectionsConfig(env));
  return {
    name: PROJECTIONS,
    queues: [],
    enabled: () => cfg().enabled,
    create: () => projectionsActor(cfg()),
    extension: projectionsExtension,
    config: cfg,
  };
}
