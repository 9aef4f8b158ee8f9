/**
 * `npm run bench -- dual-writer`: the CDC applier alone (no slot, no queue) on a DuckDB file,
 * over a copy that already holds `BENCH_SCALE` x 1,000,000 rows (updates and deletes hit
 * random existing keys of a table of realistic size, not a small fresh one).
 * - applier: synthetic cdc.apply batches (70% updates of existing keys, 20% inserts, 10%
 *   deletes; some keys changed several times per batch) → row changes/s at batches of
 *   1,000 and 10,000, and batches of 1,000 joined 50 at a time (what the actor does when
 *   batches wait in the queue: coalesceBatches), plus updates only.
 * - before (same run): the previous design, a copy with a PRIMARY KEY and INSERT OR REPLACE,
 *   on the same rows and table size.
 * - baseline (same run): bare `INSERT ... SELECT CAST(..) FROM staging` of NEW keys, the DuckDB
 *   ceiling for loading rows; and the staging choice: VARCHAR + CAST in SQL vs typed
 *   Appender values parsed in JS.
 * Figures on a shared 2-core machine are noisy.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBDecimalValue, DuckDBTimestampTZValue, type DuckDBConnection } from '@duckdb/node-api';
import type { Redis } from 'ioredis';
import { openDuckDb } from '../../runtime/index.js';
import type { CdcApplyBatch, CdcChange, CdcRelation } from '../../queues/cdc.js';
import { CdcApplier, DuckWriter } from '../../actors/dual-writer/index.js';
import { coalesceBatches } from '../../actors/dual-writer/coalesce.js';
import { reduceBatch, type PlanRow } from '../../actors/dual-writer/reduce.js';
import { unpackRow } from '../../queues/cdc-rows.js';
import { printTable, round, scaled, timed } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'concord-bench-dw-'));
const duck = await openDuckDb({ path: join(dir, 'bench.duckdb'), threads: 2 });
const conn = duck.connection;
// A Redis stand-in: the applier's only Redis call is one SET per batch.
const redis = { set: async () => 'OK' } as unknown as Redis;
const writer = new DuckWriter({ open: async () => duck, breakerThreshold: 5, breakerHalfOpenMs: 1000 });
const applier = new CdcApplier(writer, redis, 'bench');

const relation: CdcRelation = {
  table: 'public.orders',
  columns: [
    { name: 'id', pgType: 'bigint', typeOid: 20, isKey: true },
    { name: 'customer', pgType: 'text', typeOid: 25, isKey: false },
    { name: 'amount', pgType: 'numeric(12,2)', typeOid: 1700, isKey: false },
    { name: 'status', pgType: 'text', typeOid: 25, isKey: false },
    { name: 'created_at', pgType: 'timestamp with time zone', typeOid: 1184, isKey: false },
    { name: 'qty', pgType: 'integer', typeOid: 23, isKey: false },
  ],
};
const COLUMNS = `id BIGINT, customer VARCHAR, amount DECIMAL(12,2), status VARCHAR, created_at TIMESTAMPTZ, qty INTEGER`;
const CAST = `CAST(c0 AS BIGINT), c1, CAST(c2 AS DECIMAL(12,2)), c3, CAST(c4 AS TIMESTAMPTZ), CAST(c5 AS INTEGER)`;
const row = (id: number, n: number) => [String(id), `customer-${id % 5000}`, ((id * 7 + n) % 100000 / 100).toFixed(2), n % 3 ? 'paid' : 'new', `2024-0${1 + (id % 9)}-1${id % 10} 12:00:00.123456+00`, String(n % 50)];
const EXISTING = scaled(1_000_000);
const fill = (table: string) =>
  conn.run(`INSERT INTO ${table} SELECT i, 'customer-' || (i % 5000), (i % 100000) / 100, 'new', TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i), i % 50 FROM range(1, ${EXISTING + 1}) r(i); CHECKPOINT`);

let lsn = 1;
let nextId = EXISTING + 1;
const randomId = () => 1 + Math.floor(Math.random() * (nextId - 1));
function makeBatch(size: number, updatesOnly = false): CdcApplyBatch {
  const changes: CdcChange[] = [];
  const at = () => `0/${(lsn++).toString(16)}`;
  for (let i = 0; i < size; i++) {
    const r = updatesOnly ? 0.5 : Math.random();
    if (r < 0.2) changes.push({ op: 'upsert', table: relation.table, lsn: at(), values: row(nextId++, i) });
    else if (r < 0.9) changes.push({ op: 'upsert', table: relation.table, lsn: at(), values: row(randomId(), i) });
    else changes.push({ op: 'delete', table: relation.table, lsn: at(), key: [String(randomId())] });
  }
  return { slot: 'bench', epoch: 1, kind: 'stream', lastLsn: changes.at(-1)!.lsn, relations: { [relation.table]: relation }, changes };
}

// The copy: created by the applier (its real shape), then filled to its realistic size.
// (A delete of a missing key makes the applier create the table and writes nothing.)
await applier.apply({ slot: 'bench', epoch: 1, kind: 'stream', lastLsn: '0/1', relations: { [relation.table]: relation }, changes: [{ op: 'delete', table: relation.table, lsn: '0/1', key: ['0'] }] });
lsn = 2;
await fill('orders');

const results: Array<Record<string, string | number>> = [];
const figures: Record<string, number> = { existing_rows: EXISTING };
const runs: Array<{ name: string; size: number; join: number; updatesOnly?: boolean; setting?: string }> = [
  { name: 'batch_1000', size: 1000, join: 1 },
  { name: 'batch_10000', size: 10_000, join: 1 },
  { name: 'batch_1000_coalesced_50', size: 1000, join: 50 },
  { name: 'updates_only_batch_10000', size: 10_000, join: 1, updatesOnly: true },
  // DuckDB setting (d): not adopted by the runtime, measured here only (an instance-wide setting).
  { name: 'batch_10000_preserve_insertion_order_false', size: 10_000, join: 1, setting: 'SET preserve_insertion_order = false' },
];
let legacyBatches: CdcApplyBatch[] = [];
for (const run of runs) {
  const batches = Array.from({ length: Math.max(run.join, Math.round(scaled(300_000) / run.size)) }, () => makeBatch(run.size, run.updatesOnly));
  if (run.name === 'batch_10000') legacyBatches = batches.slice(0, Math.max(2, Math.round(scaled(100_000) / 10_000)));
  if (run.setting) await conn.run(run.setting);
  const total = batches.length * run.size;
  const { seconds } = await timed(async () => {
    for (let i = 0; i < batches.length; ) {
      const { batch, joined } = coalesceBatches(batches[i]!, batches.slice(i + 1, i + run.join), 1_000_000);
      await applier.apply(batch);
      i += 1 + joined;
    }
  });
  figures[`applier_rows_per_s_${run.name}`] = round(total / seconds);
  results.push({ what: `applier, ${run.name.replace(/_/g, ' ')}`, changes: total, seconds: round(seconds, 2), 'changes/s': round(total / seconds) });
}
const [check] = (await conn.runAndReadAll(`SELECT count(*) = count(DISTINCT id) FROM orders`)).getRows();
if (check?.[0] !== true) throw new Error('duplicate keys in the copy: the benchmark found a bug');

/** Appends rows as VARCHAR to a temp staging table (c0..c5), emptied first. */
async function stageText(c: DuckDBConnection, name: string, rows: ReadonlyArray<ReadonlyArray<string | null>>): Promise<void> {
  await c.run(`DELETE FROM temp.main.${name}`);
  const ap = await c.createAppender(name, 'main', 'temp');
  for (const r of rows) {
    for (const v of r) {
      if (v === null) ap.appendNull();
      else ap.appendVarchar(v);
    }
    ap.endRow();
  }
  ap.flushSync();
  ap.closeSync();
}

