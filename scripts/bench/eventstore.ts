/**
 * Event store benchmark (issue 9): appends per second (one stream and 1,000 streams,
 * batches of 1 and 100), aggregate load of a 10,000-event stream with and without its
 * snapshot, and async projection throughput (order-summary runner, batches of 1000, its default).
 *
 * Baselines measured in the same run on the same server:
 * - appends: plain INSERTs of the same rows into a table with the same columns and no
 *   store logic (no stream lock, no version check), same batching and concurrency;
 * - projection: reading the same events in the same batches without applying them
 *   (and, for comparison, reading them as rows, as LogReader did before it read one JSON document per batch).
 * Figures from a shared 2-core machine are noisy: compare the ratios, not the absolutes.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createLogger } from '../../runtime/index.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { EventStore, LogReader, ProjectionRunner, Upcasters, projectionStatuses, type NewEvent, type StoredEvent } from '../../cqrs/index.js';
import { EVENT_COLUMNS, rowToEvent, type EventRow } from '../../cqrs/rows.js';
import { Order, registerOrderUpcasters } from '../../cqrs/example/order.js';
import { orderSummaryProjection } from '../../cqrs/example/order-summary.js';
import { startPostgres } from '../services/postgres.js';
import { printTable, round, scaled, timed } from './support.js';

const WRITERS = 4;
const note = (m: string) => process.stderr.write(`[eventstore bench] ${m}\n`);
const item = (i: number): NewEvent => ({ type: 'item_added', schemaVersion: 2, data: { sku: `sku-${i}`, quantity: 1 + (i % 3), unit_price_cents: 100 + (i % 50) } });

const pgServer = await startPostgres({ mode: 'test' });
const admin = new pg.Client({ connectionString: pgServer.url });
await admin.connect();
await admin.query('DROP DATABASE IF EXISTS bench_eventstore');
await admin.query('CREATE DATABASE bench_eventstore');
await admin.end();
const url = (() => {
  const u = new URL(pgServer.url);
  u.pathname = '/bench_eventstore';
  return u.toString();
})();
await migrateDatabase('postgres', url, createLogger('silent'));
const pool = new pg.Pool({ connectionString: url, max: WRITERS + 2 });
// pool.end() resolves before its clients' sockets close; the server's shutdown right after must not crash the run.
pool.on('error', () => undefined);
const store = new EventStore(pool, { upcasters: registerOrderUpcasters(new Upcasters()) });
await pool.query(`CREATE TABLE baseline_events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, stream_id text NOT NULL, version bigint NOT NULL,
  event_id uuid NOT NULL UNIQUE, event_type text NOT NULL, schema_version int NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL DEFAULT '{}')`);

async function baselineInsert(streamId: string, events: NewEvent[], from: number): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(
      `INSERT INTO baseline_events (stream_id, version, event_id, event_type, schema_version, data)
       SELECT $1, $2::bigint + u.n, u.id, u.type, u.sv, u.data::jsonb FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[]) WITH ORDINALITY AS u(id, type, sv, data, n)`,
      [streamId, from, events.map(() => randomUUID()), events.map((e) => e.type), events.map((e) => e.schemaVersion ?? 1), events.map((e) => JSON.stringify(e.data))],
    );
    await c.query('COMMIT');
  } finally {
    c.release();
  }
}

/** `total` events in appends of `batch`, over `streams` streams, by WRITERS concurrent writers (one stream: one writer). */
async function appendRun(label: string, total: number, batch: number, streams: number) {
  const appends = Math.ceil(total / batch);
  const writers = streams === 1 ? 1 : WRITERS;
  const tag = randomUUID().slice(0, 8);
  const versions = new Map<string, number>();
  const work = async (write: (stream: string, events: NewEvent[], from: number) => Promise<void>, prefix: string) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: writers }, async () => {
        for (let k = next++; k < appends; k = next++) {
          const stream = `${prefix}-${tag}-${k % streams}`;
          const events = Array.from({ length: batch }, (_, i) => item(k * batch + i));
          const from = versions.get(stream) ?? 0;
          versions.set(stream, from + batch);
          await write(stream, events, from);
        }
      }),
    );
  };
  const s = await timed(() => work(async (stream, events) => void (await store.append(stream, events)), 'es'));
  versions.clear();
  const b = await timed(() => work(baselineInsert, 'base'));
  const perS = (appends * batch) / s.seconds;
  const basePerS = (appends * batch) / b.seconds;
  return { case: label, events: appends * batch, 'store ev/s': round(perS), 'baseline ev/s': round(basePerS), 'store/baseline': round(perS / basePerS, 2) };
}

note('appends');
const appendRows = [
  await appendRun('1 stream, batch 1', scaled(3_000, 100), 1, 1),
  await appendRun('1 stream, batch 100', scaled(100_000, 1_000), 100, 1),
  await appendRun('1,000 streams, batch 1', scaled(5_000, 100), 1, 1_000),
  await appendRun('1,000 streams, batch 100', scaled(200_000, 2_000), 100, 1_000),
];

