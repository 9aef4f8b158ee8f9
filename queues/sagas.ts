import { createHash, randomUUID } from 'node:crypto';
import type { JobsOptions, Queue } from 'bullmq';
import type pg from 'pg';
import { z } from 'zod';
import { ConflictError, NotFoundError } from '../runtime/errors.js';
import { defineQueue } from './definition.js';
import { sagaStages, type SagaStep } from './saga-definition.js';

export * from './saga-definition.js';
export { compileCondition, ConditionError, type CompiledCondition } from './saga-condition.js';

export const SAGA_STATUSES = ['pending', 'running', 'compensating', 'completed', 'compensated', 'failed'] as const;
export type SagaStatus = (typeof SAGA_STATUSES)[number];
export const ACTIVE_SAGA_STATUSES: readonly SagaStatus[] = ['pending', 'running', 'compensating'];

/**
 * Each saga step is one job: run a step's action, run its compensation, or `resume`
 * (look at the saga and enqueue whatever it needs next, after a crash, a cancel or an
 * operator retry). The job carries ids only; PostgreSQL holds the saga.
 */
export const sagaStepQueue = defineQueue({
  name: 'saga.step',
  description: 'saga steps: one job per step action (or chain of single steps) or compensation, plus resume wake-ups',
  schema: z.object({
    saga_id: z.uuid(),
    kind: z.enum(['action', 'compensation', 'resume']),
    step: z.string().min(1).max(100).optional(),
  }),
  // Step retries are counted in PostgreSQL and delayed by the coordinator itself; these
  // attempts only cover unexpected failures (PostgreSQL down). Completed jobs are removed
  // so a recovery may enqueue the same step id again.
  jobOptions: { attempts: 10, backoff: { type: 'exponential', delay: 500, jitter: 0.5 }, removeOnComplete: true },
});
export type SagaStepJob = z.infer<typeof sagaStepQueue.schema>;

/** The job id of one piece of work: the same step of the same run is enqueued once. */
export function stepJobId(sagaId: string, kind: 'action' | 'compensation', gen: number, step: string): string {
  return `saga.${sagaId}.${kind === 'action' ? 'a' : 'c'}.${gen}.${step}`;
}

export async function enqueueSagaSteps(queue: Queue, sagaId: string, kind: 'action' | 'compensation', gen: number, steps: readonly string[], opts: JobsOptions = {}): Promise<void> {
  if (steps.length === 0) return;
  await queue.addBulk(steps.map((step) => ({ name: kind, data: { saga_id: sagaId, kind, step }, opts: { ...opts, jobId: stepJobId(sagaId, kind, gen, step) } })));
}

export async function enqueueSagaResume(queue: Queue, sagaId: string, tag: string, opts: JobsOptions = {}): Promise<void> {
  await queue.add('resume', { saga_id: sagaId, kind: 'resume' }, { ...opts, jobId: `saga.${sagaId}.resume.${tag}` });
}

export interface NewSaga {
  sagaType: string;
  orchestrator: string;
  version: string;
  steps: SagaStep[];
  context: Record<string, unknown>;
  idempotencyKey?: string | undefined;
}

/**
 * Records a saga and its steps in one statement. With an idempotency key, a repeat
 * returns the first saga (`created: false`); the same key with another request is a
 * ConflictError. The caller then enqueues the first stage.
 */
export async function insertSaga(db: pg.Pool, s: NewSaga): Promise<{ id: string; created: boolean }> {
  const [r] = await insertSagas(db, [s]);
  if (r instanceof Error) throw r;
  return r!;
}

/**
 * insertSaga for several sagas in one statement (one round trip, one commit). Results are
 * in the order of `ss`: the saga, or a ConflictError for that saga alone. Sagas of one
 * call may share an idempotency key: the first is created, the others are its replays.
 */
