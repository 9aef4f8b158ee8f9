/**
 * Helper of the outbox benchmark (scripts/bench/outbox.ts), forked by it with an IPC channel:
 * the consumer side in a process of its own, so its receive times do not queue behind the
 * producers' work in the benchmark's event loop. It reads the topic from the beginning with a
 * fresh consumer group (Kafka) or XREAD from the start (Redis Streams), records each event's
 * first receive time, and checks per-aggregate order as it goes.
 *
 * Events carry `{ i, a, n }`: the event's index, its aggregate's index, and its sequence number
 * within the aggregate (1, 2, ...). Delivery is at-least-once, so an `i` seen before is a
 * duplicate; an `n` not above the highest seen for its aggregate that is NOT a duplicate is an
 * order violation.
 */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';

/** The consumer's task, as JSON in argv[2]. */
export type ConsumerStart = {
  events: number;
  aggregates: number;
} & ({ broker: 'kafka'; brokers: string[]; topic: string } | { broker: 'redis-streams'; redisUrl: string; stream: string });

/** Parent to child: `stop` asks for the report with whatever arrived by then. */
export type ToConsumer = { type: 'stop' };

export interface ConsumerReport {
  type: 'done';
  /** Per event index: first receive time (epoch ms, Date.now()), 0 if never received. */
  receivedAt: Float64Array;
  unique: number;
  duplicates: number;
  orderViolations: number;
  /** Records whose value was not an event of this run. */
  malformed: number;
  peakRssBytes: number;
}

/** Child to parent. */
export type FromConsumer = { type: 'ready' } | { type: 'progress'; unique: number } | ConsumerReport | { type: 'failed'; error: string };

const send = (m: FromConsumer) => new Promise<void>((resolve) => process.send!(m, undefined, {}, () => resolve()));

if (!process.send || !process.argv[2]) {
  console.error('outbox-consumer is a helper of the outbox benchmark: run `npm run bench -- outbox`');
  process.exit(2);
}

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);

const start = JSON.parse(process.argv[2]) as ConsumerStart;

const receivedAt = new Float64Array(start.events);
const maxN = new Int32Array(start.aggregates);
let unique = 0;
let duplicates = 0;
let orderViolations = 0;
let malformed = 0;
let finish!: () => void;
const finished = new Promise<void>((resolve) => (finish = resolve));
process.on('message', (m: ToConsumer) => {
  if (m.type === 'stop') finish();
});
process.on('disconnect', () => process.exit(1)); // the benchmark died: do not linger

function receive(value: string, at: number): void {
  let e: { i?: unknown; a?: unknown; n?: unknown };
  try {
    e = JSON.parse(value) as typeof e;
  } catch {
    malformed++;
    return;
  }
  const { i, a, n } = e;
  if (typeof i !== 'number' || typeof a !== 'number' || typeof n !== 'number' || !(i >= 0 && i < start.events) || !(a >= 0 && a < start.aggregates)) {
    malformed++;
    return;
  }
  if (receivedAt[i] !== 0) {
    duplicates++;
    return;
  }
  receivedAt[i] = at;
  unique++;
  if (n <= maxN[a]!) orderViolations++;
  else maxN[a] = n;
  if (unique === start.events) finish();
}

const progress = setInterval(() => void send({ type: 'progress', unique }), 1_000);

try {
  if (start.broker === 'kafka') {
    const kafka = new Kafka({ clientId: 'concord-bench-consumer', brokers: start.brokers, logLevel: logLevel.NOTHING });
    const consumer = kafka.consumer({ groupId: `bench-outbox-${randomBytes(4).toString('hex')}`, maxWaitTimeInMs: 50, maxBytesPerPartition: 4 * 1024 * 1024 });
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    let crash: unknown;
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart) {
        crash = payload.error;
        finish();
      }
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [start.topic], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        // A fetched batch arrives as a whole: one receive time for all of it.
        const at = Date.now();
        for (const m of batch.messages) receive(m.value?.toString() ?? '', at);
      },
    });
    await joined;
    await send({ type: 'ready' });
    await finished;
    await consumer.disconnect().catch(() => undefined);
    if (crash !== undefined) throw crash;
  } else {
    const redis = new Redis(start.redisUrl, { maxRetriesPerRequest: null });
    await send({ type: 'ready' });
    let last = '0';
    let done = false;
    void finished.then(() => (done = true));
    while (!done) {
      const res = await redis.xread('COUNT', 5_000, 'BLOCK', 100, 'STREAMS', start.stream, last);
      const at = Date.now();
      for (const [, entries] of res ?? []) {
        for (const [id, flat] of entries) {
          last = id;
          let payload = '';
          for (let f = 0; f + 1 < flat.length; f += 2) if (flat[f] === 'payload') payload = flat[f + 1]!;
          receive(payload, at);
        }
      }
    }
    redis.disconnect();
  }
  clearInterval(progress);
  clearInterval(sampler);
  await send({
    type: 'done',
    receivedAt,
    unique,
    duplicates,
    orderViolations,
    malformed,
    peakRssBytes: Math.max(peakRss, process.memoryUsage().rss),
  });
  // Stay until the benchmark ends us (or goes away): it reads this process's CPU time first.
} catch (err) {
  await send({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exit(1);
}
