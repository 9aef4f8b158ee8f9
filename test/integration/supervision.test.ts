import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Lease, FencedError } from '../../runtime/index.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { startFixture, eventually, type Child, type LogLine } from '../support/child.js';

const children: Child[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.kill('SIGKILL');
    await c.exited;
  }
});

describe('supervisor', () => {
  it('restarts an actor crashing at start with growing delays, then exits non-zero past its intensity', async () => {
    const c = startFixture('crasher', { REDIS_URL: testServices().redisUrl, CONCORD_QUEUE_PREFIX: uniquePrefix('crash'), FIXTURE_INTENSITY: '3' });
    children.push(c);
    const exit = await c.exited;
    expect(exit.code).toBe(1);

    const decisions = c.lines.filter((l) => l.actor === 'crasher' && typeof l.msg === 'string' && l.msg.startsWith('decision:'));
    expect(decisions.map((l) => l.msg)).toEqual([
      'decision: restart after backoff',
      'decision: restart after backoff',
      'decision: restart after backoff',
      'decision: escalate (restart intensity exceeded)',
    ]);
    const delays = decisions.slice(0, 3).map((l) => l.delayMs as number);
    expect(delays[0]!).toBeGreaterThanOrEqual(80); // minMs 100, jitter 0.2
    expect(delays[1]!).toBeGreaterThan(delays[0]!);
    expect(delays[2]!).toBeGreaterThan(delays[1]!);

    // The starts really were spaced by those delays.
    const starts = c.lines.filter((l: LogLine) => l.actor === 'crasher' && l.msg === 'actor state' && l.to === 'starting').map((l) => Date.parse(String(l.time)));
    expect(starts).toHaveLength(4);
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(delays[i - 1]! - 5);
    expect(c.lines.some((l) => l.level === 'fatal')).toBe(true);
  });
});

describe('lease', () => {
  it('two contenders, one holder; the other takes over within the TTL after a SIGKILL; the old epoch is refused', async () => {
    const prefix = uniquePrefix('lease');
    const ttlMs = 1_500;
    const env = { REDIS_URL: testServices().redisUrl, CONCORD_QUEUE_PREFIX: prefix, FIXTURE_LEASE_TTL_MS: String(ttlMs) };
    const a = startFixture('lease', env);
    const b = startFixture('lease', env);
    children.push(a, b);
    const isLeader = (l: LogLine) => l.fixtureEvent === 'leader';
    const first = await Promise.race([a.waitFor(isLeader, 20_000).then((l) => ({ child: a, line: l })), b.waitFor(isLeader, 20_000).then((l) => ({ child: b, line: l }))]);
    const holder = first.child;
    const standby = holder === a ? b : a;
    const oldEpoch = first.line.epoch as number;

    const redis = new Redis(testServices().redisUrl);
    try {
      // Only the holder writes while it lives.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(standby.lines.some(isLeader)).toBe(false);
      const writers = new Set((await redis.lrange(`${prefix}:leader-writes`, 0, -1)).map((w) => w.split(':')[0]));
      expect([...writers]).toEqual([String(holder.pid)]);

      holder.kill('SIGKILL');
      const killedAt = Date.now();
      await holder.exited;
      const took = await standby.waitFor(isLeader, ttlMs * 3);
      const takeoverMs = Date.now() - killedAt;
      expect(takeoverMs).toBeLessThanOrEqual(ttlMs + ttlMs / 4 + 500); // TTL + one poll + scheduling slack
      const newEpoch = took.epoch as number;
      expect(newEpoch).toBeGreaterThan(oldEpoch);

      const lease = new Lease(redis, 'lease-holder', 'test-observer', { ttlMs, prefix });
      await expect(lease.check(oldEpoch)).rejects.toBeInstanceOf(FencedError);
      await expect(lease.check(newEpoch)).resolves.toBeUndefined();
      expect(await lease.current()).toMatchObject({ epoch: newEpoch });
      // A stale holder cannot renew either.
      const stale = new Lease(redis, 'lease-holder', (await lease.current())!.holder, { ttlMs, prefix });
      expect(await stale.renew(oldEpoch)).toBe(false);
      await eventually(async () => (await redis.lrange(`${prefix}:leader-writes`, -1, -1))[0] === `${standby.pid}:${newEpoch}`, 5_000, 100, 'new leader writing');
    } finally {
      redis.disconnect();
    }
  });
});
