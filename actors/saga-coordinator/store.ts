import type pg from 'pg';
import type { SagaStatus, SagaStep } from '../../queues/index.js';
import { FencedError } from '../../runtime/index.js';

export type ForwardState = 'pending' | 'running' | 'completed' | 'skipped' | 'failed' | 'cancelled';
export type CompState = 'running' | 'compensated' | 'failed' | null;

export interface StepState {
  state: ForwardState;
  comp_state: CompState;
  attempts: number;
  compensation_attempts: number;
  uncertain: boolean;
}

export interface ClaimedSaga {
  id: string;
  epoch: number;
  status: SagaStatus;
  saga_type: string;
  definition_version: string;
  steps: SagaStep[];
  context: Record<string, unknown>;
  results: Record<string, unknown>;
  gen: number;
  cancel_requested: boolean;
  created_at: Date;
}

type Queryable = Pick<pg.ClientBase, 'query'>;

/**
 * Takes the saga's ownership lease when it is free, expired, or already ours; every
 * taking bumps the fencing epoch. A pending saga becomes running. Returns undefined
 * when the saga is not ours to work on (see `whyNotClaimed`).
 */
export async function claimSaga(
  db: Queryable,
  id: string,
  owner: string,
  ttlMs: number,
  startStep: string | null,
): Promise<(ClaimedSaga & { states: Map<string, StepState>; started: boolean }) | undefined> {
  type Row = ClaimedSaga & { epoch: string; step_states: Record<string, [StepState['state'], CompState, number, number, boolean]>; started: { attempts: number; uncertain: boolean } | null };
  // With `startStep` (an action job), the same statement also marks that step running,
  // as a separate start would: it saves a round trip on every step. The caller undoes it
  // ('unstart') in the rare case the step turns out not to be runnable. `t.saga_id = $1`
  // keeps the step lookup on the primary key whatever the (cached, generic) plan thinks of
  // a join with c on a table whose statistics lag its growth.
  const { rows } = await db.query<Row>({
    name: 'concord-saga-claim',
    text: `WITH c AS (
             UPDATE sagas SET owner = $2, epoch = epoch + 1, lease_until = now() + $3 * interval '1 millisecond',
                              status = CASE WHEN status = 'pending' THEN 'running' ELSE status END,
                              started_at = coalesce(started_at, now()), updated_at = now(),
                              current_step = CASE WHEN status IN ('pending', 'running') THEN coalesce($4, current_step) ELSE current_step END
              WHERE id = $1 AND status IN ('pending', 'running', 'compensating') AND attention IS NULL
                AND (owner IS NULL OR owner = $2 OR lease_until < now())
          RETURNING id, epoch, status, saga_type, definition_version, steps, context, results, gen, cancel_requested, created_at),
           st AS (
             UPDATE saga_steps t SET ${STEP_CHANGES.start.set} FROM c
              WHERE t.saga_id = $1 AND t.saga_id = c.id AND t.step_name = $4 AND ${STEP_CHANGES.start.guard} AND c.status = 'running' AND NOT c.cancel_requested
          RETURNING t.attempts, t.uncertain)
           SELECT c.*, concord_saga_step_states(c.id) AS step_states, (SELECT to_jsonb(st) FROM st) AS started FROM c`,
    values: [id, owner, ttlMs, startStep],
  });
  const r = rows[0];
  if (!r) return undefined;
  const { step_states, started, ...saga } = r;
  const states = new Map(
    Object.entries(step_states).map(([name, [state, comp_state, attempts, compensation_attempts, uncertain]]) => [name, { state, comp_state, attempts, compensation_attempts, uncertain }]),
  );
  // The function reads with its own snapshot: whether it saw this statement's start or
  // not, the start's own RETURNING is the truth for that step.
  if (started && startStep) Object.assign(states.get(startStep)!, { state: 'running', attempts: started.attempts, uncertain: started.uncertain });
  return { ...saga, epoch: Number(r.epoch), states, started: started !== null };
}

export async function whyNotClaimed(db: Queryable, id: string): Promise<{ done: true } | { leaseMs: number }> {
  const { rows } = await db.query<{ status: SagaStatus; attention: string | null; lease_ms: number | null }>(
    `SELECT status, attention, (extract(epoch FROM lease_until - now()) * 1000)::float8 AS lease_ms FROM sagas WHERE id = $1`,
    [id],
  );
  const r = rows[0];
  if (!r || r.attention !== null || !['pending', 'running', 'compensating'].includes(r.status)) return { done: true };
  return { leaseMs: Math.max(0, r.lease_ms ?? 0) };
}

