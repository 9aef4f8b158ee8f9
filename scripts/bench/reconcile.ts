/**
 * Reconcile benchmark: 1,000,000 queue entries synced into an empty portfolio,
 * then 100,000 status changes, through the sync-scheduler's run (the same code a
 * job runs). Ceiling: a plain INSERT ... SELECT of the same rows within one
 * database. Memory is sampled throughout; it must not grow with the entry count.
 */
import pg from 'pg';
import { createLogger, createPgPool } from '../../runtime/index.js';
import { runSync } from '../../actors/sync-scheduler/run.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { startPostgres } from '../services/postgres.js';
import { printTable, round, scaled, SCALE, timed } from './support.js';

const ENTRIES = scaled(1_000_000, 2_000);
const CHANGES = scaled(100_000, 200);
const BATCH = Number(process.env.BATCH_SIZE ?? 2_000);
const log = createLogger('silent');

const server = await startPostgres({ mode: 'test' });
const dbUrl = (name: string) => {
  const u = new URL(server.url);
  u.pathname = `/${name}`;
  return u.toString();
};
const admin = new pg.Client({ connectionString: server.url });
await admin.connect();
for (const db of ['bench_queue', 'bench_portfolio']) {
  await admin.query(`DROP DATABASE IF EXISTS ${db}`);
  await admin.query(`CREATE DATABASE ${db}`);
}
await admin.end();
await migrateDatabase('queue-db', dbUrl('bench_queue'), log);
await migrateDatabase('portfolio-db', dbUrl('bench_portfolio'), log);
const queueDb = createPgPool(dbUrl('bench_queue'), 4);
const portfolioDb = createPgPool(dbUrl('bench_portfolio'), 4);

// Seed: half investments, half withdrawals, in transactions of 50k rows.
for (const table of ['investment_queue', 'withdrawal_queue']) {
  const n = Math.floor(ENTRIES / 2);
  for (let i = 0; i < n; i += 50_000) {
    await queueDb.query(
      `INSERT INTO ${table} (id, user_id, amount, currency, status)
       SELECT gen_random_uuid(), gen_random_uuid(), (g % 10000) + 0.5, 'EUR', 'pending' FROM generate_series(1, $1) AS g`,
      [Math.min(50_000, n - i)],
    );
  }
}
await queueDb.query('ANALYZE');

let peakRss = 0;
const rssAt: number[] = [];
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
let seen = 0;
const onPage = (c: { scanned: number }) => {
  seen += c.scanned;
  if (rssAt.length < 4 && seen >= ((rssAt.length + 1) * ENTRIES) / 4) rssAt.push(process.memoryUsage().rss);
};

const full = await timed(() => runSync({ queueDb, portfolioDb, batchSize: BATCH, log, onPage }, 'bench-full', 'bench'));
if (full.value.created !== ENTRIES) throw new Error(`expected ${ENTRIES} created, got ${full.value.created}`);

await queueDb.query(
  `UPDATE investment_queue SET status = 'processing' WHERE id IN (SELECT id FROM investment_queue ORDER BY id LIMIT $1)`,
  [CHANGES],
);
const changes = await timed(() => runSync({ queueDb, portfolioDb, batchSize: BATCH, log }, 'bench-changes', 'bench'));
if (changes.value.updated !== CHANGES) throw new Error(`expected ${CHANGES} updated, got ${changes.value.updated}`);
clearInterval(sampler);

// Ceiling: the same rows copied by the database alone, no client in between.
await queueDb.query('CREATE TABLE IF NOT EXISTS ceiling_copy (LIKE investment_queue)');
const ceiling = await timed(() =>
  queueDb.query(`INSERT INTO ceiling_copy SELECT * FROM investment_queue UNION ALL SELECT * FROM withdrawal_queue`),
);

await queueDb.end();
await portfolioDb.end();
await server.stop();

const mb = (b: number) => round(b / 1024 / 1024, 1);
const entriesPerS = ENTRIES / full.seconds;
const ceilingPerS = ENTRIES / ceiling.seconds;
console.log(`\nreconcile benchmark (BENCH_SCALE=${SCALE}, BATCH_SIZE=${BATCH})\n`);
printTable([
  { case: `sync ${ENTRIES} entries from empty`, rows: ENTRIES, seconds: round(full.seconds, 2), 'rows/s': round(entriesPerS) },
  { case: `sync ${CHANGES} status changes`, rows: CHANGES, seconds: round(changes.seconds, 2), 'rows/s': round(CHANGES / changes.seconds) },
  { case: 'ceiling: INSERT ... SELECT in one database', rows: ENTRIES, seconds: round(ceiling.seconds, 2), 'rows/s': round(ceilingPerS) },
]);
console.log(`\nRSS at 25/50/75/100% of the full sync: ${rssAt.map(mb).join(' / ')} MB; peak ${mb(peakRss)} MB (target >= 20000 entries/s, flat memory)\n`);
console.log(
  JSON.stringify({
    bench: 'reconcile',
    scale: SCALE,
    batch_size: BATCH,
    entries_per_s: round(entriesPerS),
    changes_per_s: round(CHANGES / changes.seconds),
    ceiling_rows_per_s: round(ceilingPerS),
    ratio_to_ceiling: round(entriesPerS / ceilingPerS, 3),
    peak_rss_mb: mb(peakRss),
    rss_quartiles_mb: rssAt.map(mb),
  }),
);
process.exit(0);