const asValues = (r: PlanRow) => (typeof r === 'string' ? unpackRow(r) : r);

// Before: the previous design (PRIMARY KEY + INSERT OR REPLACE) on the same table size and the same kind of batches.
await conn.run(`CREATE TABLE legacy (${COLUMNS}, PRIMARY KEY (id))`);
await fill('legacy');
await conn.run(`CREATE TEMP TABLE sv (c0 VARCHAR, c1 VARCHAR, c2 VARCHAR, c3 VARCHAR, c4 VARCHAR, c5 VARCHAR); CREATE TEMP TABLE sd (c0 VARCHAR)`);
await conn.run('RESET preserve_insertion_order');
const legacy = await timed(async () => {
  for (const b of legacyBatches) {
    const plan = reduceBatch(b, null).plans[0]!;
    await conn.run('BEGIN');
    await stageText(conn, 'sd', plan.deletes.map(asValues));
    await conn.run(`DELETE FROM legacy t USING temp.main.sd s WHERE t.id = CAST(s.c0 AS BIGINT)`);
    await stageText(conn, 'sv', plan.upserts.map(asValues));
    await conn.run(`INSERT OR REPLACE INTO legacy SELECT ${CAST} FROM temp.main.sv; COMMIT`);
  }
});
const legacyTotal = legacyBatches.length * 10_000;
figures.before_pk_insert_or_replace_rows_per_s_batch_10000 = round(legacyTotal / legacy.seconds);
results.push({ what: 'before: PRIMARY KEY + INSERT OR REPLACE, batches of 10000', changes: legacyTotal, seconds: round(legacy.seconds, 2), 'changes/s': figures.before_pk_insert_or_replace_rows_per_s_batch_10000 });

