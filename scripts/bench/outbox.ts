/**
 * Outbox benchmark: 500,000 events over 10,000 aggregates enqueued in business transactions
 * (100 events each, beside 100 business rows), relayed to Kafka by the outbox relay running in
 * a process of its own (test/fixtures/process.ts outbox, the real actor), and consumed back by a
 * kafkajs consumer in a third process (outbox-consumer.ts) that checks per-aggregate order.
 * Ceiling: the bare kafkajs producer sending as many records of the same size, in batches of
 * the relay's batch size, with the relay's settings (idempotent, acks -1, one request in flight).
 * Without Kafka (no Java, see scripts/services/kafka.ts) it measures the Redis Streams broker.
 *
 * Delay: from just before a transaction's COMMIT is sent (its events cannot be visible earlier,
 * so the figure never flatters) to the consumer's first receipt of the event.
 * End to end: events / (first COMMIT -> last event received).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Redis } from 'ioredis';
import { CompressionTypes, Kafka, Partitioners, logLevel } from 'kafkajs';
import { createLogger } from '../../runtime/index.js';
import { enqueueMany, type OutboxEvent } from '../../queues/index.js';
import { streamKey } from '../../actors/outbox-relay/redis-streams-broker.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { startPostgres, type PostgresHandle } from '../services/postgres.js';
import { startRedis, type RedisHandle } from '../services/redis.js';
import { startKafka, type KafkaHandle } from '../services/kafka.js';
import { startFixture, type Child } from '../../test/support/child.js';
import type { ConsumerReport, ConsumerStart, FromConsumer, ToConsumer } from './outbox-consumer.js';
import { printTable, round, scaled, SCALE, timed } from './support.js';
import { cleanupRegistry, clockTicks, cpuSample, percentile, procPeakRss, type CpuSample } from './proc.js';

const EVENTS = scaled(500_000, 2_000);
const AGGREGATES = scaled(10_000, 40);
const TXN_EVENTS = 100;
const PRODUCERS = 4;
/** Kafka partitions of the topics: per-key order is then more than one log's order. */
const TOPIC_PARTITIONS = 8;
const envInt = (name: string, fallback: number) => {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${process.env[name]}: expected a positive integer`);
  return n;
};
const BATCH = envInt('OUTBOX_BATCH_SIZE', 2000);
const RELAY_CONCURRENCY = envInt('OUTBOX_RELAY_CONCURRENCY', 2);
const POLLING_MS = envInt('OUTBOX_POLLING_INTERVAL_MS', 100);
/** Give up on the stragglers after this long without a new event at the consumer. */
const STALL_MS = 60_000;
const TARGET_PER_S = 30_000;
const TXNS = Math.ceil(EVENTS / TXN_EVENTS);

const log = createLogger('silent');
const note = (m: string) => process.stderr.write(`[outbox bench] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// --- the workload ---------------------------------------------------------------------------------
// Producer p owns the aggregates a with a % PRODUCERS === p and runs the transactions
// x with x % PRODUCERS === p, one after another, so an aggregate's sequence numbers n follow
// its commit order (as a row lock on the aggregate would ensure in a real service).
const aggregateOf = new Int32Array(EVENTS);
const seqOf = new Int32Array(EVENTS);
{
  let seed = 0x5eed;
  const random = () => {
    // mulberry32: a fixed, cheap sequence, so every run has the same workload
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const count = new Int32Array(AGGREGATES);
  for (let i = 0; i < EVENTS; i++) {
    const p = Math.floor(i / TXN_EVENTS) % PRODUCERS;
    const owned = Math.ceil((AGGREGATES - p) / PRODUCERS);
    const a = p + PRODUCERS * Math.floor(random() * owned);
    aggregateOf[i] = a;
    seqOf[i] = ++count[a]!;
  }
}
const aggregateId = (a: number) => `acct-${String(a).padStart(6, '0')}`;
const amountOf = (i: number) => ((i * 7919) % 100_000) / 100;
/** What the consumer checks (i, a, n) plus a little business data: about 110 bytes of JSON. */
const payloadOf = (i: number) => ({ i, a: aggregateOf[i]!, n: seqOf[i]!, amount: amountOf(i).toFixed(2), currency: 'EUR', memo: 'bench transfer posted' });
const EVENT_TYPE = 'ledger.entry_posted';
const AGGREGATE_TYPE = 'account';

// --- teardown -------------------------------------------------------------------------------------
const cleanups = cleanupRegistry(note);
const cleanup = cleanups.run;

function stopChild(proc: ChildProcess, exited: Promise<unknown>, graceMs: number): () => Promise<unknown> {
  return async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
}

// --- the ceiling ----------------------------------------------------------------------------------
/** The records the relay makes of our events (kafka-broker.ts toRecord), built the same way. */
function kafkaRecord(i: number) {
  const key = aggregateId(aggregateOf[i]!);
  return {
    key,
    value: JSON.stringify(payloadOf(i)),
    headers: { event_id: randomUUID(), event_type: EVENT_TYPE, aggregate_type: AGGREGATE_TYPE, aggregate_id: key },
  };
}

async function kafkaCeiling(brokers: string[], topic: string): Promise<number> {
  const kafka = new Kafka({ clientId: 'concord-bench-ceiling', brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    const { seconds } = await timed(async () => {
      for (let from = 0; from < EVENTS; from += BATCH) {
        const messages = [];
        for (let i = from; i < Math.min(EVENTS, from + BATCH); i++) messages.push(kafkaRecord(i));
        await producer.sendBatch({ topicMessages: [{ topic, messages }], acks: -1, compression: CompressionTypes.None });
      }
    });
    return EVENTS / seconds;
  } finally {
    await producer.disconnect();
  }
}

/** The Redis Streams broker's request (one MULTI of XADDs per batch), bare. */
async function redisCeiling(redisUrl: string, stream: string): Promise<number> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  try {
    const { seconds } = await timed(async () => {
      for (let from = 0; from < EVENTS; from += BATCH) {
        const tx = redis.multi();
        for (let i = from; i < Math.min(EVENTS, from + BATCH); i++) {
          const key = aggregateId(aggregateOf[i]!);
          tx.xadd(stream, '*', 'event_id', randomUUID(), 'key', key, 'event_type', EVENT_TYPE, 'aggregate_type', AGGREGATE_TYPE, 'headers', '{}', 'payload', JSON.stringify(payloadOf(i)));
        }
        await tx.exec();
      }
    });
    return EVENTS / seconds;
  } finally {
    redis.disconnect();
  }
}

// --- the consumer process -----------------------------------------------------------------------------
interface ConsumerProcess {
  pid: number;
  ready: Promise<void>;
  report: Promise<ConsumerReport>;
  unique(): number;
  stop(): void;
}

function startConsumer(task: ConsumerStart): ConsumerProcess {
  const child = fork(fileURLToPath(new URL('./outbox-consumer.ts', import.meta.url)), [JSON.stringify(task)], {
    execArgv: ['--import', 'tsx'],
    serialization: 'advanced', // the receive times come back as a Float64Array
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  cleanups.add(stopChild(child, exited, 5_000));
  let unique = 0;
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const report = new Promise<ConsumerReport>((resolve, reject) => {
    child.on('message', (m: FromConsumer) => {
      if (m.type === 'ready') markReady();
      else if (m.type === 'progress') unique = m.unique;
      else if (m.type === 'done') resolve(m);
      else reject(new Error(`consumer failed: ${m.error}`));
    });
    void exited.then(() => reject(new Error(`consumer exited (code ${child.exitCode}) without a report`)));
  });
  return {
    pid: child.pid!,
    ready: Promise.race([ready, report.then(() => undefined)]),
    report,
    unique: () => unique,
    stop: () => void child.send({ type: 'stop' } satisfies ToConsumer),
  };
}

// --- producers ------------------------------------------------------------------------------------
const commitAt = new Float64Array(TXNS);
let committedTxns = 0;

async function produce(url: string, p: number, topic: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (let x = p; x < TXNS; x += PRODUCERS) {
      const from = x * TXN_EVENTS;
      const to = Math.min(EVENTS, from + TXN_EVENTS);
      const ids: string[] = [];
      const ns: number[] = [];
      const amounts: string[] = [];
      const events: OutboxEvent[] = [];
      for (let i = from; i < to; i++) {
        const payload = payloadOf(i);
        ids.push(aggregateId(payload.a));
        ns.push(payload.n);
        amounts.push(payload.amount);
        events.push({ topic, eventType: EVENT_TYPE, aggregateType: AGGREGATE_TYPE, aggregateId: aggregateId(payload.a), payload });
      }
      await client.query('BEGIN');
      await client.query('INSERT INTO bench_ledger (account_id, n, amount) SELECT * FROM unnest($1::text[], $2::int[], $3::numeric[])', [ids, ns, amounts]);
      await enqueueMany(client, events);
      commitAt[x] = Date.now();
      await client.query('COMMIT');
      committedTxns++;
    }
  } finally {
    await client.end();
  }
}

// --- the run --------------------------------------------------------------------------------------
const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${round(x * 100)}%`);
const mb = (b: number | undefined) => (b === undefined ? 'n/a' : round(b / 1024 / 1024, 1));

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);

try {
  const pgServer: PostgresHandle = await startPostgres({ mode: 'test' });
  cleanups.add(() => pgServer.stop());
  const redisServer: RedisHandle = await startRedis({ mode: 'test' });
  cleanups.add(() => redisServer.stop());
  const kafkaStart = await startKafka({ log: note });
  let kafka: KafkaHandle | undefined;
  if (kafkaStart.ok) {
    kafka = kafkaStart.handle;
    cleanups.add(() => kafka!.stop());
  } else {
    note(`Kafka is not available (${kafkaStart.reason}): measuring the Redis Streams broker instead`);
  }
  const broker = kafka ? 'kafka' : 'redis-streams';

  const dbUrl = (() => {
    const u = new URL(pgServer.url);
    u.pathname = '/bench_outbox';
    return u.toString();
  })();
  const admin = new pg.Client({ connectionString: pgServer.url });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS bench_outbox');
  await admin.query('CREATE DATABASE bench_outbox');
  await admin.end();
  await migrateDatabase('postgres', dbUrl, log);
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  cleanups.add(() => db.end());
  await db.query(`CREATE TABLE bench_ledger (account_id text NOT NULL, n integer NOT NULL, amount numeric(12, 2) NOT NULL,
                    posted_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (account_id, n))`);

  const run = randomBytes(3).toString('hex');
  const topic = `bench.outbox.${run}`;
  const ceilingTopic = `bench.outbox-ceiling.${run}`;
  const prefix = `bench-outbox-${run}`;

  // 1. The ceiling, alone on the machine.
  let ceilingPerS: number;
  const ceilingCpu0 = cpuSample(new Map(), 'producers (this process)');
  if (kafka) {
    const kadmin = new Kafka({ clientId: 'concord-bench-admin', brokers: kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await kadmin.connect();
    await kadmin.createTopics({ topics: [topic, ceilingTopic].map((t) => ({ topic: t, numPartitions: TOPIC_PARTITIONS, replicationFactor: 1 })), waitForLeaders: true });
    await kadmin.disconnect();
    note(`ceiling: bare kafkajs producer, ${EVENTS} records in batches of ${BATCH}`);
    ceilingPerS = await kafkaCeiling(kafka.brokers, ceilingTopic);
  } else {
    note(`ceiling: bare MULTI/XADD, ${EVENTS} records in batches of ${BATCH}`);
    ceilingPerS = await redisCeiling(redisServer.url, streamKey(prefix, ceilingTopic));
  }

  const ceilingCpu1 = cpuSample(new Map(), 'producers (this process)');

  // 2. The relay, in a process of its own (the real actor, configured by the environment).
  const relayEnv: Record<string, string> = {
    REDIS_URL: redisServer.url,
    DATABASE_URL: dbUrl,
    CONCORD_QUEUE_PREFIX: prefix,
    PORT: '0',
    AUTH_MODE: 'none',
    LOG_LEVEL: 'info', // the fixture's readiness line is at info; the relay logs nothing per batch
    DUCKDB_DATABASE_PATH: ':memory:',
    OUTBOX_ENABLED: 'true',
    OUTBOX_BATCH_SIZE: String(BATCH),
    OUTBOX_RELAY_CONCURRENCY: String(RELAY_CONCURRENCY),
    OUTBOX_POLLING_INTERVAL_MS: String(POLLING_MS),
    ...(kafka ? { KAFKA_BROKERS: kafka.brokers.join(',') } : {}),
  };
  const relay: Child = startFixture('outbox', relayEnv);
  cleanups.add(stopChild(relay.proc, relay.exited, 20_000));
  await relay.waitFor((l) => l.fixtureEvent === 'ready', 60_000);

  // 3. The consumer, subscribed before the first commit.
  const consumer = startConsumer(
    kafka
      ? { broker: 'kafka', brokers: kafka.brokers, topic, events: EVENTS, aggregates: AGGREGATES }
      : { broker: 'redis-streams', redisUrl: redisServer.url, stream: streamKey(prefix, topic), events: EVENTS, aggregates: AGGREGATES },
  );
  await consumer.ready;

  // 4. The producers, flat out; the relay and the consumer keep up as they can.
  note(`${EVENTS} events over ${AGGREGATES} aggregates, ${PRODUCERS} producers, transactions of ${TXN_EVENTS}; relay batch ${BATCH} x ${RELAY_CONCURRENCY} loops`);
  const labels = new Map([
    [relay.pid, 'relay'],
    [consumer.pid, 'consumer'],
  ]);
  const cpu0 = cpuSample(labels, 'producers (this process)');
  const producing = timed(() => Promise.all(Array.from({ length: PRODUCERS }, (_, p) => produce(dbUrl, p, topic))));
  const ticker = setInterval(() => note(`committed ${committedTxns * TXN_EVENTS} / consumed ${consumer.unique()} of ${EVENTS}`), 5_000);
  const produced = await producing;
  // Stragglers: ask for the report once nothing has arrived for STALL_MS.
  let lastCount = -1;
  let lastChange = Date.now();
  const watchdog = setInterval(() => {
    const now = consumer.unique();
    if (now !== lastCount) [lastCount, lastChange] = [now, Date.now()];
    else if (Date.now() - lastChange > STALL_MS) {
      note(`no new event for ${STALL_MS / 1000} s: stopping the consumer with ${now} of ${EVENTS}`);
      consumer.stop();
    }
  }, 1_000);
  const report = await consumer.report;
  clearInterval(watchdog);
  clearInterval(ticker);
  const cpu1 = cpuSample(labels, 'producers (this process)');

  // The relay marks a batch published after the broker's ack: let it finish, then look at the table.
  let statuses = new Map<string, number>();
  for (let waited = 0; waited < 10_000; waited += 200) {
    const rows = (await db.query<{ status: string; n: string }>('SELECT status, count(*)::text AS n FROM concord_outbox GROUP BY status')).rows;
    statuses = new Map(rows.map((r) => [r.status, Number(r.n)]));
    if (!statuses.has('pending')) break;
    await sleep(200);
  }
  const relayPeakRss = procPeakRss(relay.pid);
  const relayTrouble = relay.lines.filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal' || Number(l.level) >= 40);
  await cleanup();
  clearInterval(sampler);

  // --- figures ---
  const firstCommit = commitAt.reduce((m, t) => Math.min(m, t), Infinity);
  const delays = new Float64Array(report.unique);
  let lastReceived = 0;
  let k = 0;
  for (let i = 0; i < EVENTS; i++) {
    const at = report.receivedAt[i]!;
    if (at === 0) continue;
    lastReceived = Math.max(lastReceived, at);
    delays[k++] = at - commitAt[Math.floor(i / TXN_EVENTS)]!;
  }
  delays.sort();
  const missing = EVENTS - report.unique;
  const e2eSeconds = (lastReceived - firstCommit) / 1000;
  const eventsPerS = report.unique / e2eSeconds;
  const enqueuePerS = EVENTS / produced.seconds;
  // CPU seconds by part over the run (first commit to last event consumed, give or take a second).
  const cpuSeconds = new Map<string, number>();
  if (cpu0 && cpu1) for (const [part, t] of cpu1.parts) cpuSeconds.set(part, (t - (cpu0.parts.get(part) ?? 0)) / clockTicks);
  const machineBusy = cpu0 && cpu1 ? (cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total) : undefined;
  // Whatever else ran on the machine meanwhile (another benchmark, a test run) took CPU from this one.
  const foreign = (a: CpuSample | undefined, b: CpuSample | undefined) => {
    if (!a || !b) return undefined;
    const ours = [...b.parts].reduce((sum, [part, t]) => sum + t - (a.parts.get(part) ?? 0), 0);
    return Math.max(0, (b.busy - a.busy - ours) / (b.total - a.total));
  };
  const foreignShare = foreign(cpu0, cpu1);
  const ceilingForeignShare = foreign(ceilingCpu0, ceilingCpu1);

  console.log(`\noutbox benchmark (BENCH_SCALE=${SCALE}, broker ${broker}, ${EVENTS} events over ${AGGREGATES} aggregates, ` +
    `${PRODUCERS} producers x transactions of ${TXN_EVENTS}, relay OUTBOX_BATCH_SIZE=${BATCH} x OUTBOX_RELAY_CONCURRENCY=${RELAY_CONCURRENCY}, ${TOPIC_PARTITIONS} partitions)\n`);
  printTable([
    { case: 'enqueue: business transactions committed', events: EVENTS, seconds: round(produced.seconds, 2), 'events/s': round(enqueuePerS) },
    { case: `end to end: first commit -> last event consumed`, events: report.unique, seconds: round(e2eSeconds, 2), 'events/s': round(eventsPerS) },
    { case: `ceiling: bare ${broker === 'kafka' ? 'kafkajs producer' : 'MULTI/XADD'} (batches of ${BATCH})`, events: EVENTS, seconds: round(EVENTS / ceilingPerS, 2), 'events/s': round(ceilingPerS) },
  ]);
  console.log('');
  printTable([
    { 'commit -> consumer delay': 'p50', ms: round(percentile(delays, 0.5)) },
    { 'commit -> consumer delay': 'p99', ms: round(percentile(delays, 0.99)) },
    { 'commit -> consumer delay': 'max', ms: round(percentile(delays, 1)) },
  ]);
  console.log(
    `\nconsumer: ${report.unique} distinct events, ${missing} missing, ${report.duplicates} duplicates (at-least-once), ` +
      `${report.orderViolations} per-aggregate order violations${report.malformed ? `, ${report.malformed} malformed records` : ''}`,
  );
  console.log(`outbox table after the run: ${[...statuses].map(([s, n]) => `${n} ${s}`).join(', ') || 'empty'}${relayTrouble.length ? `; relay logged ${relayTrouble.length} warnings/errors, first: ${JSON.stringify(relayTrouble[0])}` : ''}`);
  if (cpuSeconds.size > 0) {
    const cores = cpus().length;
    const runSeconds = cpu0 && cpu1 ? (cpu1.total - cpu0.total) / clockTicks / cores : NaN;
    console.log(`\nCPU from the first commit to the last event consumed (${round(runSeconds, 1)} s on ${cores} cores; machine busy ${pct(machineBusy)}):\n`);
    const row = (part: string, sec: number) => ({ part, 'cpu seconds': round(sec, 1), 'us per event': round((sec * 1e6) / EVENTS), 'share of the machine': pct(sec / (runSeconds * cores)) });
    const ours = [...cpuSeconds].reduce((sum, [, sec]) => sum + sec, 0);
    printTable([
      ...[...cpuSeconds].filter(([, sec]) => sec >= 0.05).sort((a, b) => b[1] - a[1]).map(([part, sec]) => row(part, sec)),
      row('all of this benchmark', ours),
      row('processes outside this benchmark', (foreignShare ?? 0) * runSeconds * cores),
    ]);
    const perEvent = ours / EVENTS;
    console.log(`\nat ${round(perEvent * 1e6)} us of CPU per event, ${cores} cores can carry at most ${round(cores / perEvent)} events/s end to end`);
  }
  for (const [what, x] of [['the run', foreignShare], ['the ceiling', ceilingForeignShare]] as const) {
    if (x !== undefined && x > 0.05) console.log(`WARNING: processes outside this benchmark used ${pct(x)} of the machine during ${what}: its figures are low`);
  }
  console.log(`peak RSS: bench process ${mb(peakRss)} MB, relay ${mb(relayPeakRss)} MB, consumer ${mb(report.peakRssBytes)} MB`);
  const met = eventsPerS >= TARGET_PER_S && report.orderViolations === 0 && missing === 0;
  console.log(`target: >= ${TARGET_PER_S} events/s end to end with per-aggregate order and nothing missing: ${met ? 'met' : 'MISSED'}\n`);
  console.log(
    JSON.stringify({
      bench: 'outbox',
      scale: SCALE,
      broker,
      events: EVENTS,
      aggregates: AGGREGATES,
      batch_size: BATCH,
      relay_concurrency: RELAY_CONCURRENCY,
      events_per_s: round(eventsPerS),
      enqueue_per_s: round(enqueuePerS),
      producer_ceiling_per_s: round(ceilingPerS),
      ratio_to_ceiling: round(eventsPerS / ceilingPerS, 3),
      delay_p50_ms: round(percentile(delays, 0.5)),
      delay_p99_ms: round(percentile(delays, 0.99)),
      delay_max_ms: round(percentile(delays, 1)),
      order_violations: report.orderViolations,
      duplicates: report.duplicates,
      missing,
      cpu_s: Object.fromEntries([...cpuSeconds].filter(([, sec]) => sec >= 0.05).map(([part, sec]) => [part.split(' ')[0], round(sec, 1)])),
      foreign_cpu_share: foreignShare === undefined ? null : round(foreignShare, 2),
      ceiling_foreign_cpu_share: ceilingForeignShare === undefined ? null : round(ceilingForeignShare, 2),
      peak_rss_mb: mb(peakRss),
      target_met: met,
    }),
  );
  process.exit(0);
} catch (err) {
  note(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await cleanup();
  process.exit(1);
}
