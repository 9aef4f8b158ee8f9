/**
 * Sync-events benchmark: POST /sync-events from autocannon on loopback against a real Concord
 * process (role all: the API and the sync-events processor, started by sync-events-server.ts in
 * a process of its own so the load generator never shares its event loop), with PostgreSQL and
 * Redis beside it on the same machine. The outbox is off (OUTBOX_ENABLED=false): this measures
 * the API and the processor, not the relay.
 *
 * - requests/s and latency (p50/p99/max of every response, measured by the load generator), one
 *   HS256 bearer token, pipelining 1, bodies over a pool of files (40% upload, 40% update, 20% delete);
 * - the connection count is swept first (short runs); the measured run uses the setting with the
 *   most requests/s among those with p99 under the target and no errors (else the lowest p99);
 * - processed/s: events / (start of the load -> nothing pending any more, polled every 25 ms), so
 *   it never flatters; pending is sampled every second during the load (max pending);
 * - CPU seconds of each process (Concord, autocannon, PostgreSQL, Redis, anything else on the machine);
 * - cost split at the chosen setting: the API alone (the same process without the processor actor),
 *   then the processor alone draining what the API left (events/s and CPU per event);
 * - ceilings at the chosen setting: bare node:http answering at once, and bare node:http doing the
 *   same INSERT on a pool of the same size (no framework, auth, validation or wake).
 *
 * Knobs: SYNC_EVENTS_CONNECTIONS (comma-separated list to sweep, or one value: no sweep);
 * SYNC_EVENTS_SERVER_ENV (`K=V,K=V`: overrides of the server's environment, e.g. AUTH_MODE=none or
 * SYNC_EVENT_PROCESS_INTERVAL=5, for diagnosis); SYNC_EVENTS_SERVER_NODE_ARGS (node flags of the
 * server processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import pg from 'pg';
import { Redis } from 'ioredis';
import { createLogger } from '../../runtime/index.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { startPostgres } from '../services/postgres.js';
import { startRedis } from '../services/redis.js';
import { printTable, round, SCALE } from './support.js';
import { cleanupRegistry, machineCpu, procStat, treeCpu } from './proc.js';
import { load, startServer, type LoadResult, type Server, type ServerMode, type ServerOptions } from './sync-events-procs.js';

const LOAD_S = Math.max(3, Math.round(20 * SCALE));
const SHORT_S = Math.max(3, Math.round(8 * SCALE));
const WARMUP_S = 3;
const FILES = Math.max(1_000, Math.round(20_000 * SCALE));
const BODIES = 1 << 16;
const TARGET_RPS = 5_000;
const TARGET_P99_MS = 50;
const DRAIN_TIMEOUT_MS = 120_000;
const CONNECTIONS = (process.env.SYNC_EVENTS_CONNECTIONS ?? '10,25,50,100').split(',').map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1 || n > 1_000) {
    console.error(`SYNC_EVENTS_CONNECTIONS=${process.env.SYNC_EVENTS_CONNECTIONS}: expected integers in [1, 1000], comma-separated`);
    process.exit(2);
  }
  return n;
});
const SERVER_ENV_OVERRIDES = Object.fromEntries(
  (process.env.SYNC_EVENTS_SERVER_ENV ?? '')
    .split(',')
    .filter((kv) => kv.includes('='))
    .map((kv) => [kv.slice(0, kv.indexOf('=')).trim(), kv.slice(kv.indexOf('=') + 1).trim()]),
);
const SERVER_NODE_ARGS = (process.env.SYNC_EVENTS_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);

const log = createLogger('silent');
const note = (m: string) => process.stderr.write(`[sync-events bench] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isNum = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x);

// --- the workload ---------------------------------------------------------------------------------
const files = Array.from({ length: FILES }, () => randomUUID());
const bodies = Array.from({ length: BODIES }, (_, i) => {
  const r = Math.random();
  const eventType = r < 0.4 ? 'upload' : r < 0.8 ? 'update' : 'delete';
  const fileId = files[Math.floor(Math.random() * FILES)]!;
  return JSON.stringify(i % 2 === 0 ? { file_id: fileId, event_type: eventType, metadata: { size: 1_000 + (i % 9_000), source: 'bench' } } : { file_id: fileId, event_type: eventType });
});
let cursor = 0;
const nextBody = () => bodies[cursor++ & (BODIES - 1)]!;

// --- CPU of processes and of the machine (Linux /proc; n/a elsewhere) ------------------------------------
interface Cpu {
  server: number;
  loadgen: number;
  postgres: number;
  redis: number;
  other: number;
  /** Machine CPU seconds available in the window (cores x seconds). */
  capacity: number;
}
const pids: { postmaster?: number; redis?: number } = {};
function cpuMeter(serverPid: number): () => Cpu {
  const take = () => {
    const u = process.cpuUsage();
    return {
      server: procStat(serverPid)?.cpu ?? NaN,
      loadgen: (u.user + u.system) / 1e6,
      postgres: pids.postmaster === undefined ? NaN : treeCpu(pids.postmaster),
      redis: pids.redis === undefined ? NaN : (procStat(pids.redis)?.cpu ?? NaN),
      machine: machineCpu(),
    };
  };
  const a = take();
  return () => {
    const b = take();
    const d = { server: b.server - a.server, loadgen: b.loadgen - a.loadgen, postgres: b.postgres - a.postgres, redis: b.redis - a.redis };
    const busy = b.machine.busy - a.machine.busy;
    return { ...d, other: Math.max(0, busy - d.server - d.loadgen - d.postgres - d.redis), capacity: b.machine.total - a.machine.total };
  };
}

