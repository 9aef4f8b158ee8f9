import type { Redis } from 'ioredis';
import type pg from 'pg';
import { sequenceKey, storedMax, streamPosition, GLOBAL_STREAM, type StreamMode, type StreamPosition } from '../../queues/index.js';

export interface AllocatorOptions {
  /** Per-symbol streams, or one global stream for every symbol. @defaultValue 'symbol' */
  mode: StreamMode;
  /**
   * Numbers reserved in PostgreSQL (sequence_tracker) per round trip. Redis hands out only
   * reserved numbers, so a Redis flush or restart skips at most this many per stream.
   * @defaultValue 10000
   */
  reserveSize: number;
  /** Numbers `next()` takes from Redis at once into this process; a crash skips the rest. @defaultValue 1000 */
  blockSize: number;
  /** Key prefix of the Redis state (the queue prefix). */
  prefix: string;
}


/** Hands out `n` numbers if the reservation covers them: {first, last} or -1 (no state) / -2 (reserve more). */
const ALLOC = `
local last = tonumber(redis.call('HGET', KEYS[1], 'last'))
local ceil = tonumber(redis.call('HGET', KEYS[1], 'ceil'))
if not last or not ceil then return {-1, 0} end
local n = tonumber(ARGV[1])
if last + n > ceil then return {-2, 0} end
local new = redis.call('HINCRBY', KEYS[1], 'last', n)
return {new - n + 1, new}`;

/**
 * Applies a block (ARGV[1], ARGV[2]] reserved in PostgreSQL: 'last' moves up to its start
 * (numbers below were reserved by someone else or already handed out), 'ceil' to its end.
 * Only a recovery block (computed from the tracker and the klines table) may create state.
 * Values are set from the argument strings: Lua's number formatting would lose digits.
 */
const APPLY = `
local last = tonumber(redis.call('HGET', KEYS[1], 'last'))
local ceil = tonumber(redis.call('HGET', KEYS[1], 'ceil'))
if not last or not ceil then
  if ARGV[3] ~= 'recover' then return -1 end
  redis.call('HSET', KEYS[1], 'last', ARGV[1], 'ceil', ARGV[2])
  return 1
end
if tonumber(ARGV[1]) > last then redis.call('HSET', KEYS[1], 'last', ARGV[1]) end
if tonumber(ARGV[2]) > ceil then redis.call('HSET', KEYS[1], 'ceil', ARGV[2]) end
return 1`;

type ScriptRedis = Redis & {
  seqAlloc(key: string, n: number): Promise<[number, number]>;
  seqApply(key: string, from: string, to: string, kind: 'raise' | 'recover'): Promise<number>;
};

/** The largest count `allocate` takes at once (also a batch's count per stream). */
export const MAX_ALLOCATION = 1_000_000;

/**
 * Strictly increasing sequence numbers per stream, never handed out twice.
 *
 * Redis holds per stream `last` (handed out) and `ceil` (reserved): allocation is one
 * script call. PostgreSQL's sequence_tracker is reserved before Redis may use a number,
 * so it is always >= every number handed out. When Redis has no state (first use, flush)
 * or may be stale (this process saw a reconnect: Redis may have restarted from an older
 * snapshot), the stream is re-synced: a fresh block is reserved above the tracker and
 * above the highest sequence in market_klines, and Redis jumps to it. The numbers skipped
 * that way are never used: gaps, not lost data.
 */
export class SequenceAllocator {
  readonly options: AllocatorOptions;
  private readonly redis: ScriptRedis;
  /** Bumped whenever the connection closes: state checked under an older generation is re-checked after the reconnect. */
  private generation = 0;
  private readonly synced = new Map<string, number>();
  private readonly syncing = new Map<string, Promise<void>>();
  private readonly raising = new Map<string, Promise<void>>();
  private readonly blocks = new Map<string, { next: number; end: number }>();
  private readonly refilling = new Map<string, Promise<void>>();
  private readonly onClose = () => {
    this.generation++;
  };
  /** Counters for metrics: re-syncs (recoveries) and reservations in PostgreSQL. */
  readonly counts = { recoveries: 0, reservations: 0, allocated: 0 };

  constructor(
    redis: Redis,
    private readonly pool: pg.Pool,
    opts: Partial<AllocatorOptions> & Pick<AllocatorOptions, 'prefix'>,
  ) {
    const reserveSize = opts.reserveSize ?? 10_000;
    this.options = { mode: 'symbol', blockSize: Math.min(1000, reserveSize), ...opts, reserveSize };
    const o = this.options;
    if (!Number.isInteger(o.reserveSize) || o.reserveSize < 1 || o.reserveSize > MAX_ALLOCATION) throw new RangeError(`reserveSize must be an integer from 1 to ${MAX_ALLOCATION}, got ${o.reserveSize}`);
    if (!Number.isInteger(o.blockSize) || o.blockSize < 1 || o.blockSize > o.reserveSize) throw new RangeError(`blockSize must be an integer from 1 to reserveSize (${o.reserveSize}), got ${o.blockSize}`);
    const r = redis as ScriptRedis;
    if (typeof r.seqAlloc !== 'function') {
      r.defineCommand('seqAlloc', { numberOfKeys: 1, lua: ALLOC });
      r.defineCommand('seqApply', { numberOfKeys: 1, lua: APPLY });
    }
    this.redis = r;
    r.on('close', this.onClose);
  }

