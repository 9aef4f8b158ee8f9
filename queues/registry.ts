import type { QueueDefinition } from './definition.js';

/**
 * The queues this process knows: actors consume them, the API enqueues to them
 * and reads their DLQs, Bull Board shows them. One registry per runtime.
 */
export class QueueRegistry {
  private readonly byName = new Map<string, QueueDefinition<unknown>>();

  constructor(definitions: Iterable<QueueDefinition<unknown>> = []) {
    for (const def of definitions) this.register(def);
  }

  register<T>(def: QueueDefinition<T>): QueueDefinition<T> {
    const existing = this.byName.get(def.name);
    if (existing && existing !== def) throw new RangeError(`queue ${def.name} is registered twice with different definitions`);
    this.byName.set(def.name, def as QueueDefinition<unknown>);
    return def;
  }

  get(name: string): QueueDefinition<unknown> | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  list(): QueueDefinition<unknown>[] {
    return [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}