// --- teardown -------------------------------------------------------------------------------------
const cleanups = cleanupRegistry(note);
const cleanup = cleanups.run;
const serverOpts: ServerOptions = { nodeArgs: SERVER_NODE_ARGS, register: (stop) => cleanups.add(stop) };

// --- the run --------------------------------------------------------------------------------------
try {
  const pgServer = await startPostgres({ mode: 'test' });
  cleanups.add(() => pgServer.stop());
  const redisServer = await startRedis({ mode: 'test' });
  cleanups.add(() => redisServer.stop());
  const dbUrl = (() => {
    const u = new URL(pgServer.url);
    u.pathname = '/bench_sync_events';
    return u.toString();
  })();
  const admin = new pg.Client({ connectionString: pgServer.url });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS bench_sync_events');
  await admin.query('CREATE DATABASE bench_sync_events');
  await admin.end();
  await migrateDatabase('postgres', dbUrl, log);
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  cleanups.add(() => db.end());
  const seqName = (await db.query<{ s: string }>(`SELECT pg_get_serial_sequence('sync_events', 'seq') AS s`)).rows[0]!.s;

  // Process ids for the CPU figures: the postmaster (parent of the checkpointer) and redis-server.
  const checkpointer = (await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`)).rows[0];
  pids.postmaster = checkpointer ? procStat(checkpointer.pid)?.ppid : undefined;
  {
    const r = new Redis(redisServer.url, { lazyConnect: true });
    await r.connect();
    const pid = /process_id:(\d+)/.exec(await r.info('server'))?.[1];
    r.disconnect();
    pids.redis = pid === undefined ? undefined : Number(pid);
  }

  const secret = randomBytes(32).toString('hex');
  const token = await new SignJWT({ scope: 'bench' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('sync-events-bench')
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(new TextEncoder().encode(secret));
  const serverEnv: Record<string, string> = {
    REDIS_URL: redisServer.url,
    DATABASE_URL: dbUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    AUTH_MODE: 'jwt',
    SECRET_KEY: secret,
    CONCORD_QUEUE_PREFIX: `bench-sync-events-${randomBytes(3).toString('hex')}`,
    LOG_LEVEL: 'warn',
    DUCKDB_DATABASE_PATH: ':memory:',
    KAFKA_BROKERS: '',
    OUTBOX_ENABLED: 'false',
    SYNC_EVENTS_ENABLED: 'true',
    SYNC_EVENT_PROCESS_INTERVAL: '1',
    ...SERVER_ENV_OVERRIDES,
  };
  const sweepIntervalS = Number(serverEnv.SYNC_EVENT_PROCESS_INTERVAL);

  const pendingCount = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM sync_events WHERE NOT processed')).rows[0]!.n);
  const reset = async () => {
    await db.query('TRUNCATE sync_events, sync_files RESTART IDENTITY');
    await db.query('VACUUM ANALYZE sync_events');
  };
  /** Polls until nothing is pending: the moment it saw that (performance.now()), or undefined on timeout. */
  const drain = async (): Promise<number | undefined> => {
    const deadline = performance.now() + DRAIN_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if ((await pendingCount()) === 0) return performance.now();
      await sleep(25);
    }
    return undefined;
  };
  const tableCounts = async () => {
    const row = (await db.query<{ total: string; processed: string }>(`SELECT count(*) AS total, count(*) FILTER (WHERE processed) AS processed FROM sync_events`)).rows[0]!;
    return { stored: Number(row.total), processed: Number(row.processed) };
  };

  /** A load run against a Concord server with pending sampled every second, then the drain. */
  const measured = async (server: Server, connections: number, seconds: number) => {
    const samples: Array<{ at: number; inserted: number; pending: number }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await sleep(1_000);
        if (!sampling) break;
        const { rows } = await db.query<{ inserted: string; pending: string }>(
          `SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${seqName}) AS inserted,
                  (SELECT count(*) FROM sync_events WHERE NOT processed) AS pending`,
        );
        samples.push({ at: performance.now(), inserted: Number(rows[0]!.inserted), pending: Number(rows[0]!.pending) });
      }
    })();
    const cpu = cpuMeter(server.pid);
    const r = await load(nextBody, server.port, token, connections, seconds);
    sampling = false;
    await sampler;
    const pendingAtEnd = await pendingCount();
    const drainedAt = await drain();
    const cpuSeconds = cpu();
    const { stored, processed } = await tableCounts();
    const last = samples.at(-1);
    return {
      ...r,
      cpu: cpuSeconds,
      wallS: ((drainedAt ?? performance.now()) - r.startedAt) / 1000,
      maxPending: Math.max(0, ...samples.map((s) => s.pending)),
      pendingAtEnd,
      stored,
      processed,
      drainAfterLoadS: drainedAt === undefined ? NaN : (drainedAt - r.endedAt) / 1000,
      processedPerS: drainedAt === undefined ? 0 : processed / ((drainedAt - r.startedAt) / 1000),
      /** Processed per second while the load ran (at the last sample). */
      processedDuringLoadPerS: last ? (last.inserted - last.pending) / ((last.at - r.startedAt) / 1000) : NaN,
    };
  };
  type Trial = Awaited<ReturnType<typeof measured>>;
  const clean = (t: LoadResult) => t.non2xx === 0 && t.errors === 0;
  /** Bounded backlog during the load (at most one second of requests), and drained within a sweep interval and a second. */
  const keepsUp = (t: Trial) => t.processed === t.stored && t.maxPending <= t.requestsPerS && t.drainAfterLoadS <= sweepIntervalS + 1;

  // 1. Concord warmed up, the connection sweep, then the measured run.
  const concord = await startServer('concord', serverEnv, serverOpts);
  note(`Concord listening on 127.0.0.1:${concord.port} (pid ${concord.pid}; auth ${serverEnv.AUTH_MODE}; outbox off); warming up ${WARMUP_S} s`);
  await load(nextBody, concord.port, token, 50, WARMUP_S);
  if ((await drain()) === undefined) throw new Error('the processor did not drain the warm-up');
  await reset();
  const sweep: Trial[] = [];
  if (CONNECTIONS.length > 1) {
    for (const c of CONNECTIONS) {
      note(`sweep: ${c} connections for ${SHORT_S} s`);
      const t = await measured(concord, c, SHORT_S);
      note(`  ${round(t.requestsPerS)} req/s, p99 ${round(t.p99, 1)} ms, ${t.non2xx} non-2xx, ${t.errors} errors; max pending ${t.maxPending}, drained ${round(t.drainAfterLoadS, 2)} s after the load`);
      sweep.push(t);
      await reset();
    }
  }
  const withinTarget = sweep.filter((t) => clean(t) && t.p99 < TARGET_P99_MS);
  const chosen =
    sweep.length === 0
      ? CONNECTIONS[0]!
      : withinTarget.length > 0
        ? withinTarget.reduce((a, b) => (b.requestsPerS > a.requestsPerS ? b : a)).connections
        : sweep.reduce((a, b) => (b.p99 < a.p99 ? b : a)).connections;
  note(`measured run: ${chosen} connections for ${LOAD_S} s`);
  const main = await measured(concord, chosen, LOAD_S);
  note(`  ${round(main.requestsPerS)} req/s, p99 ${round(main.p99, 1)} ms; processed ${round(main.processedPerS)}/s`);
  const trouble = concord.trouble.slice();
  await concord.stop();
  await reset();

  // 2. Cost split: the API alone (no processor actor), then the processor alone on what it left.
  note(`cost split: the API without the processor, ${chosen} connections for ${SHORT_S} s`);
  const api = await startServer('concord-api', serverEnv, serverOpts);
  await load(nextBody, api.port, token, chosen, 1);
  const apiCpu = cpuMeter(api.pid);
  const apiOnly = await load(nextBody, api.port, token, chosen, SHORT_S);
  const apiOnlyCpu = apiCpu();
  trouble.push(...api.trouble);
  await api.stop();
  await sleep(500);
  const backlog = await pendingCount();
  note(`cost split: the processor alone on a backlog of ${backlog} events`);
  // Watched from before its start: the processor may begin before the server listens.
  let processorPid: number | undefined;
  let procStart: { at: number; pending: number; cpu: () => Cpu } | undefined;
  let procEnd: number | undefined;
  const watching = (async () => {
    const deadline = performance.now() + DRAIN_TIMEOUT_MS;
    while (performance.now() < deadline) {
      const pending = await pendingCount();
      if (procStart === undefined && pending < backlog && processorPid !== undefined) procStart = { at: performance.now(), pending, cpu: cpuMeter(processorPid) };
      if (pending === 0) {
        procEnd = performance.now();
        return;
      }
      await sleep(10);
    }
  })();
  const processor = await startServer('concord', serverEnv, { ...serverOpts, onSpawn: (pid) => (processorPid = pid) });
  await watching;
  const processorCpu = procStart?.cpu();
  // From the first batch seen to the last: the first batch itself is not counted.
  const processorAlonePerS = procStart && procEnd !== undefined ? procStart.pending / ((procEnd - procStart.at) / 1000) : NaN;
  trouble.push(...processor.trouble);
  await processor.stop();
  await reset();

  // 3. Ceilings at the chosen setting.
  const ceilings: Array<{ mode: ServerMode; r: LoadResult; cpu: Cpu }> = [];
  for (const mode of ['bare-hello', 'bare-insert'] as const) {
    note(`ceiling ${mode}: ${chosen} connections for ${SHORT_S} s`);
    const bare = await startServer(mode, serverEnv, serverOpts);
    await load(nextBody, bare.port, token, chosen, 1);
    const cpu = cpuMeter(bare.pid);
    const r = await load(nextBody, bare.port, token, chosen, SHORT_S);
    ceilings.push({ mode, r, cpu: cpu() });
    await bare.stop();
  }
  await cleanup();

  // --- figures ---
  const ms = (x: number) => round(x, 1);
  const cores = main.cpu.capacity / main.wallS;
  console.log(
    `\nsync-events benchmark (BENCH_SCALE=${SCALE}; POST /sync-events, pipelining 1, HS256 bearer${serverEnv.AUTH_MODE === 'none' ? ' NOT VERIFIED (AUTH_MODE=none)' : ''}, ` +
      `${FILES} files; Concord role all = API + processor, outbox off, SYNC_EVENT_PROCESS_INTERVAL=${sweepIntervalS}; ${isNum(cores) ? round(cores) : 'n/a'} cores)\n`,
  );
  const row = (name: string, r: LoadResult, t?: Trial) => ({
    case: name,
    conns: r.connections,
    s: round(r.seconds, 1),
    requests: r.requests,
    'req/s': round(r.requestsPerS),
    'p50 ms': ms(r.p50),
    'p99 ms': ms(r.p99),
    'max ms': ms(r.max),
    'non-2xx/err': `${r.non2xx}/${r.errors}`,
    'processed/s': t ? round(t.processedPerS) : '-',
    'max pending': t ? t.maxPending : '-',
    'drain s': t ? round(t.drainAfterLoadS, 2) : '-',
  });
  printTable([
    ...sweep.map((t) => row(`sweep${t.connections === chosen ? ' (chosen)' : ''}`, t, t)),
    row('MEASURED RUN', main, main),
    row('API alone (no processor actor)', apiOnly),
    ...ceilings.map((c) => row(`ceiling: ${c.mode === 'bare-hello' ? 'bare node:http, no DB' : 'bare node:http + INSERT'}`, c.r)),
  ]);

  // CPU per request (or per event) of each process, in microseconds.
  const us = (s: number, n: number) => (isNum(s) && n > 0 ? round((s / n) * 1e6) : 'n/a');
  const pctOfMachine = (c: Cpu) => (isNum(c.capacity) ? `${round(((c.server + c.loadgen + c.postgres + c.redis + c.other) / c.capacity) * 100)}%` : 'n/a');
  const cpuRow = (name: string, c: Cpu, n: number, unit: string) => ({
    case: name,
    per: unit,
    'server us': us(c.server, n),
    'autocannon us': us(c.loadgen, n),
    'postgres us': us(c.postgres, n),
    'redis us': us(c.redis, n),
    'other procs us': us(c.other, n),
    'machine busy': pctOfMachine(c),
  });
  console.log('\nCPU time per request (per event for the processor), by process; "other procs" is anything else running on the machine\n');
  printTable([
    cpuRow('MEASURED RUN (load + drain)', main.cpu, main.requests, 'request'),
    cpuRow('API alone (no processor actor)', apiOnlyCpu, apiOnly.requests, 'request'),
    ...(processorCpu ? [cpuRow('processor alone, draining the backlog', processorCpu, procStart?.pending ?? 0, 'event')] : []),
    ...ceilings.map((c) => cpuRow(`ceiling: ${c.mode}`, c.cpu, c.r.requests, 'request')),
  ]);

  const inFlightAtStop = main.stored - main.ok;
  const consistent = inFlightAtStop >= 0 && inFlightAtStop <= chosen;
  const up = keepsUp(main);
  console.log(
    `\nmeasured run: ${main.stored} events stored for ${main.ok} 2xx responses (${inFlightAtStop} in flight when autocannon stopped${consistent ? '' : ': INCONSISTENT'}), ` +
      `${main.processed} processed; pending every second: max ${main.maxPending}, ${main.pendingAtEnd} when the load stopped, ` +
      `processed ${round(main.processedDuringLoadPerS)}/s during the load; drained ${isNum(main.drainAfterLoadS) ? `${round(main.drainAfterLoadS, 2)} s` : `NOT within ${DRAIN_TIMEOUT_MS / 1000} s`} after the load`,
  );
  console.log(`processor alone: ${procStart?.pending ?? 0} events at ${round(processorAlonePerS)} events/s (capacity for the API's rate: x${round(processorAlonePerS / main.requestsPerS, 1)})`);
  if (trouble.length > 0) console.log(`Concord logged ${trouble.length} warnings/errors; first: ${trouble[0]}`);
  const met = main.requestsPerS >= TARGET_RPS && main.p99 < TARGET_P99_MS && clean(main) && consistent && up;
  console.log(
    `target: >= ${TARGET_RPS} requests/s with p99 < ${TARGET_P99_MS} ms, no errors, processing keeping up (bounded pending, drained within ` +
      `the ${sweepIntervalS} s sweep + 1 s): ${met ? 'met' : 'MISSED'}\n`,
  );
  const r1 = (x: number) => (isNum(x) ? round(x, 1) : null);
  console.log(
    JSON.stringify({
      bench: 'sync-events',
      scale: SCALE,
      auth: serverEnv.AUTH_MODE,
      outbox: false,
      connections: chosen,
      duration_s: round(main.seconds, 1),
      requests: main.requests,
      requests_per_s: round(main.requestsPerS),
      latency_p50_ms: ms(main.p50),
      latency_p99_ms: ms(main.p99),
      latency_max_ms: ms(main.max),
      non_2xx: main.non2xx,
      errors: main.errors,
      events_stored: main.stored,
      events_processed: main.processed,
      processed_per_s: round(main.processedPerS),
      processed_during_load_per_s: round(main.processedDuringLoadPerS),
      max_pending: main.maxPending,
      drain_after_load_s: round(main.drainAfterLoadS, 2),
      processing_keeps_up: up,
      processor_alone_per_s: isNum(processorAlonePerS) ? round(processorAlonePerS) : null,
      api_alone_requests_per_s: round(apiOnly.requestsPerS),
      api_alone_latency_p99_ms: ms(apiOnly.p99),
      cpu_s: { server: r1(main.cpu.server), autocannon: r1(main.cpu.loadgen), postgres: r1(main.cpu.postgres), redis: r1(main.cpu.redis), other: r1(main.cpu.other) },
      server_cpu_us_per_request: us(main.cpu.server, main.requests),
      postgres_cpu_us_per_request: us(main.cpu.postgres, main.requests),
      machine_cores: isNum(cores) ? round(cores) : null,
      sweep: sweep.map((t) => ({ connections: t.connections, requests_per_s: round(t.requestsPerS), latency_p99_ms: ms(t.p99), processed_per_s: round(t.processedPerS) })),
      ceiling_http_only_per_s: round(ceilings[0]!.r.requestsPerS),
      ceiling_http_insert_per_s: round(ceilings[1]!.r.requestsPerS),
      target_met: met,
    }),
  );
  process.exit(0);
} catch (err) {
  note(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await cleanup();
  process.exit(1);
}
