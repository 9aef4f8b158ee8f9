/**
 * Sagas benchmark: 3-step sagas with no-op handlers, run by saga-coordinator worker
 * process(es) (test/fixtures/process.ts sagas, the real actor), started from this process
 * through the library API (starts made together share one INSERT and one queue round trip).
 * (a) Throughput: SAGAS sagas started as fast as 64 concurrent callers can, timed from the
 *     first start to the last completion (read from PostgreSQL).
 * (b) Latency at an offered load of RATE sagas/s for DURATION s: start -> completed, from
 *     the saga's own created_at/finished_at in PostgreSQL.
 * Baseline, same run: a bare BullMQ chain of 3 jobs per saga (each job adds the next), no
 * PostgreSQL, worker in this process with the same concurrency.
 * BENCH_SCALE scales the sizes; SAGA_BENCH_WORKERS sets worker processes (default 1).
 */
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createLogger } from '../../runtime/index.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { SagaOrchestrator } from '../../actors/saga-coordinator/index.js';
import { startPostgres } from '../services/postgres.js';
import { startRedis } from '../services/redis.js';
import { startFixture, type Child } from '../../test/support/child.js';
import { printTable, round, scaled, SCALE } from './support.js';
import { clockTicks, cpuSample, type CpuSample } from './proc.js';

const SAGAS = scaled(10_000, 200);
const RATE = 200;
const DURATION_S = Math.max(2, Math.round(10 * SCALE));
const CALLERS = 64;
const CONCURRENCY = 64;
const WORKERS = Number(process.env.SAGA_BENCH_WORKERS ?? 1);
const note = (m: string) => process.stderr.write(`[sagas bench] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HANDLERS = fileURLToPath(new URL('./saga-noop-handlers.ts', import.meta.url));

const pgServer = await startPostgres({ mode: 'test' });
const redisServer = await startRedis({ mode: 'test' });
const log = createLogger('silent');
await migrateDatabase('postgres', pgServer.url, log);
const db = new pg.Pool({ connectionString: pgServer.url, max: 4 });
const children: Child[] = [];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function completedCount(): Promise<number> {
  return Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM sagas WHERE status = 'completed'`)).rows[0]!.n);
}

/**
 * Polls the completed count: every 20 ms near the end (the end time is what is measured),
 * every 500 ms before, so that a count over the whole table, 50 times a second, is not
 * itself a sizeable share of PostgreSQL's CPU in the figures.
 */
async function waitCompleted(total: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let done = await completedCount(); done < total; done = await completedCount()) {
    if (Date.now() > deadline) throw new Error(`only ${done} of ${total} sagas completed within ${timeoutMs} ms`);
    await sleep(total - done > Math.max(50, total / 20) ? 500 : 20);
  }
}

/** Updates and HOT updates (no new index entries) so far of the saga tables. */
async function updateCounts(): Promise<{ upd: number; hot: number; xacts: number }> {
  const { rows } = await db.query<{ upd: string; hot: string; xacts: string }>(
    `SELECT sum(n_tup_upd) AS upd, sum(n_tup_hot_upd) AS hot,
            (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()) AS xacts
       FROM pg_stat_user_tables WHERE relname IN ('sagas', 'saga_steps')`,
  );
  return { upd: Number(rows[0]!.upd), hot: Number(rows[0]!.hot), xacts: Number(rows[0]!.xacts) };
}

/** Samples what PostgreSQL backends wait on, and in which statement (pg_stat_activity), every 100 ms until stopped. */
function sampleWaits(): () => Promise<string> {
  const counts = new Map<string, number>();
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await db.query<{ w: string; n: string }>(
        `SELECT coalesce(wait_event_type || ':' || wait_event, 'on CPU') || ' [' || left(regexp_replace(query, '\\s+', ' ', 'g'), 48) || ']' AS w,
                count(*) AS n FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid() GROUP BY 1`,
      );
      samples++;
      for (const r of rows) counts.set(r.w, (counts.get(r.w) ?? 0) + Number(r.n));
      await sleep(100);
    }
  })();
  return async () => {
    running = false;
    await loop;
    const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 6);
    return top.map(([w, n]) => `${w} ${round(n / Math.max(1, samples), 2)}`).join(', ') || 'none';
  };
}