/** How one write changes the step it is about. Each is guarded by the state it expects. */
const STEP_CHANGES = {
  start: {
    set: `state = 'running', attempts = t.attempts + 1, uncertain = t.uncertain OR t.state = 'running', started_at = now()`,
    guard: `t.state IN ('pending', 'running')`,
  },
  completed: { set: `state = 'completed', result = $4::jsonb, completed_at = clock_timestamp(), last_error = NULL`, guard: `t.state = 'running'` },
  /** From pending, or from a start the claim made before the condition was looked at. */
  skipped: { set: `state = 'skipped', completed_at = clock_timestamp(), attempts = t.attempts - (t.state = 'running')::int`, guard: `t.state IN ('pending', 'running')` },
  retry: { set: `state = 'pending', last_error = $5, uncertain = t.uncertain OR $6`, guard: `t.state = 'running'` },
  /** A start the circuit breaker refused after all: the attempt never ran. */
  unstart: { set: `state = 'pending', attempts = t.attempts - 1`, guard: `t.state = 'running'` },
  failed: { set: `state = 'failed', last_error = $5, uncertain = t.uncertain OR $6, completed_at = now()`, guard: `t.state = 'running'` },
  cancelled: { set: `state = 'cancelled'`, guard: `t.state = 'pending'` },
  comp_start: {
    // An action still marked running was abandoned by a dead worker: it may have acted.
    set: `comp_state = 'running', compensation_attempts = t.compensation_attempts + 1,
          uncertain = t.uncertain OR t.state = 'running', state = CASE WHEN t.state = 'running' THEN 'failed' ELSE t.state END`,
    guard: `t.comp_state IS DISTINCT FROM 'compensated'`,
  },
  comp_done: { set: `comp_state = 'compensated', compensated_at = clock_timestamp()`, guard: `t.comp_state = 'running'` },
  comp_unstart: { set: `comp_state = NULL, compensation_attempts = t.compensation_attempts - 1`, guard: `t.comp_state = 'running'` },
  comp_retry: { set: `comp_state = NULL, last_error = $5`, guard: `t.comp_state = 'running'` },
  comp_failed: { set: `comp_state = 'failed', last_error = $5`, guard: `t.comp_state = 'running'` },
} as const;
export type StepChange = keyof typeof STEP_CHANGES;

export interface SagaChange {
  status?: SagaStatus | undefined;
  currentStep?: string | undefined;
  failedStep?: string | undefined;
  lastError?: string | undefined;
  attention?: string | undefined;
  /** Give the lease up in the same write (the process has no more work on this saga). */
  release: boolean;
}

export interface Write {
  sagaId: string;
  epoch: number;
  owner: string;
  leaseMs: number;
  step?: { name: string; change: StepChange; result?: unknown; error?: string; uncertain?: boolean } | undefined;
  saga: SagaChange;
  /** Also mark this (next) step running in the same statement: the job goes on with it. */
  startNext?: string | undefined;
}

const statementCache = new Map<string, string>();

function statement(change: StepChange | 'none', next: boolean): string {
  const key = `${change}${next ? '+next' : ''}`;
  let text = statementCache.get(key);
  if (text) return text;
  const step =
    change === 'none'
      ? `st AS (SELECT 1 WHERE false)`
      : `st AS (UPDATE saga_steps t SET ${STEP_CHANGES[change].set} FROM f
                 WHERE t.saga_id = $1 AND t.step_name = $3 AND ${STEP_CHANGES[change].guard} RETURNING 1)`;
  const needStep = change === 'none' ? 'true' : 'EXISTS (SELECT 1 FROM st)';
  // f locks the saga row first and re-checks the epoch on its newest version, so the step
  // change and the saga change below happen only for the current lease holder.
  text = `WITH f AS (SELECT id FROM sagas WHERE id = $1 AND epoch = $2 AND owner = $14 FOR UPDATE),
          ${step},
          s AS (UPDATE sagas SET
                  results = CASE WHEN $15::boolean THEN results || jsonb_build_object($3::text, $4::jsonb) ELSE results END,
                  status = coalesce($7, status),
                  current_step = coalesce($8, current_step),
                  failed_step = coalesce($9, failed_step),
                  last_error = coalesce($10, last_error),
                  attention = coalesce($11, attention),
                  finished_at = CASE WHEN $7 IN ('completed', 'compensated', 'failed') THEN now() ELSE finished_at END,
                  owner = CASE WHEN $12::boolean THEN NULL ELSE owner END,
                  lease_until = CASE WHEN $12::boolean THEN NULL ELSE now() + $13 * interval '1 millisecond' END,
                  updated_at = now()
                WHERE id = $1 AND id IN (SELECT id FROM f) AND ${needStep}
                RETURNING cancel_requested, (extract(epoch FROM finished_at - created_at))::float8 AS duration_s),
          c AS (UPDATE saga_steps t SET state = 'cancelled' FROM s
                 WHERE t.saga_id = $1 AND t.state = 'pending' AND $7 IN ('compensated', 'failed'))${
            // The next step's start, in the same fenced statement (only if s wrote, i.e. the epoch held).
            next
              ? `,
          nx AS (UPDATE saga_steps t SET ${STEP_CHANGES.start.set} FROM s
                  WHERE t.saga_id = $1 AND t.step_name = $16 AND ${STEP_CHANGES.start.guard} RETURNING t.attempts, t.uncertain)`
              : ''
          }
          SELECT cancel_requested, duration_s, ${next ? '(SELECT to_jsonb(nx) FROM nx)' : 'NULL::jsonb'} AS started, $5::text IS NULL AS _e, $6::boolean AS _u FROM s`;
  statementCache.set(key, text);
  return text;
}

