/**
 * `npm run bench -- scale`: the same mixed workload with 1 and then 2 worker processes (plus
 * an api process), and the failover time after killing the process holding the singleton
 * leases (the DuckDB writer and the CDC reader), with their default TTLs.
 *
 * The workload, fired as fast as the bench can once the workers are ready:
 * - CDC: row changes (inserts, updates, deletes in transactions of 100) on a monitored
 *   table, read from the slot and applied to the DuckDB copy (singletons: they do not scale
 *   with workers, by design: one slot reader, one DuckDB writer);
 * - outbox: events enqueued in transactions of 100, relayed to Redis Streams (scales);
 * - sagas: started over HTTP, each 4-5 steps as queue jobs (scales).
 * Throughput is work items done per second from the first write to the last item done
 * (a row change applied, an event published, a saga step completed). Latency is per item
 * from its creation to its completion (outbox events and sagas; the CDC part is
 * measured as the time for the copy to catch up). On 2 cores, a second worker process
 * shares the same cores with PostgreSQL, Redis and the first worker: the ratio says how
 * much of the work was waiting on one process rather than on the machine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Redis } from 'ioredis';
import { createLogger } from '../../runtime/index.js';
import { enqueueMany } from '../../queues/index.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { startPostgres } from '../services/postgres.js';
import { startRedis } from '../services/redis.js';
import { startConcord, type Child } from '../../test/support/child.js';
import { SAGA_TEST_TABLES } from '../../test/fixtures/saga-handlers.js';
import { printTable, round, scaled, SCALE } from './support.js';
import { cleanupRegistry, percentile } from './proc.js';

const ROW_CHANGES = scaled(60_000, 2_000);
const EVENTS = scaled(30_000, 1_000);
const SAGAS = scaled(600, 30);
const TXN = 100;
const SAGA_HANDLERS = fileURLToPath(new URL('../../test/fixtures/saga-handlers.ts', import.meta.url));
const FAILOVER_TARGET_S = 10;

const log = createLogger('silent');
const note = (m: string) => process.stderr.write(`[scale bench] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups = cleanupRegistry(note);

async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await sleep(100);
  }
}

interface Round {
  workers: number;
  seconds: number;
  items: number;
  throughput: number;
  outboxP99Ms: number;
  sagaP99Ms: number;
  cdcCatchUpMs: number;
  failoverS?: number;
}

const pgServer = await startPostgres({ mode: 'test' });
cleanups.add(() => pgServer.stop());
const redisServer = await startRedis({ mode: 'test' });
cleanups.add(() => redisServer.stop());
const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
cleanups.add(async () => redis.disconnect());

async function runRound(workerCount: number, measureFailover: boolean): Promise<Round> {
  const name = `bench_scale_${workerCount}`;
  const admin = new pg.Client({ connectionString: pgServer.url });
  await admin.connect();
  await admin.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [`${name}_slot`]);
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(pgServer.url);
  url.pathname = `/${name}`;
  const dbUrl = url.toString();
  await migrateDatabase('postgres', dbUrl, log);
  const db = new pg.Pool({ connectionString: dbUrl, max: 8 });
  await db.query(`CREATE TABLE bench_accounts (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, note text)`);
  await db.query(SAGA_TEST_TABLES);
  const dir = mkdtempSync(path.join(tmpdir(), 'concord-bench-scale-'));
  const prefix = `bench-scale-${workerCount}`;
  const env: Record<string, string> = {
    REDIS_URL: redisServer.url,
    DATABASE_URL: dbUrl,
    CONCORD_QUEUE_PREFIX: prefix,
    KAFKA_BROKERS: '',
    LOG_LEVEL: 'warn',
    DUCKDB_DATABASE_PATH: path.join(dir, 'copy.duckdb'),
    CDC_ENABLED: 'true',
    CDC_MONITORED_TABLES: 'public.bench_accounts',
    CDC_REPLICATION_SLOT_NAME: `${name}_slot`,
    SAGA_HANDLERS_MODULE: SAGA_HANDLERS,
  };
  const children: Child[] = [];
  const stopAll = async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
  };
  try {
    const api = startConcord(['start', '--role', 'api'], { ...env, LOG_LEVEL: 'info' });
    children.push(api);
    const apiUrl = String((await api.waitFor((l) => l.msg === 'listening', 60_000)).url);
    const workers = Array.from({ length: workerCount }, () => startConcord(['start', '--role', 'worker'], { ...env, LOG_LEVEL: 'info' }));
    children.push(...workers);
    await Promise.all(workers.map((w) => w.waitFor((l) => l.msg === 'listening', 60_000)));
    // Streaming has begun once the slot exists and is active.
    await until('the CDC slot', 60_000, async () => {
      const { rows } = await db.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [`${name}_slot`]);
      return rows.length > 0 ? true : undefined;
    });

    note(`${workerCount} worker(s): ${ROW_CHANGES} row changes, ${EVENTS} outbox events, ${SAGAS} sagas`);
    const t0 = Date.now();
    const cdc = (async () => {
      for (let done = 0, k = 0; done < ROW_CHANGES; done += TXN, k++) {
        const ids = Array.from({ length: TXN }, (_, i) => (k * 37 + i * 101) % 20_000);
        if (k % 10 === 9) await db.query(`DELETE FROM bench_accounts WHERE id = ANY($1::bigint[])`, [ids]);
        else
          await db.query(
            `INSERT INTO bench_accounts (id, balance, note) SELECT id, 1, 'k' || $2 FROM unnest($1::bigint[]) AS id
               ON CONFLICT (id) DO UPDATE SET balance = bench_accounts.balance + 1, note = EXCLUDED.note`,
            [ids, k],
          );
      }
    })();
    const outbox = (async () => {
      for (let done = 0; done < EVENTS; done += TXN) {
        const c = await db.connect();
        try {
          await c.query('BEGIN');
          await enqueueMany(c, Array.from({ length: TXN }, (_, i) => ({ topic: 'bench.scale', eventType: 'e', aggregateId: `a-${(done + i) % 1000}`, aggregateType: 'a', payload: { n: done + i } })));
          await c.query('COMMIT');
        } finally {
          c.release();
        }
      }
    })();
    const sagas = (async () => {
      for (let i = 0; i < SAGAS; i += 10) {
        await Promise.all(
          Array.from({ length: Math.min(10, SAGAS - i) }, async (_, j) => {
            const res = await fetch(`${apiUrl}/api/v1/sagas`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ saga_type: 'kill', context: { vip: (i + j) % 2 === 0 } }) });
            if (res.status >= 300) throw new Error(`POST /api/v1/sagas: ${res.status} ${await res.text()}`);
          }),
        );
      }
    })();
    await Promise.all([cdc, outbox, sagas]);
    const written = Date.now();
    const { rows: walRows } = await db.query<{ lsn: string }>(`SELECT pg_current_wal_lsn()::text AS lsn`);
    const finalLsn = walRows[0]!.lsn;

    await until('outbox published', 600_000, async () => {
      const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM concord_outbox WHERE status = 'published'`);
      return Number(rows[0]!.n) >= EVENTS ? true : undefined;
    });
    await until('sagas completed', 600_000, async () => {
      const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM sagas WHERE status IN ('completed', 'failed', 'compensated')`);
      return Number(rows[0]!.n) >= SAGAS ? true : undefined;
    });
    await until('CDC caught up', 600_000, async () => {
      const { rows } = await db.query<{ behind: boolean }>(`SELECT confirmed_flush_lsn < $2::pg_lsn AS behind FROM pg_replication_slots WHERE slot_name = $1`, [`${name}_slot`, finalLsn]);
      return rows[0] && !rows[0].behind ? true : undefined;
    });
    const t1 = Date.now();

    const steps = await db.query<{ n: string }>(`SELECT count(*) AS n FROM saga_steps WHERE state = 'completed'`);
    const items = ROW_CHANGES + EVENTS + Number(steps.rows[0]!.n);
    const ms = async (sql: string) => Float64Array.from((await db.query<{ ms: number }>(sql)).rows.map((r) => Number(r.ms))).sort();
    const outboxLat = await ms(`SELECT extract(epoch FROM published_at - created_at) * 1000 AS ms FROM concord_outbox`);
    const sagaLat = await ms(`SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms FROM sagas`);
    const result: Round = {
      workers: workerCount,
      seconds: (t1 - t0) / 1000,
      items,
      throughput: items / ((t1 - t0) / 1000),
      outboxP99Ms: percentile(outboxLat, 0.99),
      sagaP99Ms: percentile(sagaLat, 0.99),
      cdcCatchUpMs: t1 - written,
    };

    if (measureFailover) {
      const holderOf = async (lease: string) => (await redis.get(`${prefix}:lease:${lease}`))?.split('|')[0];
      const writer = await until('a DuckDB writer', 30_000, () => holderOf('duckdb-writer'));
      const victim = workers.find((w) => w.lines.some((l) => l.processId === writer));
      if (!victim) throw new Error(`DuckDB writer ${writer} is not one of the workers`);
      const leases = ['duckdb-writer', `cdc-reader.${name}_slot`];
      const held: string[] = [];
      for (const l of leases) if ((await holderOf(l)) === writer) held.push(l);
      const killedAt = Date.now();
      victim.kill('SIGKILL');
      await victim.exited;
      await Promise.all(held.map((l) => until(`${l} taken over`, 60_000, async () => ((await holderOf(l)) && (await holderOf(l)) !== writer ? true : undefined))));
      result.failoverS = (Date.now() - killedAt) / 1000;
      note(`failover of ${held.join(' + ')}: ${result.failoverS} s`);
    }
    return result;
  } finally {
    await stopAll();
    await db.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

try {
  const one = await runRound(1, false);
  const two = await runRound(2, true);
  const ratio = two.throughput / one.throughput;
  process.stdout.write(`\nscale benchmark (BENCH_SCALE=${SCALE}): ${ROW_CHANGES} row changes + ${EVENTS} outbox events + ${SAGAS} sagas, api + N workers\n\n`);
  printTable(
    [one, two].map((r) => ({
      workers: r.workers,
      seconds: round(r.seconds, 1),
      'items done': r.items,
      'items/s': round(r.throughput),
      'outbox p99 ms': round(r.outboxP99Ms),
      'saga p99 ms': round(r.sagaP99Ms),
      'cdc catch-up ms': r.cdcCatchUpMs,
    })),
  );
  process.stdout.write(`\nscaling ratio (2 workers / 1): ${round(ratio, 2)}\nfailover after SIGKILL of the lease holder (default TTLs): ${two.failoverS} s (target < ${FAILOVER_TARGET_S} s)\n\n`);
  process.stdout.write(
    JSON.stringify({
      bench: 'scale',
      scale: SCALE,
      throughput_1: round(one.throughput),
      throughput_2: round(two.throughput),
      scaling_ratio: round(ratio, 2),
      failover_s: two.failoverS,
      p99_ms_1: { outbox: round(one.outboxP99Ms), saga: round(one.sagaP99Ms) },
      p99_ms_2: { outbox: round(two.outboxP99Ms), saga: round(two.sagaP99Ms) },
      cdc_catch_up_ms: [one.cdcCatchUpMs, two.cdcCatchUpMs],
      target_met: (two.failoverS ?? Infinity) < FAILOVER_TARGET_S,
    }) + '\n',
  );
} finally {
  await cleanups.run();
}