/** Bare BullMQ: each "saga" is job 1 -> job 2 -> job 3, each job adding the next. */
async function baseline(count: number): Promise<number> {
  const connection = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  const prefix = 'bench-baseline';
  const queue = new Queue('chain', { connection, prefix, defaultJobOptions: { removeOnComplete: true } });
  let done = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  const worker = new Worker<{ n: number; step: number }>(
    'chain',
    async (job) => {
      if (job.data.step < 3) await queue.add('s', { n: job.data.n, step: job.data.step + 1 });
      else if (++done === count) resolveAll();
    },
    { connection, prefix, concurrency: CONCURRENCY },
  );
  const started = Date.now();
  let next = 0;
  await Promise.all(Array.from({ length: CALLERS }, async () => {
    while (next < count) await queue.add('s', { n: next++, step: 1 });
  }));
  await all;
  const seconds = (Date.now() - started) / 1000;
  await worker.close();
  await queue.close();
  connection.disconnect();
  return count / seconds;
}

/** CPU milliseconds per saga of each part (and of the whole machine) between two samples. */
function cpuPerSaga(a: CpuSample | undefined, b: CpuSample | undefined): Record<string, number> {
  if (!a || !b) return {};
  const out: Record<string, number> = {};
  for (const [part, t] of b.parts) out[part] = round(((t - (a.parts.get(part) ?? 0)) / clockTicks / SAGAS) * 1000, 3);
  out['machine (all processes)'] = round(((b.busy - a.busy) / clockTicks / SAGAS) * 1000, 3);
  return out;
}

