/**
 * CDC end to end: PostgreSQL → replication slot → cdc-reader → `cdc.apply` (Redis)
 * → dual-writer → DuckDB, the reader in a worker process and the DuckDB writer in a
 * process of its own as deployed (test/fixtures/process.ts `cdc` and `duckdb-writer`),
 * against its own embedded PostgreSQL and Redis.
 *
 * 1. 1,000,000 row changes (inserts, updates, deletes; transactions of 1..1000 rows)
 *    are written while the pipeline is down, then the pipeline catches up: end-to-end
 *    row changes per second, from both actors being up to the last transaction applied.
 * 2. The reader alone (a second pipeline without applier, own slot and queue) into
 *    Redis, then the DuckDB writer alone applying those batches to a file of its own; and
 *    the baseline in the same run: the bare decode rate of a second slot over the same
 *    WAL (read with the reader's decoder and discard) is the ceiling.
 * 3. Lag under a steady offered load of 20,000 changes/s: per transaction, from its
 *    commit to the applier publishing an LSN at or past it; p50 / p99.
 * 4. Peak RSS (VmHWM) of each process (the figure is the larger); the copy is then compared with the
 *    source (count and sums).
 * BENCH_SCALE scales the change count and the load duration.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { DuckDBInstance } from '@duckdb/node-api';
import { cdcAppliedLsnKey, compareLsn } from '../../queues/cdc.js';
import { createLogger } from '../../runtime/index.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { PgoutputDecoder } from '../../actors/cdc-reader/pgoutput.js';
import { readerStatusKey, type ReaderStatus } from '../../actors/cdc-reader/status.js';
import { ReplicationConnection } from '../../actors/cdc-reader/replication.js';
import { startPostgres } from '../services/postgres.js';
import { startRedis } from '../services/redis.js';
import { startFixture, type Child } from '../../test/support/child.js';
import { BENCH_TABLE, createBenchTable, percentile, seeded, Workload } from './cdc-workload.js';
import { printTable, round, scaled, SCALE } from './support.js';
import { procPeakRss, procRss, procStat, threadCpu, treeCpu } from './proc.js';

const N = scaled(1_000_000, 2_000);
const LOAD_SECONDS = Math.max(5, Math.round(20 * SCALE));
const OFFERED_PER_S = 20_000;
const TICK_MS = 50;
const SLOT = 'bench_cdc_slot';
const PREFIX = 'bench-cdc';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = createLogger('warn');

/** Every sample of a metric (all label sets) in a Prometheus text page. */
function metricValues(text: string, name: string): number[] {
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].map((m) => Number(m[1]));
}