note('aggregate load');
const AGG_EVENTS = 10_000;
const orderId = randomUUID();
{
  const o = new Order(orderId);
  o.create('bench');
  await store.saveAggregate(o);
  for (let saved = 1; saved < AGG_EVENTS; ) {
    const a = await store.loadAggregate(Order, orderId);
    const n = Math.min(1_000, AGG_EVENTS - saved);
    for (let i = 0; i < n; i++) a.addItem({ sku: `s${saved + i}`, quantity: 1, unitPriceCents: 10 });
    await store.saveAggregate(a);
    saved += n;
  }
}
const LOADS = 5;
const loadTime = async (useSnapshot: boolean) => {
  await store.loadAggregate(Order, orderId, { useSnapshot }); // warm
  const t = await timed(async () => {
    for (let i = 0; i < LOADS; i++) await store.loadAggregate(Order, orderId, { useSnapshot });
  });
  return t.seconds / LOADS;
};
const full = await loadTime(false);
const snap = await loadTime(true);
const snapshotSpeedup = full / snap;

note('projection');
const PROJ_EVENTS = scaled(200_000, 2_000);
{
  // Orders of 50 events: created + 48 items + paid, written by WRITERS writers.
  const orders = Math.ceil(PROJ_EVENTS / 50);
  let next = 0;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      for (let k = next++; k < orders; k = next++) {
        const id = `p${k}`;
        const events: NewEvent[] = [{ type: 'order_created', data: { order_id: id, customer_id: 'c' } }, ...Array.from({ length: 48 }, (_, i) => item(i)), { type: 'order_paid', data: { amount_cents: 0 } }];
        await store.append(`order-${id}`, events);
      }
    }),
  );
}
const head = await store.head();
const BATCH = 1000; // the runner's default
const runner = new ProjectionRunner({ connectionString: url, projection: orderSummaryProjection(), upcasters: registerOrderUpcasters(new Upcasters()), batchSize: BATCH, pollMs: 5 });
const proj = await timed(async () => {
  runner.start();
  for (;;) {
    const s = (await projectionStatuses(pool)).find((p) => p.name === 'order-summary');
    if (s && s.lastPosition >= head) return;
    await new Promise((r) => setTimeout(r, 20));
  }
});
await runner.stop();
const projected = (await pool.query<{ n: string }>('SELECT count(*) AS n FROM concord_events')).rows[0]!.n;
type Read = (c: pg.PoolClient, at: number) => Promise<StoredEvent[]>;
const readAll = (read: Read) =>
  timed(async () => {
    const c = await pool.connect();
    try {
      for (let at = 0; at < head; ) {
        const ev = await read(c, at);
        if (ev.length === 0) break;
        at = ev[ev.length - 1]!.position;
      }
    } finally {
      c.release();
    }
  });
const readBase = await readAll((c, at) => LogReader.read(c, at, head, BATCH, store.upcasters));
// The reader before it fetched one JSON document per batch: rows, with the driver parsing each column.
const rowBase = await readAll(async (c, at) => {
  const { rows } = await c.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM concord_events e WHERE position > $1 AND position <= $2 ORDER BY e.position LIMIT $3`, [at, head, BATCH]);
  return rows.map((r) => store.upcasters.upcast(rowToEvent(r)));
});
const projPerS = Number(projected) / proj.seconds;
const readPerS = Number(projected) / readBase.seconds;
const rowReadPerS = Number(projected) / rowBase.seconds;

console.log('\nAppends (WRITERS=%d concurrent writers for 1,000 streams; one writer for one stream)', WRITERS);
printTable(appendRows);
console.log(`\nAggregate load, ${AGG_EVENTS} events (mean of ${LOADS})`);
printTable([
  { load: 'full replay', ms: round(full * 1000, 1) },
  { load: 'snapshot + later events', ms: round(snap * 1000, 2) },
  { load: 'speedup', ms: round(snapshotSpeedup, 1) },
]);
console.log(`\nAsync projection (order-summary, batches of ${BATCH}), ${projected} events`);
printTable([
  { case: 'projection runner', 'events/s': round(projPerS) },
  { case: 'baseline: read the same batches only', 'events/s': round(readPerS) },
  { case: 'runner/baseline', 'events/s': round(projPerS / readPerS, 2) },
  { case: 'same batches read as rows (the reader before)', 'events/s': round(rowReadPerS) },
]);
const batched = appendRows.filter((r) => r.case.includes('batch 100'));
const appendPerS = Math.min(...batched.map((r) => r['store ev/s']));
await pool.end();
await pgServer.stop();
console.log(
  JSON.stringify({
    bench: 'eventstore',
    append_events_per_s: appendPerS,
    append_single_stream_batch1_per_s: appendRows[0]!['store ev/s'],
    append_single_stream_batch100_per_s: appendRows[1]!['store ev/s'],
    append_1000_streams_batch1_per_s: appendRows[2]!['store ev/s'],
    append_1000_streams_batch100_per_s: appendRows[3]!['store ev/s'],
    append_vs_baseline_batch100: Math.min(...batched.map((r) => r['store/baseline'])),
    load_full_replay_ms: round(full * 1000, 1),
    load_snapshot_ms: round(snap * 1000, 2),
    snapshot_speedup: round(snapshotSpeedup, 1),
    projection_events_per_s: round(projPerS),
    projection_read_baseline_per_s: round(readPerS),
    projection_row_read_per_s: round(rowReadPerS),
    targets: { append_events_per_s: 20_000, snapshot_speedup: 20, projection_events_per_s: 20_000 },
  }),
);
