import type { Redis } from 'ioredis';
import { FencedError } from './errors.js';

// KEYS[1] lease key, KEYS[2] epoch counter; ARGV[1] holder, ARGV[2] ttl ms.
// Takes the lease only when nobody holds it; each taking bumps the epoch.
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch, 'PX', ARGV[2])
return epoch`;

// ARGV[1] holder|epoch, ARGV[2] ttl ms. Extends only our own, current lease.
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

// KEYS[1] epoch counter; ARGV[1] epoch. A write is allowed only for the newest epoch.
const CHECK = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) == current then return 1 end
return 0`;

export interface LeaseOptions {
  /** Time a holder keeps the lease without renewing it. @defaultValue 10000 (ms) */
  ttlMs: number;
  /** Key prefix in Redis. @defaultValue 'concord' */
  prefix: string;
}

/**
 * A Redis lease for singleton actors (one replication-slot reader, one relay).
 * Every acquisition gets a new, larger fencing epoch; a holder that lost the lease
 * (paused, partitioned) is refused by `check`, so its late writes can be rejected.
 */
export class Lease {
  readonly options: LeaseOptions;
  private readonly key: string;
  private readonly epochKey: string;

  constructor(
    private readonly redis: Redis,
    readonly name: string,
    readonly holder: string,
    opts: Partial<LeaseOptions> = {},
  ) {
    this.options = { ttlMs: 10_000, prefix: 'concord', ...opts };
    if (!/^[a-zA-Z0-9._-]+$/.test(name)) throw new RangeError(`lease name ${JSON.stringify(name)}: letters, digits, . _ - only`);
    if (!(this.options.ttlMs >= 100)) throw new RangeError(`lease ${name}: ttlMs must be >= 100, got ${this.options.ttlMs}`);
    if (holder.includes('|')) throw new RangeError(`lease ${name}: holder id must not contain |`);
    this.key = `${this.options.prefix}:lease:${name}`;
    this.epochKey = `${this.key}:epoch`;
  }

  /** The new epoch if this holder took the lease, else null (someone else holds it). */
  async tryAcquire(): Promise<number | null> {
    const epoch = Number(await this.redis.eval(ACQUIRE, 2, this.key, this.epochKey, this.holder, this.options.ttlMs));
    return epoch > 0 ? epoch : null;
  }

  /** Extend the lease; false means it was lost (expired, or taken by another). */
  async renew(epoch: number): Promise<boolean> {
    return Number(await this.redis.eval(RENEW, 1, this.key, `${this.holder}|${epoch}`, this.options.ttlMs)) === 1;
  }

  async release(epoch: number): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.key, `${this.holder}|${epoch}`);
  }

  /** Throws FencedError unless `epoch` is the newest one handed out. */
  async check(epoch: number): Promise<void> {
    const ok = Number(await this.redis.eval(CHECK, 1, this.epochKey, epoch)) === 1;
    if (!ok) throw new FencedError(`lease ${this.name}: epoch ${epoch} is stale; another holder took over`, { lease: this.name, epoch });
  }

  /** Who holds the lease now, if anyone. */
  async current(): Promise<{ holder: string; epoch: number } | null> {
    const value = await this.redis.get(this.key);
    if (!value) return null;
    const at = value.lastIndexOf('|');
    return { holder: value.slice(0, at), epoch: Number(value.slice(at + 1)) };
  }
}
