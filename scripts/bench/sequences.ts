/**
 * Sequences benchmark.
 * (a) Numbers allocated per second by two processes on one stream (SequenceAllocator.next(),
 *     block allocation), beside raw Redis INCR from two processes (100 in flight each) in the same run.
 * (b) Klines ingested from Kafka to PostgreSQL per second: the topic is filled first, then a
 *     SEQUENCES_BENCH_WORKERS (default 2) worker processes (the real actor) consume it; timed from
 *     the first stored row to the last.
 *     Baseline: the same rows inserted straight into a scratch table, 5,000 per statement.
 *     CPU per kline by part (workers, postgres, redis, kafka, this process) and for the whole
 *     machine (other users of the machine included) over the timed span, from /proc.
 *     KLINES_INGEST_LANES is passed on to the workers; SEQUENCES_BENCH_WORKER_NODE_OPTIONS sets
 *     their NODE_OPTIONS (e.g. `--require` of a profiler hook; Node 20 refuses --cpu-prof there).
 *     Without Kafka (no Java) the part is skipped and says why.
 * (c) Missed API latency (HTTP, one client, keep-alive, the API in a `concord start --role api`
 *     process of its own; request sent to last byte received) for 1,000-row ranges on a klines table of
 *     10,000,000 rows (100 symbols x 100,000). Baseline: the same kind of ranges read straight
 *     through node-postgres (rows decoded, no HTTP), in the same run. Also reported: the API's own
 *     time per request from its access log (whole ms: handler, query, JSON; not the socket).
 *     SEQUENCES_BENCH_DUMP=<file> writes the API's log lines there (e.g. with NODE_OPTIONS
 *     `--require` of a hook calling v8.setFlagsFromString('--trace_gc'): its collections).
 * BENCH_SCALE scales every size; SEQUENCES_BENCH_PARTS (default a,b,c) picks parts.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Kafka, Partitioners, logLevel } from 'kafkajs';
import { createLogger } from '../../runtime/index.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { startPostgres } from '../services/postgres.js';
import { startRedis } from '../services/redis.js';
import { startKafka } from '../services/kafka.js';
import { startConcord, startFixture } from '../../test/support/child.js';
import { printTable, round, scaled, SCALE } from './support.js';
import { clockTicks, cpuSample, type CpuSample } from './proc.js';

const ALLOC_PER_PROCESS = scaled(2_000_000, 10_000);
const KLINES = scaled(200_000, 2_000);
const KLINE_SYMBOLS = 200;
const TABLE_SYMBOLS = 100;
const TABLE_PER_SYMBOL = scaled(100_000, 2_000);
const REQUESTS = scaled(1_000, 50);
const RANGE = 1_000;
/** Worker processes for (b): each joins the consumer group; one ingest batch at a time across them. */
const WORKERS = Number(process.env.SEQUENCES_BENCH_WORKERS ?? 2);
const PARTS = new Set((process.env.SEQUENCES_BENCH_PARTS ?? 'a,b,c').split(','));
const note = (m: string) => process.stderr.write(`[sequences bench] ${m}\n`);
const log = createLogger('silent');
const FIXTURE = fileURLToPath(new URL('../../test/fixtures/sequence-allocate.ts', import.meta.url));

/** GET `url` over `agent`; resolves with the whole body once its last byte is in, rejects on a non-200. */
function getBody(agent: http.Agent, url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`GET ${url}: ${res.statusCode} ${Buffer.concat(chunks).toString()}`))));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

function allocator(env: Record<string, string>): Promise<{ count: number; seconds: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], { env: { ...process.env, ...env, SEQ_OUTPUT: 'summary' }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim())) : reject(new Error(`allocator exited ${code}`))));
  });
}

/** Two processes at once; the rate is all numbers over the slower process's own time. */
async function twoProcesses(env: Record<string, string>): Promise<number> {
  const [a, b] = await Promise.all([allocator(env), allocator(env)]);
  return (a.count + b.count) / Math.max(a.seconds, b.seconds);
}

/** CPU µs per kline between two samples, by part (workers, postgres, redis, kafka, bench) and for the machine. */
function cpuPerKline(a: CpuSample | undefined, b: CpuSample | undefined, klines: number): Record<string, number> {
  if (!a || !b || klines === 0) return {};
  const us = (ticks: number) => round((ticks / clockTicks / klines) * 1e6, 1);
  const out: Record<string, number> = {};
  for (const [part, ticks] of b.parts) out[part] = us(ticks - (a.parts.get(part) ?? 0));
  out.machine_busy = us(b.busy - a.busy);
  return out;
}

