import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { eventually } from '../support/child.js';
import { signHs256, TEST_SECRET } from '../support/jwt.js';
import { workActor, workQueue } from '../fixtures/test-queues.js';

/** Mailbox retries and dead letters, driven and inspected through the HTTP API. */
describe('mailbox, DLQ and the DLQ API', () => {
  const prefix = uniquePrefix('dlq');
  let proc: RunningProcess;
  let redis: Redis;
  let token: string;
  let base: string;

  const api = async (method: string, path: string) => {
    const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  };
  const add = (data: Record<string, unknown>, opts = {}) => proc.runtime.services.queues.add('test.work', 'w', data, opts);
  const dlqEntries = async () => ((await api('GET', '/api/v1/dlq/test.work')).body as { entries: Array<Record<string, unknown>> }).entries;

  beforeAll(async () => {
    const { redisUrl, databaseUrl } = testServices();
    redis = new Redis(redisUrl);
    const config = loadConfig({ REDIS_URL: redisUrl, DATABASE_URL: databaseUrl, PORT: '0', HOST: '127.0.0.1', SECRET_KEY: TEST_SECRET, CONCORD_QUEUE_PREFIX: prefix, DUCKDB_DATABASE_PATH: ':memory:', LOG_LEVEL: 'silent' });
    proc = await startProcess({ config, role: 'all', actors: [workActor(() => redis, prefix, { concurrency: 4, sweepIntervalMs: 200 })], queues: [workQueue], onEscalate: () => undefined });
    base = proc.http.url;
    token = await signHs256({ sub: 'operator' });
  });
  afterAll(async () => {
    await proc?.stop(10_000);
    redis.disconnect();
  });

  it('a transiently failing job is retried and succeeds', async () => {
    const job = await add({ key: 'flaky', mode: 'flaky', failures: 2 });
    await eventually(async () => (await redis.hget(`${prefix}:done`, 'flaky')) === '1', 15_000, 50, 'flaky job done');
    expect(await redis.hget(`${prefix}:started`, 'flaky')).toBe('3');
    const finished = await proc.runtime.services.queues.queue('test.work').getJob(job.id!);
    expect(await finished?.isCompleted()).toBe(true);
    expect(finished?.returnvalue).toEqual({ ok: true });
    expect(await dlqEntries()).toEqual([]);
  });

  it('a permanently failing job ends in the DLQ with its reason and attempts', async () => {
    await add({ key: 'doomed', mode: 'fail' });
    const entries = await eventually(async () => {
      const e = await dlqEntries();
      return e.length === 1 ? e : undefined;
    }, 15_000, 100, 'DLQ entry');
    expect(entries[0]).toMatchObject({ queue: 'test.work', name: 'w', data: { key: 'doomed', mode: 'fail' }, failedReason: 'this job always fails', attemptsMade: 3 });
    expect(typeof entries[0]!.failedAt).toBe('number');
    expect(await redis.hget(`${prefix}:started`, 'doomed')).toBe('3');
    const counts = (await api('GET', '/api/v1/dlq')).body as { queues: Array<{ queue: string; count: number }> };
    expect(counts.queues).toContainEqual({ queue: 'test.work', dlq: 'test.work.dlq', count: 1 });
    // Failed jobs move out of the source queue's failed set into the DLQ.
    expect(await proc.runtime.services.queues.queue('test.work').getFailedCount()).toBe(0);
    // Discard it so later tests see an empty DLQ.
    expect((await api('DELETE', `/api/v1/dlq/test.work/${String(entries[0]!.id)}`)).status).toBe(204);
  });

  it('a bad payload goes to the DLQ at once, without retries', async () => {
    // Written straight to the queue, past the API's validation, as a buggy producer would.
    await proc.runtime.services.queues.queue('test.work').add('w', { key: 'bad', mode: 'explode' });
    const entries = await eventually(async () => {
      const e = await dlqEntries();
      return e.length === 1 ? e : undefined;
    }, 15_000, 100, 'DLQ entry for bad payload');
    expect(entries[0]!.failedReason).toMatch(/^invalid payload: data\.mode: /);
    expect(entries[0]!.attemptsMade).toBe(1);
    expect(await redis.hget(`${prefix}:started`, 'bad')).toBeNull(); // the handler never ran
    await api('DELETE', `/api/v1/dlq/test.work/${String(entries[0]!.id)}`);
  });

  it('the queue API refuses a bad payload with the field and reason', async () => {
    await expect(add({ key: '', mode: 'ok' })).rejects.toMatchObject({ status: 400, issues: [{ field: 'data.key', reason: expect.any(String) }] });
  });

  it('retry through the API runs the job again; delete removes an entry', async () => {
    await redis.set(`${prefix}:flag`, '0');
    await add({ key: 'retry-me', mode: 'flaky', failures: 99 }, { attempts: 1 });
    const [entry] = await eventually(async () => {
      const e = await dlqEntries();
      return e.length === 1 ? e : undefined;
    }, 15_000, 100, 'DLQ entry');
    expect(await redis.hget(`${prefix}:started`, 'retry-me')).toBe('1');

    const retried = await api('POST', `/api/v1/dlq/test.work/${String(entry!.id)}/retry`);
    expect(retried.status).toBe(202);
    expect(retried.body).toMatchObject({ retried: true, queue: 'test.work', jobId: `${String(entry!.jobId)}-r1` });
    // It ran again (and, still failing, came back with its retry count).
    const [again] = await eventually(async () => {
      const e = await dlqEntries();
      return e.length === 1 && e[0]!.retries === 1 ? e : undefined;
    }, 15_000, 100, 'job back in the DLQ after its retry');
    expect(await redis.hget(`${prefix}:started`, 'retry-me')).toBe('2');

    const deleted = await api('DELETE', `/api/v1/dlq/test.work/${String(again!.id)}`);
    expect(deleted.status).toBe(204);
    expect(await dlqEntries()).toEqual([]);
    const missing = await api('DELETE', `/api/v1/dlq/test.work/${String(again!.id)}`);
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ error: { code: 'not_found' } });
  });

  it('unknown queues and bad paging are refused with the documented error shape', async () => {
    const unknown = await api('GET', '/api/v1/dlq/no.such.queue');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: { code: 'not_found', message: 'unknown queue "no.such.queue"', details: expect.any(Object) } });
    const bad = await api('GET', '/api/v1/dlq/test.work?limit=100000');
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: { code: 'bad_request', details: { issues: [{ field: 'query.limit' }] } } });
  });

  it('stats report queue counts, actor states and uptime; metrics count the jobs', async () => {
    const stats = (await api('GET', '/api/v1/stats')).body as { runtime: { queues: Record<string, Record<string, number>>; actors: Record<string, Array<{ state: string }>>; process: { uptimeSeconds: number } } };
    expect(stats.runtime.queues['test.work']).toMatchObject({ waiting: 0, active: 0, failed: 0, dlq: 0 });
    expect(stats.runtime.queues['test.work']!.completed).toBeGreaterThanOrEqual(1);
    expect(stats.runtime.actors['test-worker']![0]!.state).toBe('running');
    expect(stats.runtime.process.uptimeSeconds).toBeGreaterThanOrEqual(0);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/concord_jobs_processed_total\{queue="test\.work"\} [1-9]/);
    expect(metrics).toMatch(/concord_jobs_retried_total\{queue="test\.work"\} [1-9]/);
    expect(metrics).toMatch(/concord_jobs_dead_lettered_total\{queue="test\.work"\} [1-9]/);
    expect(metrics).toMatch(/concord_queue_jobs\{queue="test\.work",state="waiting"\} 0/);
    expect(metrics).toMatch(/concord_dlq_jobs\{queue="test\.work"\} 0/);
    expect(metrics).toMatch(/concord_job_duration_seconds_bucket/);
    expect(metrics).toMatch(/concord_process_cpu_seconds_total/);
  });
});
