/**
 * The consistency validator on a big table: 10,000,000 rows in PostgreSQL and an equal
 * copy in DuckDB (same types as the dual-writer's copy), checked by data_hash through the
 * real queues: one process runs the dual-writer (it holds the DuckDB lease, so the
 * validator serves the DuckDB side there) and the validator, over an embedded PostgreSQL
 * and Redis.
 *
 * (a) identical stores: POST /consistency/check to the completed report (the verdict).
 * (b) 100 scattered rows changed in the copy: time to list all of them, rows downloaded.
 * Baseline in the same run: the naive compare, streaming every row's canonical text from
 * both sides in key order (server-side cursors) and comparing them in Node.
 * BENCH_SCALE scales the row count.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { createLogger, loadConfig } from '../../runtime/index.js';
import { migrateDatabase, selectCapabilities } from '../../cli/capabilities.js';
import { startProcess } from '../../cli/process.js';
import { duckdb, postgres, rowText } from '../../actors/validator/normalize.js';
import { PG_SESSION_OPTIONS } from '../../actors/validator/index.js';
import { startPostgres } from '../services/postgres.js';
import { startRedis } from '../services/redis.js';
import { clockTicks, cpuSample, type CpuSample } from './proc.js';
import { printTable, round, scaled, timed } from './support.js';

const ROWS = scaled(10_000_000, 10_000);
const DIFFS = 100;
const COLUMNS = [
  { name: 'id', pgType: 'bigint', isKey: true },
  { name: 'name', pgType: 'text', isKey: false },
  { name: 'amount', pgType: 'numeric(12,2)', isKey: false },
  { name: 'qty', pgType: 'integer', isKey: false },
  { name: 'created', pgType: 'timestamp with time zone', isKey: false },
  { name: 'flag', pgType: 'boolean', isKey: false },
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU µs per table row of each part (this process: validator + DuckDB; postgres; redis) over a phase. */
function cpuPerRow(before: CpuSample | undefined, after: CpuSample | undefined): Record<string, number> {
  if (!before || !after) return {};
  const out: Record<string, number> = {};
  for (const [part, ticks] of after.parts) out[part] = round(((ticks - (before.parts.get(part) ?? 0)) / clockTicks / ROWS) * 1e6, 2);
  out['machine busy'] = round(((after.busy - before.busy) / clockTicks / ROWS) * 1e6, 2);
  return out;
}
const sample = () => cpuSample(new Map(), 'node (validator + DuckDB)');

