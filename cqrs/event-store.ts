import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import { ValidationError } from '../runtime/errors.js';
import { zodIssues } from '../runtime/validation.js';
import { EventIdConflictError, WrongExpectedVersionError } from './errors.js';
import { Upcasters } from './upcasters.js';
import type { AppendResult, ExpectedVersion, NewEvent, StoredEvent } from './types.js';
import { EVENT_COLUMNS, rowToEvent, type EventRow } from './rows.js';
import { AggregateRepository, type SnapshotPolicy } from './repository.js';
import type { AggregateClass, AggregateRoot } from './aggregate.js';

/** Runs inside the append's transaction, after the events are inserted: outbox rows, inline projections. */
export type BeforeCommit = (tx: pg.ClientBase, events: readonly StoredEvent[]) => Promise<void>;
/** Runs after the append committed (cache invalidation); a failure is reported, the events stay. */
export type AfterCommit = (events: readonly StoredEvent[]) => Promise<void>;

export interface AppendOptions {
  /** @defaultValue 'any' */
  expectedVersion?: ExpectedVersion;
  /** Extra work in the same transaction; throwing rolls the events back too. */
  beforeCommit?: BeforeCommit;
}

const streamIdSchema = z.string().min(1).max(500);
const newEventSchema = z.object({
  id: z.uuid().optional(),
  type: z.string().min(1).max(200),
  schemaVersion: z.number().int().min(1).max(10_000).default(1),
  data: z.unknown().refine((v) => v !== undefined, 'required'),
  metadata: z.record(z.string(), z.unknown()).default({}),
});
const expectedSchema = z.union([z.number().int().min(0), z.enum(['no_stream', 'stream_exists', 'any'])]);

function matches(expected: ExpectedVersion, actual: number): boolean {
  if (expected === 'any') return true;
  if (expected === 'no_stream') return actual === 0;
  if (expected === 'stream_exists') return actual > 0;
  return expected === actual;
}

/**
 * Streams of events in PostgreSQL (migration 0005_event_store): a per-stream
 * version for optimistic concurrency and a global position for readers of the
 * whole log. Reads return events upcast to their current schema version.
 */
export class EventStore {
  readonly upcasters: Upcasters;
  private readonly beforeCommitHooks: BeforeCommit[] = [];
  private readonly afterCommitHooks: AfterCommit[] = [];

  constructor(
    readonly pool: pg.Pool,
    opts: {
      upcasters?: Upcasters;
      /** Snapshot interval per aggregate type, over the classes' `snapshotEvery`. */
      snapshots?: SnapshotPolicy;
      /** Told when an after-commit hook (cache invalidation) fails; the events are stored regardless. */
      onAfterCommitError?: (err: unknown) => void;
    } = {},
  ) {
    this.upcasters = opts.upcasters ?? new Upcasters();
    this.onAfterCommitError = opts.onAfterCommitError ?? (() => undefined);
    this.aggregates = new AggregateRepository(this, opts.snapshots);
  }
  private readonly onAfterCommitError: (err: unknown) => void;
  readonly aggregates: AggregateRepository;

  /** The aggregate from its latest snapshot and later events; NotFoundError when it has none. */
  loadAggregate<A extends AggregateRoot>(Type: AggregateClass<A>, id: string, opts?: { useSnapshot?: boolean }): Promise<A> {
    return this.aggregates.load(Type, id, opts);
  }

  /** Appends the aggregate's uncommitted events, expecting the version it was loaded at. */
  saveAggregate(aggregate: AggregateRoot, opts?: Parameters<AggregateRepository['save']>[1]): Promise<AppendResult> {
    return this.aggregates.save(aggregate, opts);
  }

  /** Work for every append's transaction (inline projections, outbox); runs in registration order. */
  beforeCommit(hook: BeforeCommit): this {
    this.beforeCommitHooks.push(hook);
    return this;
  }

  afterCommit(hook: AfterCommit): this {
    this.afterCommitHooks.push(hook);
    return this;
  }

