import type pg from 'pg';
import type { SagaStep } from '../../queues/index.js';
import type { ServiceBreakers } from './breaker.js';
import { isBrokenCircuit } from './breaker.js';

/** What a step or compensation handler is given. */
export interface StepHandlerContext {
  sagaId: string;
  sagaType: string;
  stepName: string;
  serviceName: string;
  /** The step's `action`, or its `compensation_action` in a compensation handler. */
  action: string;
  phase: 'action' | 'compensation';
  /** The step's own `data`. */
  data: Record<string, unknown>;
  /** The saga's context with the results of earlier completed steps merged in, in step order. */
  context: Record<string, unknown>;
  /** step_name -> result of each completed step. */
  results: Record<string, unknown>;
  /** 1 for the first attempt of this action (or of this compensation). */
  attempt: number;
  /** Aborted when the step times out or this process loses the saga's lease: stop work then. */
  signal: AbortSignal;
  /** Stable per saga, step and phase: pass it to services so a repeated call is recognised. */
  idempotencyKey: string;
  /**
   * A PostgreSQL client inside the transaction that records this step's outcome: writes
   * made through it commit together with the step's completion (and only if this process
   * still holds the saga), so they happen exactly once. Opened on first call.
   */
  transaction(): Promise<pg.ClientBase>;
}

/** Returns the step's result (merged into the context when it is an object). */
export type StepHandler = (ctx: StepHandlerContext) => unknown;

export class StepTimeoutError extends Error {
  readonly retryable = true;
  constructor(step: string, ms: number) {
    super(`step ${step} timed out after ${ms} ms`);
    this.name = 'StepTimeoutError';
  }
}

export type Outcome =
  | { ok: true; value: unknown; tx: pg.PoolClient | undefined }
  | { ok: false; error: string; timedOut: boolean; refused: boolean };

export interface InvokeArgs {
  handler: StepHandler | undefined;
  def: SagaStep;
  ctx: Omit<StepHandlerContext, 'signal' | 'transaction'>;
  timeoutMs: number;
  /** Aborts on lease loss. */
  lost: AbortSignal;
  pool: pg.Pool;
  breakers: ServiceBreakers;
}

/**
 * Runs one handler under the service's circuit breaker with a timeout. On success the
 * handler's transaction (if it opened one) is left open for the caller to record the
 * outcome in and commit; on failure it is rolled back, and on a timeout or lease loss
 * its connection is destroyed so a handler still running cannot write outside it.
 */
export async function invokeHandler(a: InvokeArgs): Promise<Outcome> {
  if (!a.handler) return { ok: false, error: `no ${a.ctx.phase} handler registered for step ${a.def.step_name} in this process`, timedOut: false, refused: false };
  const handler = a.handler;
  const ac = new AbortController();
  const onLost = () => ac.abort(a.lost.reason);
  a.lost.addEventListener('abort', onLost);
  let opening: Promise<pg.PoolClient> | undefined;
  const ctx: StepHandlerContext = {
    ...a.ctx,
    signal: ac.signal,
    transaction: () =>
      (opening ??= (async () => {
        const c = await a.pool.connect();
        try {
          await c.query('BEGIN');
        } catch (err) {
          c.release(true);
          throw err;
        }
        return c;
      })()),
  };
  let timer: NodeJS.Timeout | undefined;
  const stop = new Promise<never>((_, reject) => {
    timer = setTimeout(() => ac.abort(new StepTimeoutError(a.def.step_name, a.timeoutMs)), a.timeoutMs);
    ac.signal.addEventListener('abort', () => reject(ac.signal.reason instanceof Error ? ac.signal.reason : new Error(String(ac.signal.reason))), { once: true });
  });
  stop.catch(() => undefined);
  try {
    const value = await a.breakers.get(a.def.service_name).execute(() => Promise.race([Promise.resolve().then(() => handler(ctx)), stop]));
    // The result is stored as JSON: one that cannot be is the handler's failure, not a crash.
    JSON.stringify(value ?? null);
    const tx = opening ? await opening : undefined;
    return { ok: true, value, tx };
  } catch (err) {
    const timedOut = err instanceof StepTimeoutError;
    const client = opening ? await opening.catch(() => undefined) : undefined;
    if (client) {
      if (ac.signal.aborted) client.release(true);
      else await client.query('ROLLBACK').then(() => client.release(), () => client.release(true));
    }
    return { ok: false, error: err instanceof Error ? err.message : String(err), timedOut, refused: isBrokenCircuit(err) };
  } finally {
    clearTimeout(timer);
    a.lost.removeEventListener('abort', onLost);
  }
}