  /** Stop listening to the connection (the connection itself belongs to the caller). */
  close(): void {
    this.redis.off('close', this.onClose);
  }

  streamOf(symbol: string): string {
    return this.options.mode === 'global' ? GLOBAL_STREAM : symbol;
  }

  /**
   * `n` consecutive numbers of `stream`; returns the first. Numbers of one stream from
   * one caller at a time are strictly increasing (the ingest path relies on this).
   */
  async allocate(stream: string, n = 1): Promise<number> {
    if (!Number.isInteger(n) || n < 1 || n > MAX_ALLOCATION) throw new RangeError(`allocate: n must be an integer from 1 to ${MAX_ALLOCATION}, got ${n}`);
    const key = sequenceKey(this.options.prefix, stream);
    for (let attempt = 0; ; attempt++) {
      if (attempt > 20) throw new Error(`sequence stream ${stream}: could not allocate ${n} numbers after ${attempt} tries`);
      const gen = this.generation;
      if (this.synced.get(stream) !== gen) {
        await this.sync(stream, gen);
        continue;
      }
      const [first] = await this.redis.seqAlloc(key, n);
      // A reply across a reconnect may come from a Redis that lost state: discard it (unused numbers).
      if (gen !== this.generation) continue;
      if (first === -1) {
        this.synced.delete(stream);
        continue;
      }
      if (first === -2) {
        await this.raise(stream, key, n);
        continue;
      }
      this.counts.allocated += n;
      return first;
    }
  }

  /** One number of `stream` from this process's block: increasing per process, distinct across processes. */
  async next(stream: string): Promise<number> {
    for (;;) {
      const block = this.blocks.get(stream);
      if (block && block.next <= block.end) return block.next++;
      let refill = this.refilling.get(stream);
      if (!refill) {
        refill = this.allocate(stream, this.options.blockSize)
          .then((first) => {
            this.blocks.set(stream, { next: first, end: first + this.options.blockSize - 1 });
          })
          .finally(() => this.refilling.delete(stream));
        this.refilling.set(stream, refill);
      }
      await refill;
    }
  }

  /** One reservation at a time per stream in this process: concurrent callers share it. */
  private raise(stream: string, key: string, n: number): Promise<void> {
    let p = this.raising.get(stream);
    if (!p) {
      p = this.reserve(stream, key, Math.max(n, this.options.reserveSize), 0, 'raise').finally(() => this.raising.delete(stream));
      this.raising.set(stream, p);
    }
    return p;
  }

  private sync(stream: string, gen: number): Promise<void> {
    let p = this.syncing.get(stream);
    if (!p) {
      p = (async () => {
        const stored = await this.storedMax(stream);
        await this.reserve(stream, sequenceKey(this.options.prefix, stream), this.options.reserveSize, stored ?? 0, 'recover');
        this.counts.recoveries++;
        this.synced.set(stream, gen);
      })().finally(() => this.syncing.delete(stream));
      this.syncing.set(stream, p);
    }
    return p;
  }

  /** Reserves `size` numbers above max(tracker, floor) in PostgreSQL, then lets Redis use them. */
  private async reserve(stream: string, key: string, size: number, floor: number, kind: 'raise' | 'recover'): Promise<void> {
    const { rows } = await this.pool.query<{ last_sequence: string }>(
      `INSERT INTO sequence_tracker (stream, last_sequence, last_assigned) VALUES ($1, $2::bigint + $3::bigint, $2)
       ON CONFLICT (stream) DO UPDATE SET last_sequence = GREATEST(sequence_tracker.last_sequence, $2::bigint) + $3::bigint, updated_at = CURRENT_TIMESTAMP
       RETURNING last_sequence`,
      [stream, floor, size],
    );
    this.counts.reservations++;
    const end = BigInt(rows[0]!.last_sequence);
    await this.redis.seqApply(key, String(end - BigInt(size)), String(end), kind);
  }

  private storedMax(stream: string): Promise<number | null> {
    return storedMax(this.pool, this.options.mode, stream);
  }

  /** Where a stream stands, in Redis and in PostgreSQL. */
  position(stream: string): Promise<StreamPosition> {
    return streamPosition(this.redis, this.pool, this.options.prefix, this.options.mode, stream);
  }
}
