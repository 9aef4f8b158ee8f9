import type { Redis } from 'ioredis';

interface Entry {
  /** Versions of the entry's tags when the data was read. */
  v: Array<string | null>;
  data: unknown;
}

/**
 * Query results in Redis with a TTL, invalidated by tags. Each tag (say
 * `order:42`) has a version counter; an entry remembers the versions of its
 * tags read *before* the read model was queried, and is a hit only while they
 * are unchanged. Invalidating bumps the counters (one round trip, nothing to
 * enumerate), so a result computed from data older than an invalidation is
 * never served, even when it was written to the cache after it.
 */
export class QueryCache {
  /**
   * @param maxTtlSeconds the longest TTL any entry gets; tag counters live this
   *   long after their last bump, so a counter never expires under a live entry.
   */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly maxTtlSeconds: number,
  ) {
    if (!(Number.isInteger(maxTtlSeconds) && maxTtlSeconds > 0)) throw new RangeError(`maxTtlSeconds must be a positive integer, got ${maxTtlSeconds}`);
  }

  private entryKey(key: string): string {
    return `${this.prefix}:cqrs:cache:${key}`;
  }
  private tagKey(tag: string): string {
    return `${this.prefix}:cqrs:tag:${tag}`;
  }

  /** The cached value (`hit`) or the tag versions to pass to `set` after computing it. */
  async lookup(key: string, tags: readonly string[]): Promise<{ hit: true; data: unknown } | { hit: false; versions: Array<string | null> }> {
    const [raw, ...versions] = await this.redis.mget(this.entryKey(key), ...tags.map((t) => this.tagKey(t)));
    if (raw) {
      const entry = JSON.parse(raw) as Entry;
      if (entry.v.length === versions.length && entry.v.every((v, i) => v === versions[i])) return { hit: true, data: entry.data };
    }
    return { hit: false, versions };
  }

  async set(key: string, data: unknown, versions: Array<string | null>, ttlSeconds: number): Promise<void> {
    const entry: Entry = { v: versions, data };
    await this.redis.set(this.entryKey(key), JSON.stringify(entry), 'EX', Math.min(ttlSeconds, this.maxTtlSeconds));
  }

  /** Makes every entry carrying one of `tags` stale. */
  async invalidate(tags: Iterable<string>): Promise<void> {
    const unique = [...new Set(tags)];
    if (unique.length === 0) return;
    const pipe = this.redis.pipeline();
    for (const tag of unique) pipe.incr(this.tagKey(tag)).expire(this.tagKey(tag), this.maxTtlSeconds);
    const results = await pipe.exec();
    const failed = results?.find(([err]) => err);
    if (failed) throw failed[0]!;
  }
}