/** A histogram's cumulative bucket counts by upper bound (`le`), from a Prometheus text page. */
function histogramBuckets(text: string, name: string): Map<string, number> {
  return new Map([...text.matchAll(new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"[^}]*\\} (\\S+)$`, 'gm'))].map((m) => [m[1]!, Number(m[2])]));
}

/**
 * Where the writer's memory is at its highest sampled RSS: V8 heap, memory outside the
 * heap that V8 knows of (Buffers), and the rest (DuckDB, allocator, code), in MB; from
 * /proc and the process's own /metrics every 250 ms.
 */
function sampleMemory(pid: number, port: number): { stop(): Record<string, number> } {
  let peak: Record<string, number> = {};
  const mb = (bytes: number) => round(bytes / 1048576, 1);
  const timer = setInterval(() => {
    const rss = procRss(pid) ?? 0;
    if (rss <= (peak.rss_mb ?? 0) * 1048576) return;
    void fetch(`http://127.0.0.1:${port}/metrics`)
      .then((r) => r.text())
      .then((text) => {
        const metric = (name: string) => metricValues(text, name)[0] ?? NaN;
        const heapTotal = metric('concord_nodejs_heap_size_total_bytes');
        const external = metric('concord_nodejs_external_memory_bytes');
        if (rss > (peak.rss_mb ?? 0) * 1048576) {
          peak = { rss_mb: mb(rss), heap_used_mb: mb(metric('concord_nodejs_heap_size_used_bytes')), heap_total_mb: mb(heapTotal), external_mb: mb(external), other_mb: mb(rss - heapTotal - external) };
        }
      })
      .catch(() => undefined);
  }, 250);
  return { stop: () => (clearInterval(timer), peak) };
}

const pgServer = await startPostgres({ mode: 'test' });
const redisServer = await startRedis({ mode: 'test' });
const dir = mkdtempSync(join(tmpdir(), 'concord-bench-cdc-'));
const duckPath = join(dir, 'copy.duckdb');
let child: Child | undefined;
let writer: Child | undefined;
const redis = new Redis(redisServer.url);
const db = new pg.Pool({ connectionString: pgServer.url, max: 4 });
db.on('error', () => undefined); // the server stops at the end while idle clients remain
let client: pg.PoolClient | undefined;
try {
  await migrateDatabase('postgres', pgServer.url, log);
  await createBenchTable(db);
  // Process ids for the CPU figures: the postmaster (parent of the checkpointer; its tree holds
  // the walsender) and redis-server.
  const checkpointer = (await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`)).rows[0];
  const postmasterPid = checkpointer ? procStat(checkpointer.pid)?.ppid : undefined;
  const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1] ?? NaN);
  const env = {
    REDIS_URL: redisServer.url,
    DATABASE_URL: pgServer.url,
    CONCORD_QUEUE_PREFIX: PREFIX,
    CDC_ENABLED: 'true',
    CDC_MONITORED_TABLES: BENCH_TABLE,
    CDC_REPLICATION_SLOT_NAME: SLOT,
    DATA_SYNC_ENABLED: 'true',
    DUCKDB_DATABASE_PATH: duckPath,
    LOG_LEVEL: 'info',
  };
  const streaming = (c: Child) => c.waitFor((l) => l.msg === 'streaming from the slot', 120_000);
  const applied = async () => (await redis.get(cdcAppliedLsnKey(PREFIX, SLOT))) ?? '0/0';

  // The pipeline once, to create the slot and copy the (empty) table; then down.
  child = startFixture('cdc-e2e', env);
  await streaming(child);
  child.kill('SIGTERM');
  await child.exited;
  // A reader-only pipeline (no applier) on its own slot and queue prefix, also created before the backlog.
  const readerEnv = { ...env, CONCORD_QUEUE_PREFIX: `${PREFIX}-ro`, CDC_REPLICATION_SLOT_NAME: 'bench_reader_only', CDC_MAX_QUEUED_BATCHES: '100000' };
  child = startFixture('cdc', readerEnv);
  await streaming(child);
  child.kill('SIGTERM');
  await child.exited;
  const bare = new ReplicationConnection(pgServer.url);
  await bare.connect();
  await bare.createSlot('bench_decode', false);
  await bare.end();

  // 1. The backlog.
  const rand = seeded(42);
  const work = new Workload();
  client = await db.connect();
  let lastPre = '0/0';
  const genStart = Date.now();
  while (work.changes < N) lastPre = await work.transaction(client, Math.min(N - work.changes, 1 + Math.floor(rand() * 1000)), rand);
  const genSeconds = (Date.now() - genStart) / 1000;
  console.log(`backlog: ${work.changes} changes in ${work.transactions} transactions, written in ${genSeconds.toFixed(1)} s`);

  // 2. Decode ceiling: the same WAL through a bare slot, decoded and discarded.
  let decoded = 0;
  let decodeDone: () => void = () => undefined;
  const finished = new Promise<void>((r) => (decodeDone = r));
  const count = () => {
    if (++decoded >= N) decodeDone();
  };
  const decoder = new PgoutputDecoder({ begin() {}, commit() {}, relation() {}, insert: count, update: count, delete: count, truncate() {}, message() {} });
  const reader = new ReplicationConnection(pgServer.url);
  await reader.connect();
  const decodeStart = process.hrtime.bigint();
  reader.start('bench_decode', `${SLOT}_pub`, { data: (b, at) => { try { decoder.decode(b, at); } catch (err) { console.error('decode', err); } }, keepalive: () => undefined }).catch((err: unknown) => console.error('bare decode stream ended:', decoded, err));
  await finished;
  const decodeSeconds = Number(process.hrtime.bigint() - decodeStart) / 1e9;
  await reader.end();
  console.log(`decode ceiling: ${decoded} changes in ${decodeSeconds.toFixed(2)} s`);
  await db.query(`SELECT pg_drop_replication_slot('bench_decode')`);

  // 2b. The reader alone: slot → batches in Redis, nobody applying (where does the time go?).
  child = startFixture('cdc', readerEnv);
  await streaming(child);
  const readerAt = Date.now();
  const status = async () => JSON.parse((await redis.get(readerStatusKey(`${PREFIX}-ro`, 'bench_reader_only'))) ?? '{}') as Partial<ReaderStatus>;
  for (let s = await status(); !((s.changesRead ?? 0) >= N && s.pendingBatches === 0); s = await status()) await sleep(20);
  const readerSeconds = (Date.now() - readerAt) / 1000;
  const readerHwm = (procPeakRss(child.pid) ?? NaN) / 1048576;
  child.kill('SIGTERM');
  await child.exited;
  await db.query(`SELECT pg_drop_replication_slot('bench_reader_only')`);

  // 2c. The DuckDB writer alone: the reader-only pass's batches, waiting in Redis, into a DuckDB
  // file of its own: the writer's capacity without the reader and the walsender on its cores.
  writer = startFixture('duckdb-writer', { ...readerEnv, DUCKDB_DATABASE_PATH: join(dir, 'writer-only.duckdb') });
  await writer.waitFor((l) => l.msg === 'dual-writer holds DuckDB', 120_000);
  const writerOnlyCpuAt = procStat(writer.pid)?.cpu ?? NaN;
  const writerOnlyAt = Date.now();
  const writerOnlyBy = writerOnlyAt + Number(process.env.BENCH_CDC_CATCHUP_TIMEOUT_MS ?? 600_000);
  const readerOnlyApplied = async () => (await redis.get(cdcAppliedLsnKey(`${PREFIX}-ro`, 'bench_reader_only'))) ?? '0/0';
  while (compareLsn(await readerOnlyApplied(), lastPre) < 0) {
    if (Date.now() > writerOnlyBy) throw new Error(`the writer alone did not apply the reader-only batches (applied ${await readerOnlyApplied()})`);
    await sleep(20);
  }
  const writerOnlySeconds = (Date.now() - writerOnlyAt) / 1000;
  const writerOnlyCpuUs = round((((procStat(writer.pid)?.cpu ?? NaN) - writerOnlyCpuAt) / N) * 1e6, 1);
  writer.kill('SIGTERM');
  await writer.exited;
  writer = undefined;

  // 3. End to end catch-up, in the deployment topology: the reader in a worker process, the
  // DuckDB writer in a process of its own (k8s: the duckdb-writer StatefulSet), so their
  // JavaScript runs on separate cores.
  const startedAt = Date.now();
  child = startFixture('cdc', env);
  writer = startFixture('duckdb-writer', env);
  // Timed from the moment both actors are up: the reader streaming and the applier holding DuckDB.
  await Promise.all([streaming(child), writer.waitFor((l) => l.msg === 'dual-writer holds DuckDB', 120_000)]);
  const streamAt = Date.now();
  const writerPort = Number((await writer.waitFor((l) => l.fixtureEvent === 'ready', 120_000)).port);
  const writerMemory = sampleMemory(writer.pid, writerPort);
  // CPU of each process over the catch-up: robust when other work shares the machine.
  const cpuOf = (pid: number) => procStat(pid)?.cpu ?? NaN;
  const cpuNow = () => ({ reader: cpuOf(child!.pid), writer: cpuOf(writer!.pid), postgres: postmasterPid === undefined ? NaN : treeCpu(postmasterPid), redis: cpuOf(redisPid) });
  const cpuAtStream = cpuNow();
  const writerThreadsAtStream = threadCpu(writer.pid);
  const catchUpBy = Date.now() + Number(process.env.BENCH_CDC_CATCHUP_TIMEOUT_MS ?? 600_000);
  while (compareLsn(await applied(), lastPre) < 0) {
    if (Date.now() > catchUpBy) throw new Error(`the pipeline did not catch up (applied ${await applied()}, needed >= ${lastPre}); worker log tail:\n${child.lines.slice(-20).map((l) => JSON.stringify(l)).join('\n')}`);
    await sleep(20);
  }
  const e2eSeconds = (Date.now() - streamAt) / 1000;
  const cpuAtEnd = cpuNow();
  // DuckDB transactions of the catch-up (each a group of joined batches): fewer, bigger ones scan the copy less often.
  const writerMetrics = await fetch(`http://127.0.0.1:${writerPort}/metrics`).then((r) => r.text()).catch(() => '');
  const catchUpTransactions = metricValues(writerMetrics, 'concord_dual_writer_cdc_batches_total').reduce((a, b) => a + b, 0);
  // The writer's CPU by thread name: its JavaScript thread against DuckDB's threads and the rest.
  const writerThreadsUs = Object.fromEntries(
    [...threadCpu(writer.pid)].map(([name, s]) => [name, round(((s - (writerThreadsAtStream.get(name) ?? 0)) / N) * 1e6, 2)] as const).filter(([, us]) => us >= 0.05).sort((a, b) => b[1] - a[1]),
  );
  const perChange = (k: keyof typeof cpuAtEnd) => round(((cpuAtEnd[k] - cpuAtStream[k]) / N) * 1e6, 1);
  const cpuPerChangeUs = { reader: perChange('reader'), writer: perChange('writer'), postgres: perChange('postgres'), redis: perChange('redis') };
  const withStartSeconds = (Date.now() - startedAt) / 1000;

  // 4. Steady offered load: lag per transaction, commit → applied. The load commits as a
  // production source does (synchronous_commit on, PostgreSQL's default): the embedded test
  // server runs with it off, and a walsender sends only flushed WAL, so each commit would wait
  // for the WAL writer (wal_writer_delay, 200 ms) before the reader could even see it.
  await client.query('SET synchronous_commit = on');
  const pending: Array<{ pre: string; at: number }> = [];
  const lags: number[] = [];
  const poller = setInterval(() => {
    void applied().then((a) => {
      const now = performance.now();
      while (pending.length > 0 && compareLsn(a, pending[0]!.pre) >= 0) lags.push(now - pending.shift()!.at);
    });
  }, 5);
  const writerMetricsText = () => fetch(`http://127.0.0.1:${writerPort}/metrics`).then((r) => r.text()).catch(() => '');
  const textBefore = await writerMetricsText();
  const applyBucketsBefore = histogramBuckets(textBefore, 'concord_dual_writer_cdc_apply_seconds');
  const applySumBefore = metricValues(textBefore, 'concord_dual_writer_cdc_apply_seconds_sum')[0] ?? NaN;
  const perTick = (OFFERED_PER_S * TICK_MS) / 1000;
  const loadStart = performance.now();
  let offered = 0;
  for (let tick = 0; performance.now() - loadStart < LOAD_SECONDS * 1000; tick++) {
    let budget = perTick;
    while (budget > 0) {
      const n = Math.min(budget, 1 + Math.floor(rand() * 1000));
      const pre = await work.transaction(client, n, rand);
      pending.push({ pre, at: performance.now() });
      budget -= n;
      offered += n;
    }
    const wait = loadStart + (tick + 1) * TICK_MS - performance.now();
    if (wait > 0) await sleep(wait);
  }
  const offeredRate = offered / ((performance.now() - loadStart) / 1000);
  const drainBy = Date.now() + 60_000;
  while (pending.length > 0 && Date.now() < drainBy) await sleep(20);
  clearInterval(poller);
  lags.sort((a, b) => a - b);
  // The DuckDB transactions of the load phase by duration: a lag tail from a few long ones
  // (a checkpoint inside a commit) looks different from one that is slow throughout.
  const textAfter = await writerMetricsText();
  const applyBucketsAfter = histogramBuckets(textAfter, 'concord_dual_writer_cdc_apply_seconds');
  const applySeconds = (metricValues(textAfter, 'concord_dual_writer_cdc_apply_seconds_sum')[0] ?? NaN) - applySumBefore;
  const within = (le: string) => (applyBucketsAfter.get(le) ?? NaN) - (applyBucketsBefore.get(le) ?? NaN);
  const loadTransactions = { total: within('+Inf'), over_250ms: within('+Inf') - within('0.25'), over_500ms: within('+Inf') - within('0.5'), over_1s: within('+Inf') - within('1'), mean_ms: round((applySeconds * 1000) / within('+Inf'), 1) };

  const hwmOf = (pid: number) => (procPeakRss(pid) ?? NaN) / 1048576;
  const writerPeak = writerMemory.stop();
  const readerRssMb = hwmOf(child.pid);
  const writerRssMb = hwmOf(writer.pid);
  const peakRssMb = Math.max(readerRssMb, writerRssMb);

  // 5. The copy against the source.
  for (const c of [child, writer]) c.kill('SIGTERM');
  await Promise.all([child.exited, writer.exited]);
  child = undefined;
  writer = undefined;
  const src = (await db.query<{ n: string; ids: string; amount: string }>(`SELECT count(*)::text AS n, coalesce(sum(id), 0)::text AS ids, coalesce(sum(amount), 0)::text AS amount FROM ${BENCH_TABLE}`)).rows[0]!;
  const duck = await DuckDBInstance.create(duckPath);
  const conn = await duck.connect();
  const copy = (await conn.runAndReadAll(`SELECT count(*)::VARCHAR, coalesce(sum(id), 0)::VARCHAR, coalesce(sum(amount), 0)::VARCHAR FROM main.${BENCH_TABLE}`)).getRows()[0]!.map(String);
  conn.closeSync();
  duck.closeSync();
  const matches = copy[0] === src.n && copy[1] === src.ids && Number(copy[2]).toFixed(2) === Number(src.amount).toFixed(2);

  const rowsPerS = N / e2eSeconds;
  const ceiling = N / decodeSeconds;
  printTable([
    { measure: 'end to end (catch-up, both actors up)', changes: N, seconds: round(e2eSeconds, 2), 'changes/s': round(rowsPerS) },
    { measure: 'end to end incl. process start', changes: N, seconds: round(withStartSeconds, 2), 'changes/s': round(N / withStartSeconds) },
    { measure: 'cdc-reader alone (slot to Redis batches, 1 s status granularity)', changes: N, seconds: round(readerSeconds, 2), 'changes/s': round(N / readerSeconds) },
    { measure: `dual-writer alone (those batches from Redis to DuckDB; ${writerOnlyCpuUs} µs CPU per change)`, changes: N, seconds: round(writerOnlySeconds, 2), 'changes/s': round(N / writerOnlySeconds) },
    { measure: 'bare slot decode (ceiling, baseline)', changes: N, seconds: round(decodeSeconds, 2), 'changes/s': round(ceiling) },
    { measure: `lag at ${round(offeredRate)} changes/s offered`, changes: offered, seconds: LOAD_SECONDS, 'changes/s': `p50 ${round(percentile(lags, 50))} ms, p99 ${round(percentile(lags, 99))} ms` },
  ]);
  console.log(`CPU per change over the catch-up: reader process ${cpuPerChangeUs.reader} µs, DuckDB writer process ${cpuPerChangeUs.writer} µs, PostgreSQL (walsender) ${cpuPerChangeUs.postgres} µs, Redis ${cpuPerChangeUs.redis} µs; all cores' time per change at this rate ${round((availableParallelism() * e2eSeconds * 1e6) / N, 1)} µs`);
  console.log(`DuckDB transactions over the catch-up: ${catchUpTransactions} (${round(N / catchUpTransactions)} changes each on average)`);
  console.log(`DuckDB transactions during the load phase: ${loadTransactions.total}, ${loadTransactions.mean_ms} ms each on average, over 0.25 s: ${loadTransactions.over_250ms}, over 0.5 s: ${loadTransactions.over_500ms}, over 1 s: ${loadTransactions.over_1s}`);
  console.log(`DuckDB writer process CPU per change by thread name over the catch-up (µs): ${JSON.stringify(writerThreadsUs)}`);
  console.log(`DuckDB writer process at its highest sampled RSS: ${JSON.stringify(writerPeak)}`);
  console.log(`e2e / decode ceiling: ${round(rowsPerS / ceiling, 2)}; peak RSS: reader process ${round(readerRssMb)} MB, DuckDB writer process ${round(writerRssMb)} MB (reader-only pass ${round(readerHwm)} MB); copy equals source (count, sums): ${matches} (${copy.join(', ')} vs ${src.n}, ${src.ids}, ${src.amount})`);
  console.log(
    JSON.stringify({
      bench: 'cdc',
      scale: SCALE,
      changes: N,
      rows_per_s: round(rowsPerS),
      decode_ceiling_rows_per_s: round(ceiling),
      ratio_to_ceiling: round(rowsPerS / ceiling, 3),
      lag_p50_ms: round(percentile(lags, 50), 1),
      lag_p99_ms: round(percentile(lags, 99), 1),
      lag_offered_per_s: round(offeredRate),
      lag_transactions: lags.length,
      peak_rss_mb: round(peakRssMb, 1),
      reader_only_rows_per_s: round(N / readerSeconds),
      reader_only_peak_rss_mb: round(readerHwm, 1),
      writer_only_rows_per_s: round(N / writerOnlySeconds),
      writer_only_cpu_us_per_change: writerOnlyCpuUs,
      copy_matches: matches,
      writer_at_peak: writerPeak,
      catch_up_cpu_us_per_change: cpuPerChangeUs,
      writer_threads_us_per_change: writerThreadsUs,
      catch_up_transactions: catchUpTransactions,
      load_transactions: loadTransactions,
    }),
  );
} catch (err) {
  console.error('cdc bench failed:', err);
  process.exitCode = 1;
} finally {
  child?.kill('SIGKILL');
  writer?.kill('SIGKILL');
  client?.release();
  await db.end().catch(() => undefined);
  redis.disconnect();
  await Promise.allSettled([pgServer.stop(), redisServer.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
