import type { BackoffOptions } from './backoff.js';
import { DEFAULT_BACKOFF } from './backoff.js';
import type { Logger } from './logger.js';
import type { RuntimeServices } from './services.js';

/**
 * - permanent: always restarted;
 * - transient: restarted only after a failure, not after a normal exit;
 * - temporary: never restarted.
 */
export type RestartType = 'permanent' | 'transient' | 'temporary';

export interface ActorSpec {
  restart: RestartType;
  /** Restarts allowed within `periodMs` before the failure escalates. @defaultValue 5 */
  intensity: number;
  /** @defaultValue 60000 (ms) */
  periodMs: number;
  /** Delay before each restart, growing with consecutive failures. */
  backoff: BackoffOptions;
  /** Time allowed to drain in-flight work on stop. @defaultValue 10000 (ms) */
  shutdownMs: number;
}

export const DEFAULT_ACTOR_SPEC: ActorSpec = {
  restart: 'permanent',
  intensity: 5,
  periodMs: 60_000,
  backoff: DEFAULT_BACKOFF,
  shutdownMs: 10_000,
};

export interface ActorContext {
  readonly name: string;
  readonly log: Logger;
  readonly services: RuntimeServices;
  /** Report that the running actor crashed; the supervisor decides what follows. */
  fail(err: Error): void;
  /** Report that the actor finished its work normally. */
  exit(): void;
}

/**
 * One concern of the runtime. `start` resolves once the actor is working (or
 * rejects: a crash at start); `stop` drains in-flight work and resolves when done.
 * An actor instance may be started again after it stopped or failed.
 */
export interface Actor {
  readonly name: string;
  readonly spec?: Partial<ActorSpec>;
  start(ctx: ActorContext): Promise<void>;
  stop(timeoutMs: number): Promise<void>;
  /** Extra facts shown in stats (e.g. lease role), cheap to compute. */
  describe?(): Record<string, unknown>;
}

const ACTOR_NAME = /^[a-z][a-z0-9-]{0,62}$/;

export function resolveSpec(actor: Actor): ActorSpec {
  const spec: ActorSpec = { ...DEFAULT_ACTOR_SPEC, ...actor.spec, backoff: { ...DEFAULT_ACTOR_SPEC.backoff, ...actor.spec?.backoff } };
  const where = `actor ${actor.name}`;
  if (!ACTOR_NAME.test(actor.name)) throw new RangeError(`${where}: name must be lower-case letters, digits and -, starting with a letter`);
  if (!['permanent', 'transient', 'temporary'].includes(spec.restart)) throw new RangeError(`${where}: restart must be permanent, transient or temporary, got ${spec.restart}`);
  if (!Number.isInteger(spec.intensity) || spec.intensity < 0) throw new RangeError(`${where}: intensity must be an integer >= 0, got ${spec.intensity}`);
  if (!(spec.periodMs > 0)) throw new RangeError(`${where}: periodMs must be > 0, got ${spec.periodMs}`);
  if (!(spec.shutdownMs > 0)) throw new RangeError(`${where}: shutdownMs must be > 0, got ${spec.shutdownMs}`);
  return spec;
}
