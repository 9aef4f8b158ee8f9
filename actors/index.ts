import type { Actor, Config } from '../runtime/index.js';
import type { QueueDefinition } from '../queues/index.js';

/**
 * The actors `concord start` can run, by name. Each capability adds an entry
 * from its own folder (actors/<name>/index.ts); actors never import each other.
 */
export interface ActorFactory {
  /** Queues the actor consumes or produces (registered in every role, so the API and Bull Board know them). */
  queues: ReadonlyArray<QueueDefinition<unknown>>;
  /** Whether `--role worker` runs it when `--actors` is not given. */
  enabledByDefault(config: Config): boolean;
  create(config: Config): Actor;
}

export const actorCatalog: Readonly<Record<string, ActorFactory>> = {};
