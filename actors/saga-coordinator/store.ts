import type pg from 'pg';
import type { SagaStatus, SagaStep } from '../../queues/index.js';
import { FencedError } from '../../runtime/index.js';
import { Batcher } from './batcher.js';

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

export type Claimed = ClaimedSaga & { states: Map<string, StepState>; started: boolean };

/** What one claim asks for: the saga, and (for an action job) the step to mark running with it. */
export interface ClaimRequest {
  id: string;
  startStep: string | null;
}

/**
 * Takes the saga's ownership lease when it is free, expired, or already ours; every
 * taking bumps the fencing epoch. A pending saga becomes running. Returns undefined
 * when the saga is not ours to work on (see `whyNotClaimed`).
 */
export async function claimSaga(db: Queryable, id: string, owner: string, ttlMs: number, startStep: string | null): Promise<Claimed | undefined> {
  return (await claimSagas(db, owner, ttlMs, [{ id, startStep }]))[0];
}

/**
 * claimSaga for several sagas in one statement (one round trip, one commit): the
 * results are in the order of `reqs`, undefined for a saga not claimed. The ids must differ.
 */
export async function claimSagas(db: Queryable, owner: string, ttlMs: number, reqs: readonly ClaimRequest[]): Promise<Array<Claimed | undefined>> {
  type Row = ClaimedSaga & { epoch: string; step_states: Record<string, [StepState['state'], CompState, number, number, boolean]>; started: { attempts: number; uncertain: boolean } | null };
  // With a start step (an action job), the same statement also marks that step running,
  // as a separate start would: it saves a round trip on every step. The caller undoes it
  // ('unstart') in the rare case the step turns out not to be runnable. `= ANY($1)` beside
  // each join lets the planner take the primary keys with the ids in hand.
  const { rows } = await db.query<Row>({
    // Unnamed on purpose: planned with each call's own arrays (see writeSagas).
    text: `WITH w AS (SELECT * FROM unnest($1::uuid[], $4::text[]) AS w(id, start_step)),
           c AS (
             UPDATE sagas g SET owner = $2, epoch = g.epoch + 1, lease_until = now() + $3 * interval '1 millisecond',
                              status = CASE WHEN g.status = 'pending' THEN 'running' ELSE g.status END,
                              started_at = coalesce(g.started_at, now()), updated_at = now(),
                              current_step = CASE WHEN g.status IN ('pending', 'running') THEN coalesce(w.start_step, g.current_step) ELSE g.current_step END
               FROM w
              WHERE g.id = ANY($1::uuid[]) AND g.id = w.id AND g.status IN ('pending', 'running', 'compensating') AND g.attention IS NULL
                AND (g.owner IS NULL OR g.owner = $2 OR g.lease_until < now())
          RETURNING g.id, g.epoch, g.status, g.saga_type, g.definition_version, g.steps, g.context, g.results, g.gen, g.cancel_requested, g.created_at, w.start_step),
           st AS (
             UPDATE saga_steps t SET ${STEP_CHANGES.start.set} FROM c
              WHERE t.saga_id = ANY($1::uuid[]) AND t.saga_id = c.id AND t.step_name = c.start_step AND ${STEP_CHANGES.start.guard} AND c.status = 'running' AND NOT c.cancel_requested
          RETURNING t.saga_id, t.attempts, t.uncertain)
           SELECT c.id, c.epoch, c.status, c.saga_type, c.definition_version, c.steps, c.context, c.results, c.gen, c.cancel_requested, c.created_at,
                  concord_saga_step_states(c.id) AS step_states,
                  CASE WHEN st.saga_id IS NULL THEN NULL ELSE jsonb_build_object('attempts', st.attempts, 'uncertain', st.uncertain) END AS started
             FROM c LEFT JOIN st ON st.saga_id = c.id`,
    values: [reqs.map((r) => r.id), owner, ttlMs, reqs.map((r) => r.startStep)],
  });
  const byId = new Map(rows.map((r) => [r.id, r]));
  return reqs.map((req) => {
    const r = byId.get(req.id);
    if (!r) return undefined;
    const { step_states, started, ...saga } = r;
    const states = new Map(
      Object.entries(step_states).map(([name, [state, comp_state, attempts, compensation_attempts, uncertain]]) => [name, { state, comp_state, attempts, compensation_attempts, uncertain }]),
    );
    // The function reads with its own snapshot: whether it saw this statement's start or
    // not, the start's own RETURNING is the truth for that step.
    if (started && req.startStep) Object.assign(states.get(req.startStep)!, { state: 'running', attempts: started.attempts, uncertain: started.uncertain });
    return { ...saga, epoch: Number(r.epoch), states, started: started !== null };
  });
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

/**
 * How one write changes the step it is about. Each is guarded by the state it expects.
 * `w` is the write's row (its result, error and uncertain flag).
 */
const STEP_CHANGES = {
  start: {
    set: `state = 'running', attempts = t.attempts + 1, uncertain = t.uncertain OR t.state = 'running', started_at = now()`,
    guard: `t.state IN ('pending', 'running')`,
  },
  completed: { set: `state = 'completed', result = w.result::jsonb, completed_at = clock_timestamp(), last_error = NULL`, guard: `t.state = 'running'` },
  /** From pending, or from a start the claim made before the condition was looked at. */
  skipped: { set: `state = 'skipped', completed_at = clock_timestamp(), attempts = t.attempts - (t.state = 'running')::int`, guard: `t.state IN ('pending', 'running')` },
  retry: { set: `state = 'pending', last_error = w.error, uncertain = t.uncertain OR w.uncertain`, guard: `t.state = 'running'` },
  /** A start the circuit breaker refused after all: the attempt never ran. */
  unstart: { set: `state = 'pending', attempts = t.attempts - 1`, guard: `t.state = 'running'` },
  failed: { set: `state = 'failed', last_error = w.error, uncertain = t.uncertain OR w.uncertain, completed_at = now()`, guard: `t.state = 'running'` },
  cancelled: { set: `state = 'cancelled'`, guard: `t.state = 'pending'` },
  comp_start: {
    // An action still marked running was abandoned by a dead worker: it may have acted.
    set: `comp_state = 'running', compensation_attempts = t.compensation_attempts + 1,
          uncertain = t.uncertain OR t.state = 'running', state = CASE WHEN t.state = 'running' THEN 'failed' ELSE t.state END`,
    guard: `t.comp_state IS DISTINCT FROM 'compensated'`,
  },
  comp_done: { set: `comp_state = 'compensated', compensated_at = clock_timestamp()`, guard: `t.comp_state = 'running'` },
  comp_unstart: { set: `comp_state = NULL, compensation_attempts = t.compensation_attempts - 1`, guard: `t.comp_state = 'running'` },
  comp_retry: { set: `comp_state = NULL, last_error = w.error`, guard: `t.comp_state = 'running'` },
  comp_failed: { set: `comp_state = 'failed', last_error = w.error`, guard: `t.comp_state = 'running'` },
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

export interface WriteResult {
  cancelRequested: boolean;
  durationSeconds: number | null;
  started: { attempts: number; uncertain: boolean } | null;
}

/** Writes that can share one statement: the same step change, next-step start, owner and lease. */
export function writeShape(w: Write): string {
  return `${w.step?.change ?? 'none'}|${w.startNext !== undefined}|${cancelsPending(w)}|${w.owner}|${w.leaseMs}`;
}

/** A saga that ends compensated or failed has its never-started steps marked cancelled. */
function cancelsPending(w: Write): boolean {
  return w.saga.status === 'compensated' || w.saga.status === 'failed';
}

const statementCache = new Map<string, string>();

function statement(change: StepChange | 'none', next: boolean, cancel: boolean): string {
  const key = `${change}${next ? '+next' : ''}${cancel ? '+cancel' : ''}`;
  let text = statementCache.get(key);
  if (text) return text;
  const step =
    change === 'none'
      ? ''
      : `st AS (UPDATE saga_steps t SET ${STEP_CHANGES[change].set} FROM w
                 WHERE t.saga_id = ANY($1::uuid[]) AND t.saga_id = w.id AND t.step_name = w.step AND w.id IN (SELECT id FROM f)
                   AND ${STEP_CHANGES[change].guard} RETURNING t.saga_id),`;
  // f locks the saga rows first (in id order: two batches never wait on each other in a
  // circle) and re-checks each epoch on the row's newest version, so the step change and
  // the saga change below happen only for the current lease holder.
  text = `WITH w AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::boolean[], $7::text[],
                                      $8::text[], $9::text[], $10::text[], $11::text[], $12::boolean[], $15::text[])
                       AS w(id, epoch, step, result, error, uncertain, status, current_step, failed_step, last_error, attention, release, next)),
          f AS (SELECT g.id FROM sagas g, w WHERE g.id = ANY($1::uuid[]) AND g.id = w.id AND g.epoch = w.epoch AND g.owner = $14 ORDER BY g.id FOR UPDATE OF g),
          ${step}
          s AS (UPDATE sagas g SET
                  results = ${change === 'completed' ? 'g.results || jsonb_build_object(w.step, w.result::jsonb)' : 'g.results'},
                  status = coalesce(w.status, g.status),
                  current_step = coalesce(w.current_step, g.current_step),
                  failed_step = coalesce(w.failed_step, g.failed_step),
                  last_error = coalesce(w.last_error, g.last_error),
                  attention = coalesce(w.attention, g.attention),
                  finished_at = CASE WHEN w.status IN ('completed', 'compensated', 'failed') THEN now() ELSE g.finished_at END,
                  owner = CASE WHEN w.release THEN NULL ELSE g.owner END,
                  lease_until = CASE WHEN w.release THEN NULL ELSE now() + $13 * interval '1 millisecond' END,
                  updated_at = now()
                FROM w WHERE g.id = ANY($1::uuid[]) AND g.id = w.id AND g.id IN (SELECT ${change === 'none' ? 'id FROM f' : 'saga_id FROM st'})
                RETURNING g.id, g.cancel_requested, (extract(epoch FROM g.finished_at - g.created_at))::float8 AS duration_s, w.next)${
            cancel
              ? `,
          c AS (UPDATE saga_steps t SET state = 'cancelled' FROM s WHERE t.saga_id = ANY($1::uuid[]) AND t.saga_id = s.id AND t.state = 'pending')`
              : ''
          }${
            // The next step's start, in the same fenced statement (only if s wrote, i.e. the epoch held).
            next
              ? `,
          nx AS (UPDATE saga_steps t SET ${STEP_CHANGES.start.set} FROM s
                  WHERE t.saga_id = ANY($1::uuid[]) AND t.saga_id = s.id AND t.step_name = s.next AND ${STEP_CHANGES.start.guard} RETURNING t.saga_id, t.attempts, t.uncertain)`
              : ''
          }
          SELECT s.id, s.cancel_requested, s.duration_s,
                 ${next ? `CASE WHEN nx.saga_id IS NULL THEN NULL ELSE jsonb_build_object('attempts', nx.attempts, 'uncertain', nx.uncertain) END` : 'NULL::jsonb'} AS started
            FROM s${next ? ' LEFT JOIN nx ON nx.saga_id = s.id' : ''}`;
  statementCache.set(key, text);
  return text;
}

/**
 * One fenced write: the step's change and the saga's change commit together, and
 * only for the lease holder of `epoch`. Throws FencedError when the epoch is stale
 * (another process took the saga over) or the step was not in the expected state.
 */
export async function writeSaga(db: Queryable, w: Write): Promise<WriteResult> {
  const [r] = await writeSagas(db, [w]);
  if (r instanceof Error) throw r;
  return r!;
}

/**
 * writeSaga for several sagas in one statement: one round trip and one commit. The writes
 * must share their `writeShape` and name different sagas. Each result is in the order of
 * `ws`: a WriteResult, or a FencedError for a write that was refused (the others still apply).
 */
export async function writeSagas(db: Queryable, ws: readonly Write[]): Promise<Array<WriteResult | FencedError>> {
  const first = ws[0]!;
  const change = first.step?.change ?? 'none';
  const next = first.startNext !== undefined;
  const col = <T>(f: (w: Write) => T) => ws.map(f);
  const values: unknown[] = [
    col((w) => w.sagaId),
    col((w) => w.epoch),
    col((w) => w.step?.name ?? null),
    col((w) => (w.step?.result === undefined ? null : JSON.stringify(w.step.result))),
    col((w) => w.step?.error ?? null),
    col((w) => w.step?.uncertain ?? false),
    col((w) => w.saga.status ?? null),
    col((w) => w.saga.currentStep ?? null),
    col((w) => w.saga.failedStep ?? null),
    col((w) => w.saga.lastError ?? null),
    col((w) => w.saga.attention ?? null),
    col((w) => w.saga.release),
    first.leaseMs,
    first.owner,
    col((w) => w.startNext ?? null),
  ];
  // Unnamed on purpose: a named statement's cached generic plan, made while the tables were
  // small (a new deployment), scans them whole on every call once they have grown; planned
  // with each call's own arrays, the lookups stay on the primary keys. Under load a batch
  // carries many sagas, so the planning is shared by them.
  const { rows } = await db.query<{ id: string; cancel_requested: boolean; duration_s: number | null; started: { attempts: number; uncertain: boolean } | null }>({
    text: statement(change, next, cancelsPending(first)),
    values,
  });
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ws.map((w) => {
    const r = byId.get(w.sagaId);
    if (!r) return new FencedError(`saga ${w.sagaId}: write at epoch ${w.epoch} refused (lease lost or step ${w.step?.name ?? '-'} not ${change}-able)`, { saga_id: w.sagaId, epoch: w.epoch, step: w.step?.name });
    return { cancelRequested: r.cancel_requested, durationSeconds: r.duration_s, started: r.started };
  });
}

/** Extends the leases this process holds; returns the ids still ours. */
export async function renewLeases(db: Queryable, owner: string, held: ReadonlyArray<{ id: string; epoch: number }>, ttlMs: number): Promise<Set<string>> {
  if (held.length === 0) return new Set();
  // Rows locked in id order, as the batched writes lock theirs: the two never deadlock.
  const { rows } = await db.query<{ id: string }>(
    `WITH l AS (SELECT s.id FROM sagas s, unnest($1::uuid[], $2::bigint[]) AS u(id, epoch)
                 WHERE s.id = ANY($1::uuid[]) AND s.id = u.id AND s.epoch = u.epoch AND s.owner = $3 ORDER BY s.id FOR UPDATE OF s)
     UPDATE sagas s SET lease_until = now() + $4 * interval '1 millisecond'
      WHERE s.id IN (SELECT id FROM l) RETURNING s.id`,
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

export interface SagaBatchers {
  claims: Batcher<ClaimRequest, Claimed | undefined>;
  writes: Batcher<Write, WriteResult>;
}

/**
 * Group commit of one process's claims and writes: those of different sagas that are due
 * at the same time share one statement, so with many sagas in flight a round trip, a
 * planning and a commit serve several. A quarter of the pool per kind of statement.
 */
export function sagaBatchers(pool: pg.Pool, owner: string, ttlMs: number, poolSize: number): SagaBatchers {
  const maxBatch = 64;
  const maxInFlight = Math.max(1, Math.floor(poolSize / 4));
  return {
    claims: new Batcher<ClaimRequest, Claimed | undefined>({
      run: (reqs) => claimSagas(pool, owner, ttlMs, reqs),
      runOne: (r) => claimSaga(pool, r.id, owner, ttlMs, r.startStep),
      shape: () => 'claim',
      key: (r) => r.id,
      maxBatch,
      maxInFlight,
    }),
    writes: new Batcher<Write, WriteResult>({ run: (ws) => writeSagas(pool, ws), runOne: (w) => writeSaga(pool, w), shape: writeShape, key: (w) => w.sagaId, maxBatch, maxInFlight }),
  };
}