const pgServer = await startPostgres({ mode: 'test' });
const redisServer = await startRedis({ mode: 'test' });
const dir = mkdtempSync(join(tmpdir(), 'concord-bench-validate-'));
const duckPath = join(dir, 'copy.duckdb');
const db = new pg.Pool({ connectionString: pgServer.url, max: 4 });
db.on('error', () => undefined); // the server stops at the end
let proc: Awaited<ReturnType<typeof startProcess>> | undefined;
try {
  await migrateDatabase('postgres', pgServer.url, createLogger('warn'));
  const load = await timed(async () => {
    await db.query(`CREATE TABLE bench_items (id bigint PRIMARY KEY, name text, amount numeric(12,2), qty integer, created timestamptz, flag boolean)`);
    // Loaded in 8 slices over 4 connections (one INSERT of 10M rows leaves a core idle).
    const slices = 8;
    const per = Math.ceil(ROWS / slices);
    const ranges = Array.from({ length: slices }, (_, i) => [i * per + 1, Math.min(ROWS, (i + 1) * per)] as const);
    await Promise.all(
      ranges.map(([lo, hi]) =>
        db.query(
          `INSERT INTO bench_items SELECT g, 'item ' || g, (g % 100000) / 100.0, g % 1000, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', g % 2 = 0
             FROM generate_series($1::bigint, $2::bigint) g`,
          [lo, hi],
        ),
      ),
    );
    await db.query('VACUUM ANALYZE bench_items');
    const duck = await DuckDBInstance.create(duckPath);
    const c = await duck.connect();
    await c.run(`CREATE TABLE bench_items (id BIGINT PRIMARY KEY, name VARCHAR, amount DECIMAL(12,2), qty INTEGER, created TIMESTAMPTZ, flag BOOLEAN)`);
    await c.run(
      `INSERT INTO bench_items SELECT g, 'item ' || g, CAST((g % 100000) / 100 AS DECIMAL(12,2)), CAST(g % 1000 AS INTEGER),
              TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(g), g % 2 = 0 FROM range(1, ${ROWS + 1}) t(g)`,
    );
    c.closeSync();
    duck.closeSync();
  });
  console.log(`loaded ${ROWS} rows into PostgreSQL and DuckDB in ${round(load.seconds, 1)} s`);

  const env = {
    REDIS_URL: redisServer.url,
    DATABASE_URL: pgServer.url,
    PORT: '0',
    HOST: '127.0.0.1',
    AUTH_MODE: 'none',
    CONCORD_QUEUE_PREFIX: 'bench-validate',
    DUCKDB_DATABASE_PATH: duckPath,
    // The k8s writer's setting: planting the differences (an UPDATE through the 10M-key ART
    // index) ran out of the 256MB default (check (a) before it completed within 256MB).
    DUCKDB_MEMORY_LIMIT: '1GB',
    ...(process.env.DUCKDB_WORKER_THREADS ? { DUCKDB_WORKER_THREADS: process.env.DUCKDB_WORKER_THREADS } : {}),
    LOG_LEVEL: 'warn',
    KAFKA_BROKERS: '',
    DATA_SYNC_ENABLED: 'true',
    DATA_SYNC_TABLES: 'bench_items',
    ENABLE_SYNC_MONITORING: 'false',
    VALIDATOR_CHECK_INTERVAL_SECONDS: '0',
    VALIDATOR_RECHECK_DELAY_SECONDS: '0',
  };
  const p = (proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', 'dual-writer,validator', env), onEscalate: () => undefined }));
  const check = async () => {
    const res = await fetch(`${p.http.url}/api/v1/data-sync/consistency/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tables: ['bench_items'], check_types: ['data_hash'] }) });
    const { run_id } = (await res.json()) as { run_id: string };
    for (;;) {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const report = (await (await fetch(`${p.http.url}/api/v1/data-sync/consistency/reports/${run_id}`)).json()) as any;
      if (report.status === 'completed' || report.status === 'failed') return report.results[0];
      await sleep(50);
    }
  };
  while (!p.runtime.services.duckDbLease.held) await sleep(100);
  await sleep(1000); // the validator follows the lease every 500 ms
  // Background CPU of the parts while no check runs (pollers, WAL writer...): subtracted mentally from the phases.
  const idle0 = sample();
  await sleep(2000);
  const idle = cpuPerRow(idle0, sample());
  console.log(`idle CPU over 2 s, µs per table row: ${JSON.stringify(idle)}`);
  const cpu0 = sample();
  const identical = await timed(check);
  const cpu1 = sample();
  if (identical.value.status !== 'passed') throw new Error(`identical stores did not pass: ${JSON.stringify(identical.value).slice(0, 500)}`);

  const conn: DuckDBConnection = await (await p.runtime.services.duckdb()).instance.connect();
  const planted = Array.from({ length: DIFFS }, (_, i) => Math.floor(((i + 0.5) * ROWS) / DIFFS) + 1);
  await conn.run(`UPDATE bench_items SET name = name || ' (edited)' WHERE id IN (${planted.join(',')})`);
  const cpu2 = sample();
  const diff = await timed(check);
  const cpu3 = sample();
  const found = (diff.value.diff_keys as Array<{ key: string }>).map((k) => Number(k.key));
  const allFound = planted.every((k) => found.includes(k)) && found.length === DIFFS;

  // Baseline: every row's canonical text from both sides, in key order, compared in Node.
  const cpu4 = sample();
  const naive = await timed(async () => {
    const duckTypes = Object.fromEntries((await conn.runAndReadAll(`SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'bench_items'`)).getRows().map((r) => [String(r[0]), String(r[1])]));
    const client = new pg.Client({ connectionString: pgServer.url, options: PG_SESSION_OPTIONS });
    await client.connect();
    await client.query('BEGIN');
    await client.query(`DECLARE naive NO SCROLL CURSOR FOR SELECT id, ${rowText(postgres, COLUMNS)} FROM bench_items ORDER BY id`);
    const stream = await conn.stream(`SELECT CAST(id AS VARCHAR), ${rowText(duckdb, COLUMNS, duckTypes)} FROM bench_items ORDER BY id`);
    let duckRows: unknown[][] = [];
    let di = 0;
    let differing = 0;
    let compared = 0;
    const nextDuck = async (): Promise<unknown[] | undefined> => {
      if (di >= duckRows.length) {
        const chunk = await stream.fetchChunk();
        if (!chunk || chunk.rowCount === 0) return undefined;
        duckRows = chunk.getRows();
        di = 0;
      }
      return duckRows[di++];
    };
    for (;;) {
      const { rows } = await client.query<{ id: string; '?column?': string }>({ text: 'FETCH 50000 FROM naive', rowMode: 'array' } as never);
      if (rows.length === 0) break;
      for (const r of rows as unknown as string[][]) {
        const d = await nextDuck();
        compared++;
        if (!d || String(d[0]) !== r[0] || d[1] !== r[1]) differing++;
      }
    }
    await client.query('COMMIT');
    await client.end();
    conn.closeSync();
    return { differing, compared };
  });

  const cpu5 = sample();
  const s = (x: number) => round(x, 2);
  const cpu = { identical: cpuPerRow(cpu0, cpu1), diff: cpuPerRow(cpu2, cpu3), naive: cpuPerRow(cpu4, cpu5) };
  console.log(`CPU µs per table row, by part (robust to other load on the machine): ${JSON.stringify(cpu)}`);
  printTable([
    { phase: 'validator: identical (verdict)', seconds: s(identical.seconds), rows_downloaded: identical.value.details.rowsDownloaded, found: 0 },
    { phase: `validator: ${DIFFS} scattered diffs`, seconds: s(diff.seconds), rows_downloaded: diff.value.details.rowsDownloaded, found: found.length },
    { phase: 'naive full compare (baseline)', seconds: s(naive.seconds), rows_downloaded: naive.value.compared * 2, found: naive.value.differing },
  ]);
  console.log(`rows downloaded by the validator: ${round((100 * diff.value.details.rowsDownloaded) / ROWS, 3)}% of the table; all planted keys found: ${allFound}; levels ${diff.value.details.levels}`);
  console.log(
    JSON.stringify({
      bench: 'validate',
      rows: ROWS,
      identical_s: s(identical.seconds),
      diff_s: s(diff.seconds),
      diffs_planted: DIFFS,
      diffs_found: found.length,
      all_planted_found: allFound,
      rows_downloaded: diff.value.details.rowsDownloaded,
      rows_downloaded_pct: round((100 * diff.value.details.rowsDownloaded) / ROWS, 3),
      naive_s: s(naive.seconds),
      naive_diffs_found: naive.value.differing,
      speedup: round(naive.seconds / diff.seconds, 1),
      speedup_identical: round(naive.seconds / identical.seconds, 1),
      load_s: round(load.seconds, 1),
      phase_ms: { identical: identical.value.details.phaseMs, diff: diff.value.details.phaseMs },
      cpu_us_per_row: cpu,
    }),
  );
} catch (err) {
  // Printed before the teardown: stopping PostgreSQL under live connections can end the process first.
  console.error('validate bench failed:', err);
  process.exitCode = 1;
} finally {
  await proc?.stop(10_000).catch(() => undefined);
  await db.end().catch(() => undefined);
  await pgServer.stop().catch(() => undefined);
  await redisServer.stop().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}
