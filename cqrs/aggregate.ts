import type { NewEvent, StoredEvent } from './types.js';

/** The part of an event an aggregate's `when` sees: new (not yet stored) and stored events alike. */
export interface DomainEvent<T = unknown> {
  type: string;
  data: T;
}

/**
 * An aggregate: state rebuilt from its events. Subclasses define `aggregateType`,
 * `initialState()` and `when(state, event)` (pure: the next state), and raise
 * events from their methods with `applyEvent`, which applies them at once and
 * keeps them as uncommitted until `saveAggregate` stores them.
 *
 * Snapshots store `state` as JSON; an aggregate whose state is not plain JSON
 * overrides `toSnapshot` / `fromSnapshot`. Bump `snapshotVersion` when the
 * state's shape changes: older snapshots are then ignored and rebuilt.
 */
export abstract class AggregateRoot<S = unknown> {
  /** Stream ids are `<aggregateType>-<id>`. */
  static readonly aggregateType: string;
  /** Snapshot after every N events; 0 = never. Overridden per store by `snapshotEvery`. @defaultValue 0 */
  static readonly snapshotEvery: number = 0;
  /** @defaultValue 1 */
  static readonly snapshotVersion: number = 1;

  state: S;
  /** The version stored: the number of committed events. */
  version = 0;
  private pending: NewEvent[] = [];

  constructor(readonly id: string) {
    this.state = this.initialState();
  }

  protected abstract initialState(): S;
  protected abstract when(state: S, event: DomainEvent): S;

  /** Raises an event: applies it now and keeps it for the next save. */
  protected applyEvent(type: string, data: unknown, opts: { id?: string; schemaVersion?: number; metadata?: Record<string, unknown> } = {}): void {
    this.state = this.when(this.state, { type, data });
    this.pending.push({ type, data, ...opts });
  }

  get uncommittedEvents(): readonly NewEvent[] {
    return this.pending;
  }

  /** The version the stream should be at when this aggregate's new events are appended. */
  get expectedVersion(): number {
    return this.version;
  }

  toSnapshot(): unknown {
    return this.state;
  }

  fromSnapshot(state: unknown): void {
    this.state = state as S;
  }

  /** @internal used when loading: applies a stored event without recording it. */
  replay(event: StoredEvent): void {
    this.state = this.when(this.state, event);
    this.version = event.version;
  }

  /** @internal used after a save: the pending events are now stored. */
  markCommitted(version: number): void {
    this.pending = [];
    this.version = version;
  }
}

export type AggregateClass<A extends AggregateRoot> = (new (id: string) => A) & {
  aggregateType: string;
  snapshotEvery: number;
  snapshotVersion: number;
};

export function streamIdOf(type: { aggregateType: string }, id: string): string {
  return `${type.aggregateType}-${id}`;
}