const pgServer = await startPostgres({ mode: 'test' });
const redisServer = await startRedis({ mode: 'test' });
const admin = new pg.Client({ connectionString: pgServer.url });
await admin.connect();
await admin.query('DROP DATABASE IF EXISTS bench_sequences WITH (FORCE)');
await admin.query('CREATE DATABASE bench_sequences');
await admin.end();
const dbUrl = new URL(pgServer.url);
dbUrl.pathname = '/bench_sequences';
const url = dbUrl.toString();
await migrateDatabase('postgres', url, log);
const db = new pg.Pool({ connectionString: url, max: 4 });
const rows: Array<Record<string, string | number>> = [];
const result: Record<string, unknown> = { bench: 'sequences', scale: SCALE };

try {
  // (a) -------------------------------------------------------------------------------------
  if (PARTS.has('a')) {
    note(`(a) ${ALLOC_PER_PROCESS} numbers per process, two processes`);
    const base = { REDIS_URL: redisServer.url, DATABASE_URL: url, SEQ_STREAMS: 'BENCH', SEQ_COUNT: String(ALLOC_PER_PROCESS), SEQ_RESERVE: '100000', SEQ_BLOCK: '10000' };
    const alloc = await twoProcesses({ ...base, SEQ_PREFIX: 'bench-a', SEQ_MODE: 'next' });
    const incr = await twoProcesses({ ...base, SEQ_PREFIX: 'bench-incr', SEQ_MODE: 'incr', SEQ_CONCURRENCY: '100', SEQ_COUNT: String(Math.round(ALLOC_PER_PROCESS / 10)) });
    note(`(a) allocator ${round(alloc)}/s, raw INCR ${round(incr)}/s`);
    rows.push({ part: '(a) allocator next(), 2 processes, blocks of 10,000', figure: `${round(alloc)} numbers/s`, baseline: `raw INCR ${round(incr)}/s`, ratio: round(alloc / incr, 1), target: '>= 500,000/s' });
    Object.assign(result, { alloc_per_s: round(alloc), raw_incr_per_s: round(incr) });
  }

  // (b) -------------------------------------------------------------------------------------
  const kafka = PARTS.has('b') ? await startKafka({ log: note }) : ({ ok: false, reason: 'not selected' } as const);
  if (!kafka.ok) {
    note(`(b) skipped: ${kafka.reason}`);
    rows.push({ part: '(b) Kafka -> PostgreSQL', figure: `skipped: ${kafka.reason}`, baseline: '-', ratio: '-', target: '>= 50,000/s' });
    result.klines_per_s = null;
  } else {
    const brokers = kafka.handle.brokers;
    const topic = 'bench_market_data';
    const k = new Kafka({ clientId: 'bench', brokers, logLevel: logLevel.NOTHING });
    const kadmin = k.admin();
    await kadmin.connect();
    await kadmin.createTopics({ topics: [{ topic, numPartitions: 4, replicationFactor: 1 }], waitForLeaders: true });
    await kadmin.disconnect();
    const producer = k.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const T0 = 1_700_000_000_000;
    const make = (i: number) => {
      const s = `SYM${i % KLINE_SYMBOLS}`;
      const t = T0 + Math.floor(i / KLINE_SYMBOLS) * 60_000;
      return { key: s, value: JSON.stringify({ t, T: t + 59_999, s, o: '100.1', h: '101.2', l: '99.3', c: '100.4', v: '12.5' }) };
    };
    note(`(b) producing ${KLINES} klines`);
    for (let i = 0; i < KLINES; i += 10_000) await producer.send({ topic, messages: Array.from({ length: Math.min(10_000, KLINES - i) }, (_, j) => make(i + j)) });
    await producer.disconnect();
    const workers = Array.from({ length: WORKERS }, () => startFixture('sequences', {
      REDIS_URL: redisServer.url,
      DATABASE_URL: url,
      CONCORD_QUEUE_PREFIX: 'bench-b',
      KAFKA_BROKERS: brokers.join(','),
      KLINES_KAFKA_TOPIC: topic,
      OUTBOX_ENABLED: 'false',
      SYNC_EVENTS_ENABLED: 'false',
      LOG_LEVEL: 'warn',
      // e.g. --require ./hook.cjs that starts node:inspector's profiler: profile the workers only
      ...(process.env.SEQUENCES_BENCH_WORKER_NODE_OPTIONS ? { NODE_OPTIONS: process.env.SEQUENCES_BENCH_WORKER_NODE_OPTIONS } : {}),
    }));
    // A worker that dies (bad NODE_OPTIONS, a crash) must end the run, not leave it polling forever.
    let dead: string | undefined;
    for (const w of workers) void w.exited.then(({ code, signal }) => (dead ??= `worker ${w.pid} exited (${code ?? signal}): ${w.stderr().slice(-1500)}`));
    const count = async () => {
      if (dead) throw new Error(dead);
      return Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM market_klines`)).rows[0]!.n);
    };
    while ((await count()) === 0) await new Promise((r) => setTimeout(r, 5));
    const labels = new Map(workers.map((w) => [w.pid, 'workers'] as [number, string]));
    const cpu0 = cpuSample(labels, 'bench');
    const started = process.hrtime.bigint();
    let n = 0;
    while ((n = await count()) < KLINES) await new Promise((r) => setTimeout(r, 20));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cpuUs = cpuPerKline(cpu0, cpuSample(labels, 'bench'), n);
    note(`(b) CPU µs per kline: ${JSON.stringify(cpuUs)}`);
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    await kafka.handle.stop();
    // Baseline: the same rows straight into a scratch table of the same shape and indexes.
    await db.query(`CREATE TABLE bench_klines (LIKE market_klines INCLUDING ALL)`);
    const baseStart = process.hrtime.bigint();
    for (let i = 0; i < KLINES; i += 5000) {
      const batch = Array.from({ length: Math.min(5000, KLINES - i) }, (_, j) => JSON.parse(make(i + j).value) as { t: number; s: string });
      await db.query(
        `INSERT INTO bench_klines (time, symbol, open, high, low, close, volume, sequence, close_time)
         SELECT 'epoch'::timestamptz + t * interval '1 millisecond', s, 100.1, 101.2, 99.3, 100.4, 12.5, ord, 'epoch'::timestamptz + t * interval '1 millisecond'
           FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS x(t, s, ord)`,
        [batch.map((b) => b.t), batch.map((b) => b.s)],
      );
    }
    const baseSeconds = Number(process.hrtime.bigint() - baseStart) / 1e9;
    const rate = n / seconds;
    note(`(b) ${round(rate)} klines/s, bare INSERT ${round(KLINES / baseSeconds)}/s`);
    rows.push({ part: `(b) Kafka -> stamped, stored, published (${WORKERS} workers, ${process.env.KLINES_INGEST_LANES ?? 'default'} lanes)`, figure: `${round(rate)} klines/s, ${cpuUs.machine_busy ?? '?'} µs CPU/kline`, baseline: `bare INSERT ${round(KLINES / baseSeconds)}/s`, ratio: round(rate / (KLINES / baseSeconds), 2), target: '>= 50,000/s' });
    Object.assign(result, { klines_per_s: round(rate), bare_insert_per_s: round(KLINES / baseSeconds), workers: WORKERS, lanes: process.env.KLINES_INGEST_LANES ?? 'default', cpu_us_per_kline: cpuUs });
  }

  // (c) -------------------------------------------------------------------------------------
  if (PARTS.has('c')) {
    const total = TABLE_SYMBOLS * TABLE_PER_SYMBOL;
    note(`(c) filling market_klines with ${total} rows`);
    await db.query(`TRUNCATE market_klines`);
    await db.query(`ALTER TABLE market_klines DROP CONSTRAINT market_klines_pkey`);
    await db.query(`DROP INDEX idx_market_klines_symbol_sequence`);
    await db.query(
      `INSERT INTO market_klines (time, symbol, open, high, low, close, volume, sequence, close_time)
       SELECT 'epoch'::timestamptz + (1700000000000 + i::bigint * 60000) * interval '1 millisecond', 'S' || s, 100, 101, 99, 100.5, i, i,
              'epoch'::timestamptz + (1700000059999 + i::bigint * 60000) * interval '1 millisecond'
         FROM generate_series(1, $1::int) s, generate_series(1, $2::int) i`,
      [TABLE_SYMBOLS, TABLE_PER_SYMBOL],
    );
    await db.query(`ALTER TABLE market_klines ADD PRIMARY KEY (time, symbol)`);
    await db.query(`CREATE INDEX idx_market_klines_symbol_sequence ON market_klines (symbol, sequence) WHERE sequence IS NOT NULL`);
    await db.query(`INSERT INTO sequence_tracker (stream, last_sequence, last_assigned) SELECT 'S' || s, $2, $2 FROM generate_series(1, $1::int) s ON CONFLICT DO NOTHING`, [TABLE_SYMBOLS, TABLE_PER_SYMBOL]);
    await db.query(`VACUUM ANALYZE market_klines`);
    const env = { REDIS_URL: redisServer.url, DATABASE_URL: url, PORT: '0', HOST: '127.0.0.1', AUTH_MODE: 'none', CONCORD_QUEUE_PREFIX: 'bench-c', LOG_LEVEL: 'silent', KAFKA_BROKERS: '', OUTBOX_ENABLED: 'false', SYNC_EVENTS_ENABLED: 'false' };
    // The API in a process of its own, as deployed (`concord start --role api`): the client's
    // work (this process) does not share the server's event loop.
    const api = startConcord(['start', '--role', 'api'], { ...env, LOG_LEVEL: 'info' });
    const apiUrl = String((await api.waitFor((l) => l.msg === 'listening', 60_000)).url);
    const latencies: number[] = [];
    // node:http with one keep-alive socket: a thinner client than fetch (undici), so the figure is the API's.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < REQUESTS + 50; i++) {
      const symbol = `S${1 + Math.floor(random() * TABLE_SYMBOLS)}`;
      const from = Math.floor(random() * (TABLE_PER_SYMBOL - RANGE));
      const t = process.hrtime.bigint();
      const bytes = await getBody(agent, `${apiUrl}/api/v1/klines/missed?symbol=${symbol}&fromSeq=${from}&toSeq=${from + RANGE}&limit=1000`);
      // Latency = request sent to the last byte received; the client's JSON parse is not the API's.
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      const body = JSON.parse(bytes.toString('utf8')) as { count: number };
      if (body.count !== RANGE) throw new Error(`expected ${RANGE} rows, got ${body.count}`);
      if (i >= 50) latencies.push(ms); // the first 50 warm the caches and the connection
    }
    agent.destroy();
    api.kill('SIGTERM');
    await api.exited;
    // The API's own time per request (its access log, whole ms: handler, query and JSON, not the socket).
    const served = api.lines.filter((l) => l.msg === 'request' && l.path === '/api/v1/klines/missed').map((l) => Number(l.ms)).slice(50);
    if (process.env.SEQUENCES_BENCH_DUMP) writeFileSync(process.env.SEQUENCES_BENCH_DUMP, api.lines.map((l) => JSON.stringify(l)).join('\n'));
    // Baseline: the same kind of ranges read straight through node-postgres (rows decoded into
    // objects, no HTTP, no JSON), the floor the API's time is measured against.
    const direct: number[] = [];
    for (let i = 0; i < REQUESTS + 50; i++) {
      const symbol = `S${1 + Math.floor(random() * TABLE_SYMBOLS)}`;
      const from = Math.floor(random() * (TABLE_PER_SYMBOL - RANGE));
      const t = process.hrtime.bigint();
      const res = await db.query({
        name: 'bench-missed-rows',
        text: `SELECT sequence, symbol, time, close_time, open, high, low, close, volume FROM market_klines
                WHERE symbol = $1 AND sequence > $2 AND sequence <= $3 ORDER BY sequence LIMIT $4`,
        values: [symbol, from, from + RANGE, RANGE + 1],
      });
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      if (res.rows.length !== RANGE) throw new Error(`expected ${RANGE} rows, got ${res.rows.length}`);
      if (i >= 50) direct.push(ms);
    }
    const pct = (list: number[], p: number) => {
      const sorted = [...list].sort((x, y) => x - y);
      return round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!, 2);
    };
    rows.push({ part: `(c) missed API, ${RANGE}-row ranges, ${total} rows`, figure: `p50 ${pct(latencies, 50)} ms, p99 ${pct(latencies, 99)} ms`, baseline: `rows via pg: p50 ${pct(direct, 50)}, p99 ${pct(direct, 99)} ms`, ratio: round(pct(latencies, 99) / pct(direct, 99), 2), target: 'p99 < 20 ms' });
    note(`(c) API p50 ${pct(latencies, 50)} ms p99 ${pct(latencies, 99)} ms; rows via pg p50 ${pct(direct, 50)} ms p99 ${pct(direct, 99)} ms`);
    note(`(c) the API's own time (access log, whole ms): p50 ${pct(served, 50)} ms p99 ${pct(served, 99)} ms`);
    Object.assign(result, { missed_p50_ms: pct(latencies, 50), missed_p99_ms: pct(latencies, 99), api_handler_p50_ms: pct(served, 50), api_handler_p99_ms: pct(served, 99), rows_via_pg_p50_ms: pct(direct, 50), rows_via_pg_p99_ms: pct(direct, 99), table_rows: total });
  }
} finally {
  await db.end();
  await redisServer.stop();
  await pgServer.stop();
}
printTable(rows);
console.log(JSON.stringify(result));