// Baseline and staging choice: NEW keys into an empty table, no reduction, no LSN.
const n = scaled(200_000);
const rows = Array.from({ length: n }, (_, i) => row(i + 1, i));
await conn.run(`CREATE TABLE base (${COLUMNS}); CREATE TABLE base_typed (${COLUMNS}); CREATE TEMP TABLE st (${COLUMNS})`);
const varchar = await timed(async () => {
  await conn.run('BEGIN');
  await stageText(conn, 'sv', rows);
  await conn.run(`INSERT INTO base SELECT ${CAST} FROM temp.main.sv; COMMIT`);
});
const typed = await timed(async () => {
  await conn.run('BEGIN; DELETE FROM temp.main.st');
  const ap = await conn.createAppender('st', 'main', 'temp');
  for (const r of rows) {
    ap.appendBigInt(BigInt(r[0]!));
    ap.appendVarchar(r[1]!);
    ap.appendDecimal(new DuckDBDecimalValue(BigInt(r[2]!.replace('.', '')), 12, 2));
    ap.appendVarchar(r[3]!);
    ap.appendTimestampTZ(new DuckDBTimestampTZValue(BigInt(Date.parse(r[4]!.replace(' ', 'T').replace('+00', 'Z'))) * 1000n + 456n));
    ap.appendInteger(Number(r[5]));
    ap.endRow();
  }
  ap.flushSync();
  ap.closeSync();
  await conn.run(`INSERT INTO base_typed SELECT * FROM temp.main.st; COMMIT`);
});
figures.baseline_insert_new_keys_rows_per_s = round(n / varchar.seconds);
figures.typed_append_rows_per_s = round(n / typed.seconds);
results.push({ what: 'baseline: VARCHAR staging + CAST insert of new keys (bare SQL)', changes: n, seconds: round(varchar.seconds, 2), 'changes/s': figures.baseline_insert_new_keys_rows_per_s });
results.push({ what: 'typed Appender values parsed in JS + insert', changes: n, seconds: round(typed.seconds, 2), 'changes/s': figures.typed_append_rows_per_s });

await writer.close();
duck.close();
rmSync(dir, { recursive: true, force: true });
printTable(results);
console.log(JSON.stringify({ bench: 'dual-writer', ...figures, peak_rss_mb: round(process.memoryUsage().rss / 1e6) }));
