import type { Actor, CapabilityExtension } from '../runtime/index.js';
import type { QueueDefinition } from '../queues/index.js';

/** How `concord start` learns what a capability needs; each actor folder exports one. */
export interface ActorFactory {
  name: string;
  /** Queues the actor consumes or produces (registered in every role, so the API and Bull Board know them). */
  queues: ReadonlyArray<QueueDefinition<unknown>>;
  /** Whether the capability is configured on (reads and validates its variables, once). */
  enabled(): boolean;
  create(): Actor;
  /** Stats and readiness this capability adds to every process when enabled. */
  extension?(): CapabilityExtension;
}
