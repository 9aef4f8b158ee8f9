import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { enqueueSagaResume, sagaStepQueue } from '../../queues/index.js';
import { createLogger } from '../../runtime/index.js';
import { SagaOrchestrator } from '../../actors/saga-coordinator/index.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startFixture, type Child } from '../support/child.js';
import { SAGA_TEST_TABLES } from '../fixtures/saga-handlers.js';

const HANDLERS = fileURLToPath(new URL('../fixtures/saga-handlers.ts', import.meta.url));
const SAGAS = Number(process.env.SAGA_KILL_TEST_SAGAS ?? 1000);

/**
 * Real worker processes (test/fixtures/process.ts sagas, the saga-coordinator actor with
 * test/fixtures/saga-handlers.ts) killed with SIGKILL while they run sagas.
 */
describe('saga workers killed with SIGKILL', () => {
  let db: pg.Pool;
  let dbUrl: string;
  let redisUrl: string;
  let producer: SagaOrchestrator;
  let prefix: string;
  const children: Child[] = [];

  beforeAll(async () => {
    ({ redisUrl } = testServices());
    dbUrl = await freshDatabase(testServices().databaseUrl, uniquePrefix('sagakill').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 4 });
    await db.query(SAGA_TEST_TABLES);
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await c.exited;
    }
    await producer?.stop();
  });
  afterAll(async () => {
    await db?.end();
  });

  const worker = async (env: Record<string, string> = {}) => {
    const c = startFixture('sagas', {
      REDIS_URL: redisUrl,
      DATABASE_URL: dbUrl,
      CONCORD_QUEUE_PREFIX: prefix,
      SAGA_HANDLERS_MODULE: HANDLERS,
      SAGA_WORKER_COUNT: '16',
      SAGA_LEASE_TTL_MS: '1500',
      SAGA_RECOVERY_INTERVAL_MS: '500',
      SAGA_STALE_AFTER_MS: '2000',
      SAGA_RETRY_DELAY_MS: '5',
      SAGA_RETRY_MAX_DELAY_MS: '40',
      SAGA_STEP_RETRY_ATTEMPTS: '1',
      SAGA_COMPENSATION_RETRY_ATTEMPTS: '1',
      LOG_LEVEL: 'info',
      KAFKA_BROKERS: '',
      ...Object.fromEntries(['OUTBOX_ENABLED', 'SYNC_EVENTS_ENABLED', 'SEQUENCES_ENABLED', 'CQRS_ENABLED', 'DATA_SYNC_ENABLED', 'CDC_ENABLED'].map((k) => [k, 'false'])),
      ...env,
    });
    children.push(c);
    await c.waitFor((l) => l.fixtureEvent === 'ready', 60_000);
    return c;
  };
  const kill = async (c: Child) => {
    c.kill('SIGKILL');
    await c.exited;
    children.splice(children.indexOf(c), 1);
  };
  const startProducer = async () => {
    producer = new SagaOrchestrator('test-producer', { databaseUrl: dbUrl, redisUrl, prefix, log: createLogger('silent') });
    await eventually(async () => (await db.query(`SELECT 1 FROM saga_definitions WHERE saga_type = 'kill'`)).rowCount === 1, 30_000, 100, 'kill saga defined');
  };
  const statuses = async () =>
    Object.fromEntries((await db.query<{ status: string; n: string }>('SELECT status, count(*) AS n FROM sagas GROUP BY 1')).rows.map((r) => [r.status, Number(r.n)]));

  /** The invariants: effects once, only with a recorded outcome, and no run after a recorded completion. */
  async function checkInvariants(): Promise<{ runs: number; effects: number }> {
    const twice = await db.query('SELECT saga_id, step, phase, count(*) FROM test_effects GROUP BY 1, 2, 3 HAVING count(*) > 1');
    expect(twice.rows).toEqual([]);
    const unrecorded = await db.query(
      `SELECT e.* FROM test_effects e JOIN saga_steps s ON s.saga_id = e.saga_id AND s.step_name = e.step
        WHERE (e.phase = 'action' AND s.state <> 'completed') OR (e.phase = 'compensation' AND s.comp_state IS DISTINCT FROM 'compensated')`,
    );
    expect(unrecorded.rows).toEqual([]);
    const missing = await db.query(
      `SELECT s.saga_id, s.step_name FROM saga_steps s
        WHERE (s.state = 'completed' AND NOT EXISTS (SELECT 1 FROM test_effects e WHERE e.saga_id = s.saga_id AND e.step = s.step_name AND e.phase = 'action'))
           OR (s.comp_state = 'compensated' AND NOT EXISTS (SELECT 1 FROM test_effects e WHERE e.saga_id = s.saga_id AND e.step = s.step_name AND e.phase = 'compensation'))`,
    );
    expect(missing.rows).toEqual([]);
    const late = await db.query(
      `SELECT r.* FROM saga_runs r JOIN saga_steps s ON s.saga_id = r.saga_id AND s.step_name = r.step
        WHERE (r.phase = 'action' AND s.state = 'completed' AND r.at > s.completed_at)
           OR (r.phase = 'compensation' AND s.comp_state = 'compensated' AND r.at > s.compensated_at)`,
    );
    expect(late.rows).toEqual([]);
    const runs = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM saga_runs')).rows[0]!.n);
    const effects = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM test_effects')).rows[0]!.n);
    return { runs, effects };
  }

  it(`${SAGAS} sagas with random failures while workers are killed at random: each ends completed, compensated or failed as its failures say, no effect twice, none stuck`, { timeout: 240_000 }, async () => {
    prefix = uniquePrefix('sagakill');
    await Promise.all([worker(), worker(), worker()]);
    await startProducer();
    const expected = new Map<string, string>();
    const startAll = (async () => {
      for (let i = 0; i < SAGAS; i++) {
        const r = Math.random();
        const context: Record<string, unknown> = { n: i, vip: Math.random() < 0.3 };
        let outcome = 'completed';
        if (r < 0.2) {
          context.fail_step = ['charge', 'notify', 'ship'][i % 3];
          outcome = 'compensated';
          if (r < 0.04) {
            context.fail_comp = 'reserve';
            outcome = 'failed';
          }
        }
        expected.set(await producer.startSaga({ sagaType: 'kill', context }), outcome);
        if (i % 50 === 49) await new Promise((res) => setTimeout(res, 30));
      }
    })();
    let kills = 0;
    let killedWhileActive = 0;
    const replacements: Promise<unknown>[] = [];
    const deadline = Date.now() + 150_000;
    for (;;) {
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 500));
      const s = await statuses();
      const active = (s.pending ?? 0) + (s.running ?? 0) + (s.compensating ?? 0);
      if (active === 0 && expected.size === SAGAS) break;
      if (Date.now() > deadline) break;
      if (kills < 4) {
        const victim = children[Math.floor(Math.random() * children.length)]!;
        await kill(victim);
        kills++;
        if (active > 0) killedWhileActive++;
        // The replacement starts in the background while the killing goes on; it may itself
        // be killed before it is ready, which is one more fault, not a test failure.
        replacements.push(worker().catch(() => undefined));
      }
    }
    await startAll;
    await Promise.all(replacements);
    const final = await statuses();
    console.log(`saga kill test: ${kills} kills (${killedWhileActive} with sagas in flight), final statuses ${JSON.stringify(final)}`);
    expect(killedWhileActive).toBeGreaterThan(0);
    expect((final.pending ?? 0) + (final.running ?? 0) + (final.compensating ?? 0)).toBe(0);
    const { rows } = await db.query<{ id: string; status: string }>('SELECT id, status FROM sagas');
    const wrong = rows.filter((r) => expected.get(r.id) !== r.status).map((r) => `${r.id}: ${r.status}, expected ${expected.get(r.id)}`);
    expect(wrong).toEqual([]);
    expect(rows).toHaveLength(SAGAS);
    const { runs, effects } = await checkInvariants();
    // Steps a killed worker left running, re-run (and compensated if the saga failed) by another.
    const abandoned = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM saga_steps WHERE uncertain')).rows[0]!.n);
    console.log(`saga kill test: ${runs} handler runs for ${effects} effects; ${abandoned} steps abandoned mid-run by a killed worker and run again`);
    expect(abandoned).toBeGreaterThan(0);
  });

  it('two processes recovering the same abandoned sagas at once: one advances each saga, every effect once', { timeout: 120_000 }, async () => {
    prefix = uniquePrefix('sagarec');
    await db.query('TRUNCATE sagas, saga_steps, test_effects, saga_runs');
    const wide = { SAGA_WORKER_COUNT: '40' };
    const first = await worker(wide);
    await startProducer();
    const ids = await Promise.all(Array.from({ length: 30 }, (_, n) => producer.startSaga({ sagaType: 'kill', context: { n, slow_step: 'ship', slow_ms: 3_000 } })));
    await eventually(
      async () => Number((await db.query<{ n: string }>(`SELECT count(DISTINCT saga_id) AS n FROM saga_runs WHERE step = 'ship'`)).rows[0]!.n) === ids.length,
      30_000,
      50,
      'every saga in its slow step',
    );
    await kill(first);
    const before = new Map((await db.query<{ id: string; epoch: string }>('SELECT id, epoch FROM sagas')).rows.map((r) => [r.id, Number(r.epoch)]));
    // Two independent recoveries of every saga, as if two sweeps had found them: both
    // processes then try to take the same sagas at the same moment.
    const q = new Queue(sagaStepQueue.name, { connection: new Redis(redisUrl, { maxRetriesPerRequest: null }), prefix });
    for (const id of ids) for (const tag of ['x', 'y']) await enqueueSagaResume(q, id, `contend-${tag}`);
    await q.close();
    const [a, b] = await Promise.all([worker(wide), worker(wide)]);
    await eventually(async () => ((await statuses()).completed === ids.length ? true : undefined), 60_000, 200, 'all completed after recovery');
    await checkInvariants();
    // The abandoned step was run again (its first run died with the process), yet took effect once.
    const shipRuns = await db.query<{ n: string; pids: number }>(`SELECT count(*) AS n, count(DISTINCT pid)::int AS pids FROM saga_runs WHERE step = 'ship'`);
    expect(Number(shipRuns.rows[0]!.n)).toBeGreaterThanOrEqual(2 * ids.length);
    expect(shipRuns.rows[0]!.pids).toBeGreaterThanOrEqual(2);
    // Both recovering processes contended for the same sagas, yet each saga's abandoned step
    // was re-run by exactly one of them (the lease holder), never by both.
    const rerun = await db.query<{ saga_id: string; n: number }>(
      `SELECT saga_id, count(*)::int AS n FROM saga_runs WHERE step = 'ship' AND phase = 'action' AND pid = ANY($1::int[]) GROUP BY saga_id`,
      [[a.pid, b.pid]],
    );
    expect(rerun.rows).toHaveLength(ids.length);
    expect(rerun.rows.filter((r) => r.n !== 1)).toEqual([]);
    const after = await db.query<{ id: string; epoch: string }>('SELECT id, epoch FROM sagas');
    expect(after.rows.every((r) => Number(r.epoch) > before.get(r.id)!)).toBe(true);
  });
});