/**
 * One fenced write: the step's change and the saga's change commit together, and
 * only for the lease holder of `epoch`. Throws FencedError when the epoch is stale
 * (another process took the saga over) or the step was not in the expected state.
 */
export async function writeSaga(
  db: Queryable,
  w: Write,
): Promise<{ cancelRequested: boolean; durationSeconds: number | null; started: { attempts: number; uncertain: boolean } | null }> {
  const change = w.step?.change ?? 'none';
  const next = w.startNext !== undefined;
  const values: unknown[] = [
      w.sagaId,
      w.epoch,
      w.step?.name ?? null,
      w.step?.result === undefined ? null : JSON.stringify(w.step.result),
      w.step?.error ?? null,
      w.step?.uncertain ?? false,
      w.saga.status ?? null,
      w.saga.currentStep ?? null,
      w.saga.failedStep ?? null,
      w.saga.lastError ?? null,
      w.saga.attention ?? null,
      w.saga.release,
      w.leaseMs,
      w.owner,
      change === 'completed',
  ];
  if (next) values.push(w.startNext);
  const { rows } = await db.query<{ cancel_requested: boolean; duration_s: number | null; started: { attempts: number; uncertain: boolean } | null }>({
    name: `concord-saga-write-${change}${next ? '-next' : ''}`,
    text: statement(change, next),
    values,
  });
  const r = rows[0];
  if (!r) throw new FencedError(`saga ${w.sagaId}: write at epoch ${w.epoch} refused (lease lost or step ${w.step?.name ?? '-'} not ${change}-able)`, { saga_id: w.sagaId, epoch: w.epoch, step: w.step?.name });
  return { cancelRequested: r.cancel_requested, durationSeconds: r.duration_s, started: r.started };
}

/** Extends the leases this process holds; returns the ids still ours. */
export async function renewLeases(db: Queryable, owner: string, held: ReadonlyArray<{ id: string; epoch: number }>, ttlMs: number): Promise<Set<string>> {
  if (held.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>(
    `UPDATE sagas s SET lease_until = now() + $4 * interval '1 millisecond'
       FROM unnest($1::uuid[], $2::bigint[]) AS u(id, epoch)
      WHERE s.id = u.id AND s.epoch = u.epoch AND s.owner = $3 RETURNING s.id`,
    [held.map((h) => h.id), held.map((h) => h.epoch), owner, ttlMs],
  );
  return new Set(rows.map((r) => r.id));
}

/**
 * Sagas that look abandoned: active, nobody holding a live lease, no change for
 * `staleMs`. `updated_ms` makes the resume job id differ after each attempt.
 */
export async function staleSagas(db: Queryable, staleMs: number, limit: number): Promise<Array<{ id: string; updated_ms: string }>> {
  const { rows } = await db.query<{ id: string; updated_ms: string }>(
    `SELECT id, (extract(epoch FROM updated_at) * 1000)::bigint::text AS updated_ms FROM sagas
      WHERE status IN ('pending', 'running', 'compensating') AND attention IS NULL
        AND (owner IS NULL OR lease_until < now()) AND updated_at < now() - $1 * interval '1 millisecond'
      ORDER BY updated_at LIMIT $2`,
    [staleMs, limit],
  );
  return rows;
}
