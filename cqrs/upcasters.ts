import type { StoredEvent } from './types.js';

/** Turns the data of `eventType` at schema version `from` into version `from + 1`. */
export type Upcaster = (data: unknown, event: Readonly<StoredEvent>) => unknown;

/**
 * Upcasters by event type and schema version, applied on read: the log keeps
 * what was written, readers see the current shape. Chains run one version at a
 * time (v1 -> v2 -> v3), so each function only knows its neighbour.
 */
export class Upcasters {
  private readonly byType = new Map<string, Map<number, Upcaster>>();

  register(eventType: string, fromVersion: number, upcast: Upcaster): this {
    if (!Number.isInteger(fromVersion) || fromVersion < 1) throw new RangeError(`upcaster ${eventType}: fromVersion must be an integer >= 1, got ${fromVersion}`);
    const versions = this.byType.get(eventType) ?? new Map<number, Upcaster>();
    if (versions.has(fromVersion)) throw new Error(`upcaster ${eventType} v${fromVersion} is already registered`);
    versions.set(fromVersion, upcast);
    this.byType.set(eventType, versions);
    return this;
  }

  /** The event in its newest known shape (the same object when nothing applies). */
  upcast<T = unknown>(event: StoredEvent): StoredEvent<T> {
    const versions = this.byType.get(event.type);
    if (!versions) return event as StoredEvent<T>;
    let current = event;
    for (let fn = versions.get(current.schemaVersion); fn; fn = versions.get(current.schemaVersion)) {
      current = { ...current, data: fn(current.data, current), schemaVersion: current.schemaVersion + 1 };
    }
    return current as StoredEvent<T>;
  }
}
