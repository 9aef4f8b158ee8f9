import type pg from 'pg';
import type { EventStore } from './event-store.js';
import { checkProjection, relevant, type Projection } from './projection.js';
import type { QueryCache } from './query-cache.js';

/**
 * Runs a projection inside every append's transaction: its read model commits
 * with the events, and an error in it rolls the append back (the caller sees
 * it). Use for read models that must never lag; async runners for the rest.
 * Cache tags are invalidated after the commit.
 */
export async function useInlineProjection(store: EventStore, projection: Projection, opts: { cache?: QueryCache } = {}): Promise<void> {
  checkProjection(projection);
  if (projection.setup) {
    const c: pg.PoolClient = await store.pool.connect();
    try {
      await projection.setup(c);
    } finally {
      c.release();
    }
  }
  store.beforeCommit(async (tx, events) => {
    const rel = events.filter((e) => relevant(projection, e));
    if (rel.length === 0) return;
    if (projection.applyBatch) await projection.applyBatch(tx, rel);
    else for (const e of rel) await projection.apply(tx, e);
  });
  const cache = opts.cache;
  if (cache && projection.cacheTags) {
    const tagsOf = projection.cacheTags;
    store.afterCommit((events) => cache.invalidate(events.filter((e) => relevant(projection, e)).flatMap(tagsOf)));
  }
}