try {
  const env = {
    REDIS_URL: redisServer.url,
    DATABASE_URL: pgServer.url,
    CONCORD_QUEUE_PREFIX: 'bench-sagas',
    SAGA_HANDLERS_MODULE: HANDLERS,
    SAGA_WORKER_COUNT: String(CONCURRENCY),
    SAGA_PG_POOL_SIZE: '16',
    LOG_LEVEL: 'info',
    KAFKA_BROKERS: '',
    ...Object.fromEntries(['OUTBOX_ENABLED', 'SYNC_EVENTS_ENABLED', 'SEQUENCES_ENABLED', 'CQRS_ENABLED', 'DATA_SYNC_ENABLED', 'CDC_ENABLED'].map((k) => [k, 'false'])),
  };
  for (let i = 0; i < WORKERS; i++) children.push(startFixture('sagas', env));
  await Promise.all(children.map((c) => c.waitFor((l) => l.msg === 'saga orchestrator running', 60_000)));
  const producer = new SagaOrchestrator('bench', { databaseUrl: pgServer.url, redisUrl: redisServer.url, prefix: 'bench-sagas', log, pgPoolSize: 16 });

  note(`warm-up, then (a) ${SAGAS} sagas as fast as possible with ${WORKERS} worker process(es)`);
  for (let i = 0; i < 200; i++) await producer.startSaga({ sagaType: 'bench3', context: { warm: i } });
  await waitCompleted(200, 60_000);
  await db.query('TRUNCATE sagas CASCADE');
  const labels = new Map(children.map((c, i) => [c.pid, `worker ${i + 1}`]));
  const cpu0 = cpuSample(labels, 'bench (producer)');
  const stopWaits = sampleWaits();
  const upd0 = await updateCounts();
  const t0 = Date.now();
  let started = 0;
  await Promise.all(Array.from({ length: CALLERS }, async () => {
    while (started < SAGAS) {
      started++;
      await producer.startSaga({ sagaType: 'bench3', context: { n: started } });
    }
  }));
  const startSeconds = (Date.now() - t0) / 1000;
  await waitCompleted(SAGAS, 300_000);
  const throughput = SAGAS / ((Date.now() - t0) / 1000);
  const cpu1 = cpuSample(labels, 'bench (producer)');
  const cpuMs = cpuPerSaga(cpu0, cpu1);
  const waits = await stopWaits();
  note(`(a) active PostgreSQL backends per sample, by wait: ${waits}`);

  note(`(b) ${RATE} sagas/s offered for ${DURATION_S} s`);
  await db.query('TRUNCATE sagas CASCADE');
  const offered = RATE * DURATION_S;
  const begin = Date.now();
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < offered; i++) {
    const due = begin + (i * 1000) / RATE;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    pending.push(producer.startSaga({ sagaType: 'bench3', context: { n: i } }));
  }
  await Promise.all(pending);
  await waitCompleted(offered, 120_000);
  const lat = (await db.query<{ ms: number }>(`SELECT (extract(epoch FROM finished_at - created_at) * 1000)::float8 AS ms FROM sagas`)).rows.map((r) => r.ms).sort((a, b) => a - b);

  note('baseline: bare BullMQ chains of 3 jobs');
  const base = await baseline(SAGAS);
  await producer.stop();
  // Over (a) and (b): idle backends flush their table statistics within about 10 s.
  await sleep(10_000);
  const upd1 = await updateCounts();
  const updated = upd1.upd - upd0.upd;
  // Every coordinator statement outside a handler's transaction is its own transaction, so
  // this counts round trips to PostgreSQL per saga (plus the bench's own few polls).
  const updates = { per_saga: round(updated / (SAGAS + offered), 2), hot_share: round((upd1.hot - upd0.hot) / Math.max(1, updated), 2), xacts_per_saga: round((upd1.xacts - upd0.xacts) / (SAGAS + offered), 2) };

  printTable([
    { measure: `sagas completed/s (${SAGAS}, ${WORKERS} worker proc, ${CONCURRENCY} concurrent steps)`, value: round(throughput), unit: 'sagas/s' },
    { measure: 'step jobs/s (3 per saga)', value: round(throughput * 3), unit: 'jobs/s' },
    { measure: 'start calls/s (INSERT + queue add)', value: round(SAGAS / startSeconds), unit: 'sagas/s' },
    { measure: `latency p50 at ${RATE} sagas/s offered`, value: round(percentile(lat, 50), 1), unit: 'ms' },
    { measure: `latency p99 at ${RATE} sagas/s offered`, value: round(percentile(lat, 99), 1), unit: 'ms' },
    { measure: 'row updates per saga in (a) and (b) (sagas + saga_steps)', value: updates.per_saga, unit: 'rows' },
    { measure: 'share of those that were HOT (no index writes)', value: updates.hot_share, unit: 'ratio' },
    { measure: 'PostgreSQL transactions per saga in (a) and (b)', value: updates.xacts_per_saga, unit: 'xacts' },
    ...Object.entries(cpuMs).map(([part, ms]) => ({ measure: `CPU per saga in (a): ${part}`, value: ms, unit: 'ms' })),
    { measure: 'baseline: bare BullMQ 3-job chains/s, no PostgreSQL', value: round(base), unit: 'chains/s' },
    { measure: 'sagas/s as a share of the baseline', value: round(throughput / base, 2), unit: 'ratio' },
  ]);
  console.log(
    JSON.stringify({
      bench: 'sagas',
      sagas_per_s: round(throughput),
      latency_p50_ms: round(percentile(lat, 50), 1),
      latency_p99_ms: round(percentile(lat, 99), 1),
      offered_per_s: RATE,
      sagas: SAGAS,
      worker_processes: WORKERS,
      baseline_bullmq_chains_per_s: round(base),
      ratio_to_baseline: round(throughput / base, 2),
      cpu_ms_per_saga: cpuMs,
      pg_active_backends_by_wait: waits,
      row_updates_per_saga: updates.per_saga,
      hot_update_share: updates.hot_share,
      pg_transactions_per_saga: updates.xacts_per_saga,
      scale: SCALE,
    }),
  );
} finally {
  for (const c of children) {
    c.kill('SIGKILL');
    await c.exited;
  }
  await db.end();
  await redisServer.stop();
  await pgServer.stop();
}