  /**
   * Appends events to a stream in one transaction. The stream's row is locked
   * first (which also gives the transaction its id before any position is
   * drawn: the log reader's fence relies on it). Events whose id this stream
   * already holds are left out; if all are, nothing is written and the result
   * says `idempotent`, whatever the expected version (a retried append).
   */
  async append(streamId: string, events: readonly NewEvent[], opts: AppendOptions = {}): Promise<AppendResult> {
    const sid = streamIdSchema.safeParse(streamId);
    if (!sid.success) throw new ValidationError('invalid stream id', zodIssues(sid.error, 'streamId'));
    const expected = expectedSchema.safeParse(opts.expectedVersion ?? 'any');
    if (!expected.success) throw new ValidationError('invalid expected version', zodIssues(expected.error, 'expectedVersion'));
    if (events.length === 0) throw new ValidationError('nothing to append', [{ field: 'events', reason: 'at least one event' }]);
    const parsed = events.map((e, i) => {
      const r = newEventSchema.safeParse(e);
      if (!r.success) throw new ValidationError(`event ${i} is invalid`, zodIssues(r.error, `events.${i}`));
      return { ...r.data, id: r.data.id ?? randomUUID(), explicitId: r.data.id !== undefined };
    });
    if (new Set(parsed.map((e) => e.id)).size !== parsed.length) throw new ValidationError('duplicate event ids in one append', [{ field: 'events', reason: 'event ids must be distinct' }]);

    const client = await this.pool.connect();
    let appended: StoredEvent[];
    let version: number;
    try {
      await client.query('BEGIN');
      try {
        // The upsert locks the stream row: appenders of one stream queue here.
        const current = Number(
          (
            await client.query<{ version: string }>(
              `INSERT INTO concord_streams AS s (stream_id) VALUES ($1)
               ON CONFLICT (stream_id) DO UPDATE SET updated_at = now() RETURNING s.version::text AS version`,
              [streamId],
            )
          ).rows[0]!.version,
        );
        let fresh = parsed;
        if (parsed.some((e) => e.explicitId)) {
          const stored = (await client.query<{ event_id: string; stream_id: string }>('SELECT event_id, stream_id FROM concord_events WHERE event_id = ANY($1::uuid[])', [parsed.map((e) => e.id)])).rows;
          const elsewhere = stored.filter((s) => s.stream_id !== streamId);
          if (elsewhere.length > 0) throw new EventIdConflictError(`event id ${elsewhere[0]!.event_id} is stored in stream ${elsewhere[0]!.stream_id}`, { eventIds: elsewhere.map((s) => s.event_id) });
          const known = new Set(stored.map((s) => s.event_id));
          fresh = parsed.filter((e) => !known.has(e.id));
        }
        if (fresh.length === 0) {
          await client.query('ROLLBACK');
          return { streamId, version: current, events: [], idempotent: true };
        }
        if (!matches(expected.data, current)) throw new WrongExpectedVersionError(streamId, expected.data, current);
        version = current + fresh.length;
        // Only what the database assigned comes back: the rest is what we sent.
        const dataJson = fresh.map((e) => JSON.stringify(e.data));
        const metaJson = fresh.map((e) => JSON.stringify(e.metadata));
        const { rows } = await client.query<{ position: string; created_at: Date }>(
          `WITH ins AS (
             INSERT INTO concord_events (stream_id, version, event_id, event_type, schema_version, data, metadata)
             SELECT $1, $2::bigint + u.n, u.id, u.type, u.sv, u.data::jsonb, u.meta::jsonb
               FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[]) WITH ORDINALITY AS u(id, type, sv, data, meta, n)
              ORDER BY u.n
             RETURNING position, version, created_at
           ), upd AS (UPDATE concord_streams SET version = $2::bigint + $8::bigint WHERE stream_id = $1)
           SELECT position::text AS position, created_at FROM ins ORDER BY version`,
          [
            streamId,
            current,
            fresh.map((e) => e.id),
            fresh.map((e) => e.type),
            fresh.map((e) => e.schemaVersion),
            dataJson,
            metaJson,
            fresh.length,
          ],
        );
        appended = fresh.map((e, i) => ({
          id: e.id,
          streamId,
          version: current + i + 1,
          position: Number(rows[i]!.position),
          type: e.type,
          schemaVersion: e.schemaVersion,
          // As a reader will see them (JSON), not the caller's objects.
          data: JSON.parse(dataJson[i]!) as unknown,
          metadata: JSON.parse(metaJson[i]!) as Record<string, unknown>,
          time: rows[i]!.created_at,
        }));
        await opts.beforeCommit?.(client, appended);
        for (const hook of this.beforeCommitHooks) await hook(client, appended);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        if ((err as { code?: string; constraint?: string }).code === '23505' && (err as { constraint?: string }).constraint === 'concord_events_event_id') {
          throw new EventIdConflictError('an event id of this append was stored concurrently in another stream', { streamId });
        }
        throw err;
      }
    } finally {
      client.release();
    }
    for (const hook of this.afterCommitHooks) await hook(appended).catch(this.onAfterCommitError);
    return { streamId, version, events: appended, idempotent: false };
  }

  /** The stream's events from `fromVersion` (1 = the first), upcast. */
  async readStream(streamId: string, opts: { fromVersion?: number; limit?: number } = {}): Promise<StoredEvent[]> {
    const { rows } = await this.pool.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM concord_events e WHERE stream_id = $1 AND version >= $2 ORDER BY e.version LIMIT $3`,
      [streamId, opts.fromVersion ?? 1, opts.limit ?? null],
    );
    return rows.map((r) => this.upcasters.upcast(rowToEvent(r)));
  }

  /** The stream's current version; 0 when it has no events. */
  async streamVersion(streamId: string): Promise<number> {
    const { rows } = await this.pool.query<{ version: string }>('SELECT version::text AS version FROM concord_streams WHERE stream_id = $1', [streamId]);
    return rows[0] ? Number(rows[0].version) : 0;
  }

  /** The highest position written (committed or not yet); 0 for an empty log. */
  async head(): Promise<number> {
    const { rows } = await this.pool.query<{ head: string | null }>('SELECT max(position)::text AS head FROM concord_events');
    return Number(rows[0]!.head ?? 0);
  }
}
