import type pg from 'pg';
import { NotFoundError, ValidationError } from '../runtime/errors.js';
import type { StoredEvent } from './types.js';

type Queryable = Pick<pg.ClientBase, 'query'>;

export type FailurePolicy = 'stop' | 'skip';

/**
 * A read model kept from events. The same object runs inline (in the append's
 * transaction, `inlineProjection`) or async (a ProjectionRunner reading the
 * global log, checkpoint committed with the read model in one transaction).
 */
export interface Projection {
  /** Lower-case letters, digits, - and _. */
  name: string;
  /** Event types applied; the others only advance the checkpoint. All when omitted. */
  eventTypes?: readonly string[];
  /** What a failing event does after its attempts: stop the projection or skip it. @defaultValue 'stop' */
  failurePolicy?: FailurePolicy;
  /** Whether `reset` can go back to a position other than 0. @defaultValue false */
  partialReset?: boolean;
  /** Creates the read model if missing (idempotent). */
  setup?(tx: pg.ClientBase): Promise<void>;
  /** Empties the read model (fromPosition 0) or takes it back to `fromPosition`. */
  reset(tx: pg.ClientBase, fromPosition: number): Promise<void>;
  apply(tx: pg.ClientBase, event: StoredEvent): Promise<void>;
  /** Faster path for a batch, same effect as `apply` on each in order. */
  applyBatch?(tx: pg.ClientBase, events: readonly StoredEvent[]): Promise<void>;
  /** Query-cache tags an event makes stale (see QueryCache). */
  cacheTags?(event: StoredEvent): string[];
}

export const PROJECTION_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

export function checkProjection(p: Projection): void {
  if (!PROJECTION_NAME.test(p.name)) throw new RangeError(`projection name ${JSON.stringify(p.name)}: lower-case letters, digits, - and _, starting with a letter`);
  if (p.failurePolicy !== undefined && !['stop', 'skip'].includes(p.failurePolicy)) throw new RangeError(`projection ${p.name}: failurePolicy must be stop or skip, got ${String(p.failurePolicy)}`);
}

export const relevant = (p: Projection, e: StoredEvent) => !p.eventTypes || p.eventTypes.includes(e.type);

export interface ProjectionStatus {
  name: string;
  status: 'running' | 'rebuilding' | 'stopped';
  failurePolicy: FailurePolicy;
  /** Last global position applied. */
  lastPosition: number;
  /** Highest position in the log. */
  head: number;
  /** Events between the two (rolled-back positions count too: an upper bound). */
  lag: number;
  eventsApplied: number;
  deadLetters: number;
  rebuild: { requestedFrom: number | null; target: number | null; startedAt: Date | null };
  lastError: string | null;
  updatedAt: Date;
}

/** Status and lag of every projection a runner has registered (any process). */
export async function projectionStatuses(db: Queryable): Promise<ProjectionStatus[]> {
  const { rows } = await db.query<{
    name: string; status: ProjectionStatus['status']; failure_policy: FailurePolicy; checkpoint: string; head: string; events_applied: string; dead: string;
    rebuild_requested_from: string | null; rebuild_target: string | null; rebuild_started_at: Date | null; last_error: string | null; updated_at: Date;
  }>(
    `SELECT p.name, p.status, p.failure_policy, p.checkpoint::text AS checkpoint, h.head::text AS head, p.events_applied::text AS events_applied,
            (SELECT count(*) FROM concord_projection_dead_letters d WHERE d.projection = p.name)::text AS dead,
            p.rebuild_requested_from::text AS rebuild_requested_from, p.rebuild_target::text AS rebuild_target, p.rebuild_started_at, p.last_error, p.updated_at
       FROM concord_projections p, (SELECT coalesce(max(position), 0) AS head FROM concord_events) h
      ORDER BY p.name`,
  );
  return rows.map((r) => ({
    name: r.name,
    status: r.status,
    failurePolicy: r.failure_policy,
    lastPosition: Number(r.checkpoint),
    head: Number(r.head),
    lag: Math.max(0, Number(r.head) - Number(r.checkpoint)),
    eventsApplied: Number(r.events_applied),
    deadLetters: Number(r.dead),
    rebuild: { requestedFrom: r.rebuild_requested_from === null ? null : Number(r.rebuild_requested_from), target: r.rebuild_target === null ? null : Number(r.rebuild_target), startedAt: r.rebuild_started_at },
    lastError: r.last_error,
    updatedAt: r.updated_at,
  }));
}

/**
 * Asks for a rebuild: the projection's runner (in whichever process holds it)
 * resets the read model and replays from `fromPosition`. Recorded in
 * PostgreSQL, so a request survives restarts and the rebuild itself is
 * resumable (see ProjectionRunner).
 */
export async function requestRebuild(db: Queryable, name: string, opts: { fromPosition?: number } = {}): Promise<{ name: string; fromPosition: number }> {
  const from = opts.fromPosition ?? 0;
  if (!Number.isSafeInteger(from) || from < 0) throw new ValidationError('invalid fromPosition', [{ field: 'fromPosition', reason: 'an integer >= 0' }]);
  const { rows } = await db.query<{ partial_reset: boolean }>(
    `UPDATE concord_projections SET rebuild_requested_from = $2, updated_at = now() WHERE name = $1 AND (partial_reset OR $2 = 0) RETURNING partial_reset`,
    [name, from],
  );
  if (rows.length === 0) {
    const exists = (await db.query('SELECT 1 FROM concord_projections WHERE name = $1', [name])).rowCount;
    if (!exists) throw new NotFoundError(`no projection ${name}`, { name });
    throw new ValidationError(`projection ${name} can only be rebuilt from position 0`, [{ field: 'fromPosition', reason: 'this projection resets its whole read model: use 0' }]);
  }
  return { name, fromPosition: from };
}

/** Takes a stopped projection back to running: the failing event is tried again. */
export async function resumeProjection(db: Queryable, name: string): Promise<void> {
  const { rowCount } = await db.query(`UPDATE concord_projections SET status = 'running', last_error = NULL, updated_at = now() WHERE name = $1 AND status = 'stopped'`, [name]);
  if (!rowCount) throw new NotFoundError(`no stopped projection ${name}`, { name });
}

export interface ProjectionDeadLetter {
  position: number;
  eventId: string;
  streamId: string;
  eventType: string;
  reason: string;
  attempts: number;
  createdAt: Date;
}

export async function projectionDeadLetters(db: Queryable, name: string, limit = 100): Promise<ProjectionDeadLetter[]> {
  const { rows } = await db.query<{ position: string; event_id: string; stream_id: string; event_type: string; reason: string; attempts: number; created_at: Date }>(
    `SELECT position::text AS position, event_id, stream_id, event_type, reason, attempts, created_at FROM concord_projection_dead_letters d WHERE projection = $1 ORDER BY d.position LIMIT $2`,
    [name, limit],
  );
  return rows.map((r) => ({ position: Number(r.position), eventId: r.event_id, streamId: r.stream_id, eventType: r.event_type, reason: r.reason, attempts: r.attempts, createdAt: r.created_at }));
}
