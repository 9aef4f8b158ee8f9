/**
 * Runtime benchmark: noop jobs through an actor Mailbox beside a bare BullMQ
 * Worker with the same concurrency, batch jobs of 1,000 items, and the rx
 * bridge's items/s into a queue. Redis is REDIS_URL or a spawned redis-server.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { randomBytes } from 'node:crypto';
import { defineQueue, QueueRegistry, type QueueDefinition } from '../../queues/index.js';
import { createLogger, DeadLetters, Mailbox, Metrics, QueueSet, RxQueueBridge, pausableFrom } from '../../runtime/index.js';
import { startRedis } from '../services/redis.js';
import { printTable, round, scaled, SCALE, timed } from './support.js';

const CONCURRENCY = 100;
const NOOP_JOBS = scaled(60_000, 1_000);
const BATCH_JOBS = scaled(300, 10);
const BATCH_ITEMS = 1_000;
const RX_ITEMS = scaled(2_000_000, 10_000);
const ROUNDS = 2;

const redisHandle = await startRedis({ mode: 'test' });
const connection = new Redis(redisHandle.url, { maxRetriesPerRequest: null });
const log = createLogger('silent');
const metrics = new Metrics({ defaultMetrics: false });
const prefix = `bench-${randomBytes(4).toString('hex')}`;
const jobOpts = { removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } };

const noopQueue = defineQueue({ name: 'bench.noop', description: 'noop jobs', schema: z.object({ i: z.number() }), jobOptions: jobOpts });
const batchQueue = defineQueue({
  name: 'bench.batch',
  description: 'batches',
  schema: z.object({ items: z.array(z.object({ id: z.number(), v: z.string() })) }),
  jobOptions: jobOpts,
});
const rxQueue = defineQueue({ name: 'bench.rx', description: 'rx bridge target', schema: z.object({ seq: z.number(), items: z.array(z.number()) }), jobOptions: jobOpts });
const registry = new QueueRegistry([noopQueue, batchQueue, rxQueue]);

async function fill(queueName: string, count: number, data: (i: number) => unknown, runPrefix: string): Promise<void> {
  const q = new Queue(queueName, { connection, prefix: runPrefix, defaultJobOptions: jobOpts });
  for (let i = 0; i < count; i += 1000) {
    await q.addBulk(Array.from({ length: Math.min(1000, count - i) }, (_, k) => ({ name: 'j', data: data(i + k) })));
  }
  await q.close();
}

function whenDone(count: number, on: (cb: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    let n = 0;
    on(() => {
      if (++n === count) resolve();
    });
  });
}

async function rawRun(queueName: string, count: number, data: (i: number) => unknown, work: (d: unknown) => void = () => undefined): Promise<number> {
  const runPrefix = `${prefix}-raw-${randomBytes(3).toString('hex')}`;
  await fill(queueName, count, data, runPrefix);
  const worker = new Worker(queueName, async (job) => work(job.data), { connection, prefix: runPrefix, concurrency: CONCURRENCY, autorun: false });
  const done = whenDone(count, (cb) => worker.on('completed', cb));
  const { seconds } = await timed(async () => {
    void worker.run();
    await done;
  });
  await worker.close();
  return count / seconds;
}

async function mailboxRun<T>(def: QueueDefinition<T>, count: number, data: (i: number) => unknown, work: (d: T) => void = () => undefined): Promise<number> {
  const runPrefix = `${prefix}-mbx-${randomBytes(3).toString('hex')}`;
  await fill(def.name, count, data, runPrefix);
  const queues = new QueueSet(registry, connection, runPrefix);
  const mailbox = new Mailbox(def, async (d) => work(d), { connection, prefix: runPrefix, metrics, deadLetters: new DeadLetters(queues), log }, { concurrency: CONCURRENCY });
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const before = (await metrics.jobsProcessed.get()).values.find((v) => v.labels.queue === def.name)?.value ?? 0;
  const timer = setInterval(async () => {
    const now = (await metrics.jobsProcessed.get()).values.find((v) => v.labels.queue === def.name)?.value ?? 0;
    if (now - before >= count) resolveDone();
  }, 5);
  const { seconds } = await timed(async () => {
    await mailbox.start((err) => {
      throw err;
    });
    await done;
  });
  clearInterval(timer);
  await mailbox.stop(10_000);
  await queues.close();
  return count / seconds;
}

const items = (n: number) => Array.from({ length: BATCH_ITEMS }, (_, k) => ({ id: n * BATCH_ITEMS + k, v: 'value' }));
const sumItems = (d: unknown) => {
  let s = 0;
  for (const it of (d as { items: Array<{ id: number }> }).items) s += it.id;
  return s;
};

const rows: Array<Record<string, string | number>> = [];
const best = { raw: 0, mailbox: 0, rawBatch: 0, mailboxBatch: 0 };
// Alternate the two, best of ROUNDS each, so drift on a shared machine hits both alike.
for (let r = 0; r < ROUNDS; r++) {
  best.raw = Math.max(best.raw, await rawRun('bench.noop', NOOP_JOBS, (i) => ({ i })));
  best.mailbox = Math.max(best.mailbox, await mailboxRun(noopQueue, NOOP_JOBS, (i) => ({ i })));
  best.rawBatch = Math.max(best.rawBatch, await rawRun('bench.batch', BATCH_JOBS, (i) => ({ items: items(i) }), sumItems));
  best.mailboxBatch = Math.max(best.mailboxBatch, await mailboxRun(batchQueue, BATCH_JOBS, (i) => ({ items: items(i) }), sumItems));
}
rows.push({ case: 'noop jobs, bare BullMQ Worker', jobs: NOOP_JOBS, 'jobs/s': round(best.raw), 'items/s': round(best.raw) });
rows.push({ case: 'noop jobs, actor Mailbox', jobs: NOOP_JOBS, 'jobs/s': round(best.mailbox), 'items/s': round(best.mailbox) });
rows.push({ case: `batch jobs (${BATCH_ITEMS} items), bare BullMQ`, jobs: BATCH_JOBS, 'jobs/s': round(best.rawBatch), 'items/s': round(best.rawBatch * BATCH_ITEMS) });
rows.push({ case: `batch jobs (${BATCH_ITEMS} items), Mailbox (validated)`, jobs: BATCH_JOBS, 'jobs/s': round(best.mailboxBatch), 'items/s': round(best.mailboxBatch * BATCH_ITEMS) });

// rx bridge: items from an in-memory source into queue jobs of 1,000 items.
const rxPrefix = `${prefix}-rx`;
const rxQueues = new QueueSet(registry, connection, rxPrefix);
const bridge = new RxQueueBridge<number>(rxQueues, metrics, log, {
  name: 'bench',
  queue: 'bench.rx',
  toJobData: (batch, seq) => ({ seq, items: batch }),
  batchSize: 1_000,
  maxInFlight: 8,
  highWaterMark: 1_000_000,
});
function* numbers() {
  for (let i = 0; i < RX_ITEMS; i++) yield i;
}
const rx = await timed(() => bridge.run(pausableFrom(numbers(), 2_000)));
const rxPerSecond = rx.value.items / rx.seconds;
rows.push({ case: 'rx bridge into queue (batches of 1000)', jobs: rx.value.batches, 'jobs/s': round(rx.value.batches / rx.seconds), 'items/s': round(rxPerSecond) });

await rxQueues.close();
connection.disconnect();
await redisHandle.stop();

const ratio = best.mailbox / best.raw;
console.log(`\nruntime benchmark (BENCH_SCALE=${SCALE}, concurrency ${CONCURRENCY}, best of ${ROUNDS} alternating rounds)\n`);
printTable(rows);
console.log(`\nmailbox / bare BullMQ: ${(ratio * 100).toFixed(1)}% (target >= 90%); rx bridge: ${round(rxPerSecond)} items/s (target >= 200000)\n`);
console.log(
  JSON.stringify({
    bench: 'runtime',
    scale: SCALE,
    mailbox_jobs_per_s: round(best.mailbox),
    raw_jobs_per_s: round(best.raw),
    ratio: round(ratio, 3),
    batch_mailbox_jobs_per_s: round(best.mailboxBatch),
    batch_raw_jobs_per_s: round(best.rawBatch),
    batch_ratio: round(best.mailboxBatch / best.rawBatch, 3),
    batch_items_per_s: round(best.mailboxBatch * BATCH_ITEMS),
    rx_items_per_s: round(rxPerSecond),
  }),
);
process.exit(0);
