import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig } from '../../runtime/index.js';
import { syncStatsKeys } from '../../queues/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { startPostgres, type PostgresHandle } from '../../scripts/services/postgres.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startFixture, type Child } from '../support/child.js';

interface RunSummary {
  runId: string;
  startedAt: string;
  finishedAt: string;
  created: number;
}

async function insertEntries(queueDb: pg.Pool, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, () => randomUUID());
  // Several transactions, so entries spread over many updated_at values.
  for (let i = 0; i < n; i += 500) {
    await queueDb.query(
      `INSERT INTO investment_queue (id, user_id, amount, currency) SELECT id, gen_random_uuid(), 10, 'EUR' FROM unnest($1::uuid[]) AS id`,
      [ids.slice(i, i + 500)],
    );
  }
  return ids;
}

const children: Child[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.kill('SIGKILL');
    await c.exited;
  }
});

describe('consistency manager under concurrency and faults', () => {
  it('two worker processes, schedules every second and manual triggers: each entry applied once, runs never overlap', async () => {
    const { redisUrl, databaseUrl } = testServices();
    const tag = uniquePrefix('sync2').replace(/-/g, '_');
    const queueDbUri = await freshDatabase(databaseUrl, `${tag}_q`, 'queue-db');
    const portfolioDbUri = await freshDatabase(databaseUrl, `${tag}_p`, 'portfolio-db');
    const prefix = uniquePrefix('sync2');
    const queueDb = new pg.Pool({ connectionString: queueDbUri, max: 2 });
    const portfolioDb = new pg.Pool({ connectionString: portfolioDbUri, max: 2 });
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    const reconcile = new Queue('reconcile', { connection: redis, prefix });
    try {
      const ids = await insertEntries(queueDb, 4_000);
      const env = { REDIS_URL: redisUrl, CONCORD_QUEUE_PREFIX: prefix, QUEUE_DB_URI: queueDbUri, USER_PORTFOLIO_DB_URI: portfolioDbUri, SYNC_INTERVAL: '1', BATCH_SIZE: '50' };
      const a = startFixture('sync', env);
      const b = startFixture('sync', env);
      children.push(a, b);
      await Promise.all([a.waitFor((l) => l.fixtureEvent === 'ready'), b.waitFor((l) => l.fixtureEvent === 'ready')]);
      // Manual triggers while scheduled runs come and go.
      for (let i = 0; i < 5; i++) {
        await reconcile.add('sync', { trigger: 'manual', kind: 'sync' });
        await new Promise((r) => setTimeout(r, 150));
        if (i === 2) await insertEntries(queueDb, 500).then((more) => ids.push(...more));
      }
      const keys = syncStatsKeys(prefix);
      await eventually(async () => Number((await portfolioDb.query('SELECT count(*) AS n FROM portfolio_transactions')).rows[0].n) === ids.length, 60_000, 200, 'all entries synced');
      // Totals are recorded as each run ends: wait for the run that wrote the last page.
      await eventually(async () => Number((await redis.hget(keys.totals, 'created')) ?? 0) >= ids.length, 20_000, 100, 'run totals recorded');
      const totals = await redis.hgetall(keys.totals);
      expect(Number(totals.created)).toBe(ids.length); // created once each, never twice
      expect(Number(totals.failedRuns ?? 0)).toBe(0);
      // On a slow machine a single run can carry most pages; the schedule (every second)
      // keeps starting runs, so wait for several before checking they never overlapped.
      await eventually(async () => (await redis.llen(keys.runs)) > 3, 20_000, 100, 'several runs recorded');
      const runs = (await redis.lrange(keys.runs, 0, -1)).map((r) => JSON.parse(r) as RunSummary).sort((x, y) => x.startedAt.localeCompare(y.startedAt));
      expect(runs.length).toBeGreaterThan(3);
      for (let i = 1; i < runs.length; i++) expect(runs[i]!.startedAt >= runs[i - 1]!.finishedAt).toBe(true);
      const byProcess = new Set([...a.lines, ...b.lines].filter((l) => l.msg === 'sync run finished').map((l) => l.pid));
      expect(byProcess.size).toBeGreaterThanOrEqual(1);
    } finally {
      await reconcile.close();
      redis.disconnect();
      await queueDb.end();
      await portfolioDb.end();
    }
  });

  it('the portfolio database stopped during a run, then restarted: everything arrives, nothing twice', async () => {
    const { redisUrl, databaseUrl } = testServices();
    const tag = uniquePrefix('outage').replace(/-/g, '_');
    const portfolioServer: PostgresHandle = await startPostgres({ mode: 'test' });
    let proc: RunningProcess | undefined;
    const queueDbUri = await freshDatabase(databaseUrl, `${tag}_q`, 'queue-db');
    const portfolioDbUri = await freshDatabase(portfolioServer.url, `${tag}_p`, 'portfolio-db');
    const queueDb = new pg.Pool({ connectionString: queueDbUri, max: 2 });
    const prefix = uniquePrefix('outage');
    const redis = new Redis(redisUrl);
    try {
      const ids = await insertEntries(queueDb, 3_000);
      const env = runtimeEnv({ redisUrl, databaseUrl, prefix }, {
        QUEUE_DB_URI: queueDbUri,
        USER_PORTFOLIO_DB_URI: portfolioDbUri,
        SYNC_INTERVAL: '3600',
      OUTBOX_ENABLED: 'false',
        BATCH_SIZE: '10',
      });
      proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', undefined, env), onEscalate: () => undefined });
      const count = async () => {
        const c = new pg.Client({ connectionString: portfolioDbUri });
        await c.connect();
        try {
          return Number((await c.query('SELECT count(*) AS n FROM portfolio_transactions')).rows[0].n);
        } finally {
          await c.end();
        }
      };
      // The first (scheduled) run starts at once; stop the database part-way through it.
      await eventually(async () => (await count()) >= 300, 30_000, 20, 'run under way');
      await portfolioServer.pause();
      await new Promise((r) => setTimeout(r, 1_500));
      const totalsDuring = await redis.hgetall(syncStatsKeys(prefix).totals);
      expect(Number(totalsDuring.failedRuns ?? 0)).toBeGreaterThanOrEqual(1);
      await portfolioServer.resume();
      await eventually(async () => (await count()) === ids.length, 60_000, 250, 'all entries after the outage');
      await eventually(async () => Number((await redis.hget(syncStatsKeys(prefix).totals, 'created')) ?? 0) >= ids.length, 20_000, 100, 'run totals recorded');
      const totals = await redis.hgetall(syncStatsKeys(prefix).totals);
      expect(Number(totals.created)).toBe(ids.length);
      const c = new pg.Client({ connectionString: portfolioDbUri });
      await c.connect();
      const dupes = await c.query('SELECT count(*) AS n FROM (SELECT id FROM portfolio_transactions GROUP BY id HAVING count(*) > 1) d');
      await c.end();
      expect(Number(dupes.rows[0].n)).toBe(0);
    } finally {
      await proc?.stop(10_000);
      redis.disconnect();
      await queueDb.end();
      await portfolioServer.stop();
    }
  });
});
