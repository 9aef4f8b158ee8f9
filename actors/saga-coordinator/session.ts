import { DelayedError, type Job } from 'bullmq';
import type pg from 'pg';
import type { ServiceBreakers } from './breaker.js';
import { invokeHandler, type Outcome, type StepHandler } from './invoke.js';
import type { SagaStep } from '../../queues/index.js';
import { FencedError } from '../../runtime/index.js';
import type { ClaimedSaga, StepState } from './store.js';

/** A saga this process holds the lease of, while it has jobs of it in hand. */
export interface Session {
  saga: ClaimedSaga;
  states: Map<string, StepState>;
  defs: Map<string, SagaStep>;
  stages: string[][];
  jobs: number;
  inflight: Set<string>;
  inflightComp: Set<string>;
  closed: boolean;
  closing: Promise<void> | undefined;
  lock: Promise<unknown>;
  lost: AbortController;
  /** Steps the claim already marked running for the job that claimed. */
  prestarted: Set<string>;
  /**
   * The step the last write already marked running for the job in hand to run next
   * (instead of a queue hop and a new claim): set by the engine, taken by `handle`.
   */
  next: string | undefined;
}

/** Runs `fn` after every earlier locked work of the saga in this process: one decision at a time. */
export function locked<T>(s: Session, fn: () => Promise<T>): Promise<T> {
  const run = s.lock.then(fn, fn);
  s.lock = run.catch(() => undefined);
  return run;
}

/** Puts the job back for `ms` without spending one of its attempts. */
export async function delayJob(job: Job, ms: number): Promise<never> {
  await job.moveToDelayed(Date.now() + Math.max(1, Math.round(ms)), job.token);
  throw new DelayedError();
}

/** The saga's context with each completed step's (object) result merged in, in step order. */
export function contextOf(s: Session): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...s.saga.context };
  for (const step of s.saga.steps) {
    const r = s.saga.results[step.step_name];
    if (s.states.get(step.step_name)!.state === 'completed' && r !== null && typeof r === 'object' && !Array.isArray(r)) Object.assign(merged, r);
  }
  return merged;
}

/**
 * A job that waited for its turn and found the session closed: the saga ended (nothing
 * left to do), or the lease was lost, in which case the job is retried wherever the saga
 * is held now.
 */
export function stale(s: Session): 'skip' {
  if (s.lost.signal.aborted) throw new FencedError(`saga ${s.saga.id}: lease lost while this job waited; retried`);
  return 'skip';
}

/** What running one handler of a session needs from the engine. */
export interface InvokeDeps {
  pool: pg.Pool;
  breakers: ServiceBreakers;
  actions: ReadonlyMap<string, StepHandler>;
  compensations: ReadonlyMap<string, StepHandler>;
  config: { stepTimeoutMs: number };
}

/** Runs the step's action or compensation handler for this session's saga (see invokeHandler). */
export function invokeStep(d: InvokeDeps, s: Session, def: SagaStep, phase: 'action' | 'compensation', attempt: number): Promise<Outcome> {
  const handlers = phase === 'action' ? d.actions : d.compensations;
  return invokeHandler({
    handler: handlers.get(def.step_name),
    def,
    timeoutMs: def.timeout_ms ?? d.config.stepTimeoutMs,
    lost: s.lost.signal,
    pool: d.pool,
    breakers: d.breakers,
    ctx: {
      sagaId: s.saga.id,
      sagaType: s.saga.saga_type,
      stepName: def.step_name,
      serviceName: def.service_name,
      action: phase === 'action' ? def.action : def.compensation_action!,
      phase,
      data: def.data,
      context: contextOf(s),
      results: { ...s.saga.results },
      attempt,
      idempotencyKey: `${s.saga.id}:${def.step_name}:${phase}`,
    },
  });
}