export async function insertSagas(db: pg.Pool, ss: readonly NewSaga[]): Promise<Array<{ id: string; created: boolean } | ConflictError>> {
  const hashes = ss.map((s) => (s.idempotencyKey ? createHash('sha256').update(JSON.stringify([s.sagaType, s.version, s.steps, s.context])).digest('hex') : null));
  const ids = ss.map(() => randomUUID());
  const steps = ss.flatMap((s, i) => s.steps.map((x, pos) => [ids[i]!, x.step_name, pos + 1] as const));
  // Steps serialised once per distinct definition object (a batch of one type shares it).
  const stepsJson = new Map<SagaStep[], string>();
  const { rows } = await db.query<{ id: string }>({
    name: 'concord-saga-insert-batch',
    text: `WITH s AS (
             INSERT INTO sagas (id, saga_type, orchestrator, definition_version, steps, context, idempotency_key, request_hash)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::text[], $8::text[])
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id),
           st AS (
             INSERT INTO saga_steps (saga_id, step_name, position)
             SELECT u.id, u.name, u.pos FROM unnest($9::uuid[], $10::text[], $11::int[]) AS u(id, name, pos) WHERE u.id IN (SELECT id FROM s))
           SELECT id FROM s`,
    values: [
      ids,
      ss.map((s) => s.sagaType),
      ss.map((s) => s.orchestrator),
      ss.map((s) => s.version),
      ss.map((s) => stepsJson.get(s.steps) ?? stepsJson.set(s.steps, JSON.stringify(s.steps)).get(s.steps)!),
      ss.map((s) => JSON.stringify(s.context)),
      ss.map((s) => s.idempotencyKey ?? null),
      hashes,
      steps.map((x) => x[0]),
      steps.map((x) => x[1]),
      steps.map((x) => x[2]),
    ],
  });
  const created = new Set(rows.map((r) => r.id));
  const replayKeys = ss.filter((s, i) => !created.has(ids[i]!)).map((s) => s.idempotencyKey!);
  const firsts =
    replayKeys.length === 0
      ? new Map<string, { id: string; request_hash: string }>()
      : new Map(
          (await db.query<{ id: string; key: string; request_hash: string }>('SELECT id, idempotency_key AS key, request_hash FROM sagas WHERE idempotency_key = ANY($1::text[])', [replayKeys])).rows.map((r) => [r.key, r]),
        );
  return ss.map((s, i) => {
    if (created.has(ids[i]!)) return { id: ids[i]!, created: true };
    const first = firsts.get(s.idempotencyKey!);
    if (!first) return new ConflictError('idempotency key is being used by a saga that is not visible yet; retry', { field: 'idempotency_key' });
    if (first.request_hash !== hashes[i]) return new ConflictError('idempotency key was already used for a different saga request', { field: 'idempotency_key', saga_id: first.id });
    return { id: first.id, created: false };
  });
}

/** Records a saga, then enqueues its first stage. Returns its id. */
export async function startSagaRecord(db: pg.Pool, queue: Queue, s: NewSaga): Promise<{ id: string; created: boolean }> {
  const [r] = await startSagaRecords(db, queue, [s]);
  if (r instanceof Error) throw r;
  return r!;
}

/**
 * startSagaRecord for several sagas: one INSERT, then one queue round trip for the first
 * stages of those created. A replay re-enqueues nothing: the first request did, and
 * recovery covers a crash in between.
 */
export async function startSagaRecords(db: pg.Pool, queue: Queue, ss: readonly NewSaga[]): Promise<Array<{ id: string; created: boolean } | ConflictError>> {
  const rs = await insertSagas(db, ss);
  const jobs = rs.flatMap((r, i) =>
    r instanceof Error || !r.created ? [] : sagaStages(ss[i]!.steps)[0]!.map((step) => ({ name: 'action', data: { saga_id: r.id, kind: 'action' as const, step }, opts: { jobId: stepJobId(r.id, 'action', 0, step) } })),
  );
  if (jobs.length > 0) await queue.addBulk(jobs);
  return rs;
}

