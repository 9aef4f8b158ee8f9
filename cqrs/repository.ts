import { NotFoundError } from '../runtime/errors.js';
import { streamIdOf, type AggregateClass, type AggregateRoot } from './aggregate.js';
import type { AppendOptions, EventStore } from './event-store.js';
import { EVENT_COLUMNS, rowToEvent, type EventRow } from './rows.js';
import type { AppendResult } from './types.js';

/** Aggregate types (by `aggregateType`) to their snapshot interval, overriding the class's `snapshotEvery`. */
export type SnapshotPolicy = Record<string, number>;

/** Rows read per round trip when replaying a long stream. */
const PAGE = 5_000;

/**
 * Loads and saves aggregates through an event store, with snapshots: loading
 * starts from the latest snapshot of the aggregate's current snapshot version
 * and applies the later events; saving appends the new events with the
 * aggregate's version as the expected version, and writes a snapshot in the
 * same transaction when the save crossed a multiple of the interval.
 */
export class AggregateRepository {
  constructor(
    private readonly store: EventStore,
    private readonly snapshots: SnapshotPolicy = {},
  ) {}

  snapshotEvery(type: AggregateClass<AggregateRoot>): number {
    return this.snapshots[type.aggregateType] ?? type.snapshotEvery ?? 0;
  }

  /** The aggregate, or NotFoundError when its stream has no events. */
  async load<A extends AggregateRoot>(Type: AggregateClass<A>, id: string, opts: { useSnapshot?: boolean } = {}): Promise<A> {
    const aggregate = await this.tryLoad(Type, id, opts);
    if (!aggregate) throw new NotFoundError(`${Type.aggregateType} ${id} not found`, { aggregateType: Type.aggregateType, id });
    return aggregate;
  }

  /** The aggregate, or undefined when its stream has no events. */
  async tryLoad<A extends AggregateRoot>(Type: AggregateClass<A>, id: string, opts: { useSnapshot?: boolean } = {}): Promise<A | undefined> {
    const aggregate = new Type(id);
    const streamId = streamIdOf(Type, id);
    if (opts.useSnapshot !== false) {
      const { rows } = await this.store.pool.query<{ version: string; state: unknown }>(
        'SELECT version::text AS version, state FROM concord_snapshots WHERE stream_id = $1 AND aggregate_type = $2 AND snapshot_version = $3',
        [streamId, Type.aggregateType, Type.snapshotVersion],
      );
      if (rows[0]) {
        aggregate.fromSnapshot(rows[0].state);
        aggregate.version = Number(rows[0].version);
      }
    }
    for (;;) {
      const { rows } = await this.store.pool.query<EventRow>(
        `SELECT ${EVENT_COLUMNS} FROM concord_events e WHERE stream_id = $1 AND version > $2 ORDER BY e.version LIMIT ${PAGE}`,
        [streamId, aggregate.version],
      );
      for (const r of rows) aggregate.replay(this.store.upcasters.upcast(rowToEvent(r)));
      if (rows.length < PAGE) break;
    }
    return aggregate.version === 0 ? undefined : aggregate;
  }

  /**
   * Appends the aggregate's new events, expecting its loaded version (a
   * concurrent save raises WrongExpectedVersionError). `beforeCommit` runs in the
   * same transaction, after the snapshot.
   */
  async save(aggregate: AggregateRoot, opts: Pick<AppendOptions, 'beforeCommit'> & { metadata?: Record<string, unknown> } = {}): Promise<AppendResult> {
    const Type = aggregate.constructor as AggregateClass<AggregateRoot>;
    const streamId = streamIdOf(Type, aggregate.id);
    const events = aggregate.uncommittedEvents.map((e) => ({ ...e, metadata: { aggregateType: Type.aggregateType, ...opts.metadata, ...e.metadata } }));
    if (events.length === 0) return { streamId, version: aggregate.version, events: [], idempotent: true };
    const every = this.snapshotEvery(Type);
    const from = aggregate.version;
    const to = from + events.length;
    const snapshotDue = every > 0 && Math.floor(to / every) > Math.floor(from / every);
    const result = await this.store.append(streamId, events, {
      expectedVersion: from,
      beforeCommit: async (tx, stored) => {
        if (snapshotDue && stored.length === events.length) {
          // The aggregate's state already includes its new events: it is the state at `to`.
          await tx.query(
            `INSERT INTO concord_snapshots (stream_id, aggregate_type, snapshot_version, version, state) VALUES ($1, $2, $3, $4, $5::jsonb)
             ON CONFLICT (stream_id) DO UPDATE SET aggregate_type = EXCLUDED.aggregate_type, snapshot_version = EXCLUDED.snapshot_version,
               version = EXCLUDED.version, state = EXCLUDED.state, created_at = now()
             WHERE concord_snapshots.version < EXCLUDED.version OR concord_snapshots.snapshot_version <> EXCLUDED.snapshot_version`,
            [streamId, Type.aggregateType, Type.snapshotVersion, to, JSON.stringify(aggregate.toSnapshot())],
          );
        }
        await opts.beforeCommit?.(tx, stored);
      },
    });
    aggregate.markCommitted(result.idempotent ? result.version : to);
    return result;
  }
}
