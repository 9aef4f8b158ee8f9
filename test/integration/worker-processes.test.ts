import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { testServices, uniquePrefix } from '../support/services.js';
import { startFixture, eventually, type Child } from '../support/child.js';

/** Real worker processes, killed and signalled for real. */
describe('worker processes', () => {
  let redis: Redis;
  const children: Child[] = [];
  const start = (prefix: string, env: Record<string, string> = {}) => {
    const c = startFixture('worker', { REDIS_URL: testServices().redisUrl, CONCORD_QUEUE_PREFIX: prefix, ...env });
    children.push(c);
    return c;
  };
  const ready = (c: Child) => c.waitFor((l) => l.fixtureEvent === 'ready', 30_000);

  beforeAll(() => {
    redis = new Redis(testServices().redisUrl);
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await c.exited;
    }
  });
  afterAll(async () => {
    redis.disconnect();
  });

  it('a worker killed with SIGKILL mid-job: another worker finishes the job after stall detection, none lost', async () => {
    const prefix = uniquePrefix('kill');
    const queue = new Queue('test.work', { connection: redis, prefix });
    const a = start(prefix, { FIXTURE_CONCURRENCY: '2' });
    await ready(a);
    // Two long jobs that A takes, plus short ones queued behind them.
    await queue.addBulk([
      { name: 'w', data: { key: 'long-1', mode: 'ok', ms: 4_000 } },
      { name: 'w', data: { key: 'long-2', mode: 'ok', ms: 4_000 } },
      ...Array.from({ length: 20 }, (_, i) => ({ name: 'w', data: { key: `short-${i}`, mode: 'ok', ms: 10 } })),
    ]);
    await eventually(async () => (await redis.hget(`${prefix}:started`, 'long-2')) === '1', 10_000, 50, 'A started the long jobs');
    a.kill('SIGKILL');
    await a.exited;
    expect(await queue.getActiveCount()).toBe(2); // still locked by the dead worker

    const b = start(prefix, { FIXTURE_CONCURRENCY: '2' });
    await ready(b);
    const done = await eventually(async () => {
      const d = await redis.hgetall(`${prefix}:done`);
      return Object.keys(d).length === 22 ? d : undefined;
    }, 45_000, 200, 'all 22 jobs done');
    expect(done['long-1']).toBe('1');
    expect(done['long-2']).toBe('1');
    expect(Object.values(done).every((n) => n === '1')).toBe(true);
    // The long jobs were finished by B (the pid in done-by), after A died.
    const by = await redis.lrange(`${prefix}:done-by`, 0, -1);
    expect(by).toContain(`${b.pid}:long-1`);
    expect(await queue.getActiveCount()).toBe(0);
    expect(await queue.getFailedCount()).toBe(0);
    await queue.close();
  });

  it('two worker processes on one queue: every job processed, none twice', async () => {
    const prefix = uniquePrefix('two');
    const queue = new Queue('test.work', { connection: redis, prefix });
    const a = start(prefix, { FIXTURE_CONCURRENCY: '8' });
    const b = start(prefix, { FIXTURE_CONCURRENCY: '8' });
    await Promise.all([ready(a), ready(b)]);
    const n = 600;
    await queue.addBulk(Array.from({ length: n }, (_, i) => ({ name: 'w', data: { key: `k${i}`, mode: 'ok', ms: 5 } })));
    const done = await eventually(async () => {
      const d = await redis.hgetall(`${prefix}:done`);
      return Object.keys(d).length === n ? d : undefined;
    }, 60_000, 200, `${n} jobs done`);
    expect(Object.values(done).filter((v) => v !== '1')).toEqual([]);
    const by = await redis.lrange(`${prefix}:done-by`, 0, -1);
    expect(by).toHaveLength(n);
    const perWorker = new Map<string, number>();
    for (const entry of by) perWorker.set(entry.split(':')[0]!, (perWorker.get(entry.split(':')[0]!) ?? 0) + 1);
    expect(perWorker.get(String(a.pid))).toBeGreaterThan(0);
    expect(perWorker.get(String(b.pid))).toBeGreaterThan(0);
    await queue.close();
  });

  it('SIGTERM during work: in-flight jobs finish and the process exits 0', async () => {
    const prefix = uniquePrefix('term');
    const queue = new Queue('test.work', { connection: redis, prefix });
    const a = start(prefix, { FIXTURE_CONCURRENCY: '3', SHUTDOWN_TIMEOUT_MS: '20000' });
    await ready(a);
    await queue.addBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'w', data: { key: `slow-${i}`, mode: 'ok', ms: 2_000 } })));
    await queue.add('w', { key: 'queued-after', mode: 'ok', ms: 0 }, { delay: 200 });
    await eventually(async () => (await redis.hlen(`${prefix}:started`)) === 3, 10_000, 20, 'three jobs in flight');
    a.kill('SIGTERM');
    const exit = await a.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    const done = await redis.hgetall(`${prefix}:done`);
    expect(done).toMatchObject({ 'slow-0': '1', 'slow-1': '1', 'slow-2': '1' });
    // Nothing was left half-done: no active job, and the job it had not taken is still waiting.
    expect(await queue.getActiveCount()).toBe(0);
    expect(done['queued-after']).toBeUndefined();
    const left = await queue.getJobCounts('wait', 'delayed');
    expect((left.wait ?? 0) + (left.delayed ?? 0)).toBe(1);
    await queue.close();
  });

  it('the DLQ hand-off survives the worker dying as the last attempt fails', async () => {
    const prefix = uniquePrefix('dlqdie');
    const queue = new Queue('test.work', { connection: redis, prefix });
    const dlq = new Queue('test.work.dlq', { connection: redis, prefix });
    const a = start(prefix);
    await ready(a);
    await queue.add('w', { key: 'doomed', mode: 'fail-and-die' }, { attempts: 1 });
    const exit = await a.exited;
    expect(exit.signal).toBe('SIGKILL');
    const b = start(prefix, { FIXTURE_LOCK_MS: '1000', FIXTURE_STALLED_MS: '500' });
    await ready(b);
    // B must not have simply re-run it: a 'fail-and-die' job run by B would kill B too.
    const entries = await eventually(async () => {
      const jobs = await dlq.getWaiting();
      return jobs.length > 0 ? jobs : undefined;
    }, 30_000, 200, 'the job in the DLQ');
    expect(entries).toHaveLength(1);
    expect(entries[0]!.data).toMatchObject({ queue: 'test.work', name: 'w', data: { key: 'doomed', mode: 'fail-and-die' }, failedReason: 'failed, and the worker died', attemptsMade: 1 });
    expect(await queue.getFailedCount()).toBe(0);
    await queue.close();
    await dlq.close();
  });
});