export interface SagaStepStatus {
  step_name: string;
  service_name: string;
  action: string;
  compensation_action: string | null;
  parallel_group: string | null;
  condition: string | null;
  state: string;
  compensation_state: string | null;
  attempts: number;
  compensation_attempts: number;
  uncertain: boolean;
  result: unknown;
  last_error: string | null;
  started_at: string | null;
  completed_at: string | null;
  compensated_at: string | null;
}

export interface SagaStatusView {
  saga_id: string;
  saga_type: string;
  orchestrator: string;
  definition_version: string;
  status: SagaStatus;
  current_step: string | null;
  failed_step: string | null;
  failed_attempts: number;
  last_error: string | null;
  attention: string | null;
  cancel_requested: boolean;
  context: Record<string, unknown>;
  results: Record<string, unknown>;
  created_at: string;
  started_at: string | null;
  updated_at: string;
  finished_at: string | null;
  duration_ms: number | null;
  steps: SagaStepStatus[];
}

const SUMMARY = `id AS saga_id, saga_type, orchestrator, definition_version, status, current_step, failed_step, last_error, attention,
  cancel_requested, created_at, started_at, updated_at, finished_at,
  (extract(epoch FROM (finished_at - created_at)) * 1000)::float8 AS duration_ms`;

interface StepRow {
  step_name: string;
  state: string;
  comp_state: string | null;
  attempts: number;
  compensation_attempts: number;
  uncertain: boolean;
  result: unknown;
  last_error: string | null;
  started_at: string | null;
  completed_at: string | null;
  compensated_at: string | null;
}

export async function getSagaStatus(db: pg.Pool, id: string): Promise<SagaStatusView> {
  const [saga, steps] = await Promise.all([
    db.query<Omit<SagaStatusView, 'steps' | 'failed_attempts'> & { steps_def: SagaStep[] }>(`SELECT ${SUMMARY}, context, results, steps AS steps_def FROM sagas WHERE id = $1`, [id]),
    db.query<StepRow>(
      `SELECT step_name, state, comp_state, attempts, compensation_attempts, uncertain, result, last_error, started_at, completed_at, compensated_at
         FROM saga_steps WHERE saga_id = $1 ORDER BY position`,
      [id],
    ),
  ]);
  const row = saga.rows[0];
  if (!row) throw new NotFoundError(`no saga ${id}`, { saga_id: id });
  const byName = new Map(steps.rows.map((r) => [r.step_name, r]));
  const { steps_def, ...rest } = row;
  let failedAttempts = 0;
  const stepViews = steps_def.map((d): SagaStepStatus => {
    const r = byName.get(d.step_name)!;
    failedAttempts += Math.max(0, r.attempts - (r.state === 'completed' ? 1 : 0)) + Math.max(0, r.compensation_attempts - (r.comp_state === 'compensated' ? 1 : 0));
    return {
      step_name: d.step_name,
      service_name: d.service_name,
      action: d.action,
      compensation_action: d.compensation_action ?? null,
      parallel_group: d.parallel_group ?? null,
      condition: d.condition ?? null,
      state: r.state,
      compensation_state: r.comp_state,
      attempts: r.attempts,
      compensation_attempts: r.compensation_attempts,
      uncertain: r.uncertain,
      result: r.result,
      last_error: r.last_error,
      started_at: r.started_at,
      completed_at: r.completed_at,
      compensated_at: r.compensated_at,
    };
  });
  return { ...rest, failed_attempts: failedAttempts, steps: stepViews };
}

export interface SagaFilter {
  status?: SagaStatus | undefined;
  type?: string | undefined;
  /** Only sagas an operator must look at (failed compensation, version mismatch). */
  attention?: boolean | undefined;
  limit: number;
  offset: number;
}

/** Newest first, with the total count of the filter. */
export async function listSagas(db: pg.Pool, f: SagaFilter): Promise<{ total: number; sagas: Array<Omit<SagaStatusView, 'steps' | 'context' | 'results' | 'failed_attempts'>> }> {
  const where = `($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR saga_type = $2) AND ($3::boolean IS NULL OR (attention IS NOT NULL) = $3)`;
  const args = [f.status ?? null, f.type ?? null, f.attention ?? null];
  const [total, sagas] = await Promise.all([
    db.query<{ n: string }>(`SELECT count(*) AS n FROM sagas WHERE ${where}`, args),
    db.query(`SELECT ${SUMMARY} FROM sagas WHERE ${where} ORDER BY created_at DESC, id LIMIT $4 OFFSET $5`, [...args, f.limit, f.offset]),
  ]);
  return { total: Number(total.rows[0]!.n), sagas: sagas.rows as never };
}

/**
 * Asks for a saga to be cancelled: its owner compensates what completed at its next
 * decision, or a resume job does it. A saga already compensating is accepted again.
 */
export async function requestSagaCancel(db: pg.Pool, queue: Queue, id: string): Promise<{ status: SagaStatus }> {
  const { rows } = await db.query<{ status: SagaStatus }>(
    `UPDATE sagas SET cancel_requested = true, updated_at = now() WHERE id = $1 AND status IN ('pending', 'running', 'compensating') RETURNING status`,
    [id],
  );
  if (!rows[0]) {
    const found = await db.query<{ status: SagaStatus }>('SELECT status FROM sagas WHERE id = $1', [id]);
    if (!found.rows[0]) throw new NotFoundError(`no saga ${id}`, { saga_id: id });
    throw new ConflictError(`saga ${id} is ${found.rows[0].status}; only a pending or running saga can be cancelled`, { saga_id: id, status: found.rows[0].status });
  }
  await enqueueSagaResume(queue, id, `cancel`);
  return rows[0];
}

/**
 * An operator retry: a `failed` saga goes back to compensating with its failed
 * compensations' attempts reset; a saga flagged for attention (version mismatch) is
 * resumed. New job ids (gen + 1) so nothing of the earlier run is mistaken for it.
 */
export async function retrySaga(db: pg.Pool, queue: Queue, id: string): Promise<{ status: SagaStatus; gen: number }> {
  const { rows } = await db.query<{ status: SagaStatus; gen: number }>(
    `WITH s AS (
       UPDATE sagas SET status = CASE WHEN status = 'failed' THEN 'compensating' ELSE status END,
                        attention = NULL, gen = gen + 1, finished_at = NULL, updated_at = now()
        WHERE id = $1 AND (status = 'failed' OR attention IS NOT NULL) RETURNING id, status, gen),
     st AS (UPDATE saga_steps t SET comp_state = NULL, compensation_attempts = 0, last_error = NULL FROM s WHERE t.saga_id = s.id AND t.comp_state = 'failed')
     SELECT status, gen FROM s`,
    [id],
  );
  if (!rows[0]) {
    const found = await db.query<{ status: SagaStatus }>('SELECT status FROM sagas WHERE id = $1', [id]);
    if (!found.rows[0]) throw new NotFoundError(`no saga ${id}`, { saga_id: id });
    throw new ConflictError(`saga ${id} is ${found.rows[0].status}; only a failed saga (or one flagged for attention) can be retried`, { saga_id: id, status: found.rows[0].status });
  }
  await enqueueSagaResume(queue, id, `retry-${rows[0].gen}`);
  return rows[0];
}

/** A registered saga type, as defineSaga stored it. */
export async function getSagaDefinition(db: pg.Pool, sagaType: string): Promise<{ version: string; steps: SagaStep[] } | undefined> {
  return (await db.query<{ version: string; steps: SagaStep[] }>('SELECT version, steps FROM saga_definitions WHERE saga_type = $1', [sagaType])).rows[0];
}

export async function putSagaDefinition(db: pg.Pool, sagaType: string, version: string, steps: SagaStep[]): Promise<void> {
  await db.query(
    `INSERT INTO saga_definitions (saga_type, version, steps) VALUES ($1, $2, $3::jsonb)
     ON CONFLICT (saga_type) DO UPDATE SET version = excluded.version, steps = excluded.steps, updated_at = now()`,
    [sagaType, version, JSON.stringify(steps)],
  );
}
