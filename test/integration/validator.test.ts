import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { DuckDBConnection } from '@duckdb/node-api';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { CHECK_WEIGHTS, dataHash, pgSideWork } from '../../actors/validator/index.js';
import type { SideWork } from '../../queues/validate.js';
import { ChecksumCache } from '../../actors/validator/checksum-cache.js';
import { duckdb as duckDialect, postgres as pgDialect, postgresDialect, rowText } from '../../actors/validator/normalize.js';
import { tableLockKey, withTableLock } from '../../actors/validator/run.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';
import { validatorClient, type Body } from '../support/validator-client.js';


const ROWS = 20_000;
const RULES = { items: [{ name: 'amount_not_negative', predicate: 'amount >= 0' }, { name: 'amount_total', aggregate: 'sum(amount)' }] };

/**
 * The validator end to end: real PostgreSQL, the dual-writer holding a real DuckDB file
 * (its full sync makes the copy, its recovery legs repair it), the validator in the same
 * process serving the DuckDB side, real Redis queues between them, the HTTP API.
 */
describe('validator: data_hash, rules, foreign keys, score, repair', () => {
  let dir: string;
  let proc: RunningProcess;
  let db: pg.Pool;
  let conn: DuckDBConnection;
  // The alert webhook: answers 500 to the first two deliveries of each notification, then 200.
  let hook: Server;
  const deliveries: Array<{ event: string; rule: string; subject: string; status: number }> = [];

  const { call, duck, runCheck } = validatorClient(() => ({ proc, conn }));
  const result = (report: Body, table: string, type: string, name = type): Body => report.results.find((r: Body) => r.table === `public.${table}` && r.check_type === type && r.check_name === name);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'concord-validator-'));
    const { redisUrl, databaseUrl } = testServices();
    const url = await freshDatabase(databaseUrl, uniquePrefix('val').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: url, max: 3 });
    await db.query(`CREATE TABLE parents (id bigint PRIMARY KEY, label text NOT NULL)`);
    await db.query(`INSERT INTO parents SELECT g, 'p' || g FROM generate_series(1, 10) g`);
    await db.query(`CREATE TABLE items (
      id bigint PRIMARY KEY, parent_id bigint REFERENCES parents(id), name text, note text, amount numeric(12,2), exact numeric,
      ratio double precision, flag boolean, at timestamptz, ts timestamp(3), day date)`);
    await db.query(
      `INSERT INTO items SELECT g, g % 10 + 1, 'item ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, (g % 1000) / 100.0, (g % 50) / 10.0,
              g / 3.0, g % 2 = 0, timestamptz '2024-01-01 00:00:00+00' + g * interval '1.000001 second', timestamp '2024-01-01' + g * interval '1 minute', date '2024-01-01' + g % 400
         FROM generate_series(1, $1) g`,
      [ROWS],
    );
    await db.query(`UPDATE items SET ratio = 0.3 WHERE id IN (600, 601)`);
    await db.query(`ANALYZE items`);
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const { event, alert } = JSON.parse(body) as { event: string; alert: { rule: string; subject: string } };
        const tries = deliveries.filter((d) => d.event === event && d.rule === alert.rule && d.subject === alert.subject).length;
        const status = tries < 2 ? 500 : 200;
        deliveries.push({ event, rule: alert.rule, subject: alert.subject, status });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const env = runtimeEnv({ redisUrl, databaseUrl: url, prefix: uniquePrefix('val') }, {
      DUCKDB_DATABASE_PATH: join(dir, 'copy.duckdb'),
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      KAFKA_BROKERS: '',
      DATA_SYNC_ENABLED: 'true',
      DATA_SYNC_TABLES: 'items,parents',
      VALIDATOR_CHECK_INTERVAL_SECONDS: '0',
      VALIDATOR_DOWNLOAD_THRESHOLD: '64',
      VALIDATOR_RECHECK_DELAY_SECONDS: '0',
      VALIDATOR_BUSINESS_RULES: JSON.stringify(RULES),
      ENABLE_SYNC_MONITORING: 'true',
      MONITORING_INTERVAL_SECONDS: '1',
      ALERT_WEBHOOK_URL: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`,
      ALERT_WEBHOOK_RETRY_DELAY_MS: '100',
    });
    proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', 'dual-writer,validator,monitoring', env), onEscalate: () => undefined });
    for (const t of ['parents', 'items']) expect((await call('POST', `/api/v1/data-sync/sync/table/${t}/full`)).status).toBe(202);
    conn = await (await proc.runtime.services.duckdb()).instance.connect();
    await eventually(async () => (expect(await duck('SELECT count(*)::INT AS n FROM items')).toEqual([{ n: ROWS }]), true), 30_000);
  }, 120_000);

  afterAll(async () => {
    conn?.closeSync();
    await proc?.stop(10_000);
    await db?.end();
    await new Promise((r) => hook?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('identical stores: every check passes and the score is 100', async () => {
    const report = await runCheck({});
    expect(report.results.filter((r: Body) => r.status !== 'passed' && r.status !== 'skipped')).toEqual([]);
    expect(result(report, 'items', 'data_hash')).toMatchObject({ status: 'passed', source_count: ROWS, copy_count: ROWS, diff_total: 0 });
    expect(result(report, 'items', 'referential_integrity', 'items_parent_id_fkey').status).toBe('passed');
    expect(result(report, 'parents', 'business_rules').status).toBe('skipped');
    expect(report.consistency_score).toBe(100);
  });

  it('finds exactly the differing keys (NULL vs empty, numeric, µs, float, boolean, deleted, added), not rows equal after normalisation; repair makes the next check pass', async () => {
    await conn.run(`DELETE FROM items WHERE id = 100;
      INSERT INTO items (id, parent_id, name) VALUES (999999, 1, 'stray');
      UPDATE items SET note = '' WHERE id = 7;                                   -- NULL in PostgreSQL
      UPDATE items SET amount = -amount WHERE id = 300;                          -- real difference, breaks the rule too
      UPDATE items SET exact = '1.50' WHERE id = 415;                            -- PostgreSQL has 1.5: scale only, equal
      UPDATE items SET exact = '1.51' WHERE id = 15;                             -- PostgreSQL has 1.5: differs
      UPDATE items SET "at" = "at" + INTERVAL 1 MICROSECOND WHERE id = 500;      -- one microsecond
      UPDATE items SET ratio = 0.1 + 0.2 WHERE id = 600;                         -- 0.30000000000000004 vs 0.3: equal at %.15g
      UPDATE items SET ratio = 0.31 WHERE id = 601;
      UPDATE items SET flag = NOT flag WHERE id = 700;
      UPDATE items SET flag = NULL WHERE id = 703;                               -- false in PostgreSQL: NULL is not false
      DELETE FROM parents WHERE id = 3;`);
    const report = await runCheck({ tables: ['items', 'parents'] });
    const hash = result(report, 'items', 'data_hash');
    expect(hash.status).toBe('failed');
    expect(hash.diff_keys).toEqual([
      { key: '7', kind: 'changed' },
      { key: '15', kind: 'changed' },
      { key: '100', kind: 'missing_in_copy' },
      { key: '300', kind: 'changed' },
      { key: '500', kind: 'changed' },
      { key: '601', kind: 'changed' },
      { key: '700', kind: 'changed' },
      { key: '703', kind: 'changed' },
      { key: '999999', kind: 'extra_in_copy' },
    ]);
    // Bisected, not downloaded: only small segments were read.
    expect(hash.details.rowsDownloaded).toBeLessThan(ROWS / 10);
    expect(hash.details.levels).toBeGreaterThanOrEqual(2);
    expect(hash.details.segmentsChecked).toBeGreaterThanOrEqual(1);
    expect(result(report, 'items', 'row_count')).toMatchObject({ status: 'passed', source_count: ROWS, copy_count: ROWS });
    expect(result(report, 'parents', 'row_count')).toMatchObject({ status: 'failed', source_count: 10, copy_count: 9 });
    expect(result(report, 'parents', 'data_hash').diff_keys).toEqual([{ key: '3', kind: 'missing_in_copy' }]);
    const rule = result(report, 'items', 'business_rules', 'amount_not_negative');
    expect(rule).toMatchObject({ status: 'failed', diff_total: 1, diff_keys: [{ key: '300', kind: 'violation_in_copy' }] });
    expect(result(report, 'items', 'business_rules', 'amount_total').status).toBe('failed');
    const fk = result(report, 'items', 'referential_integrity', 'items_parent_id_fkey');
    expect(fk).toMatchObject({ status: 'failed', diff_total: ROWS / 10 });
    expect(fk.diff_keys.slice(0, 2)).toEqual([{ key: '2', kind: 'orphan_in_copy' }, { key: '12', kind: 'orphan_in_copy' }]);
    // The score is the weighted share of passed checks (README): recomputed here from the verdicts.
    const counted = report.results.filter((r: Body) => r.status !== 'skipped');
    const expected = (100 * counted.filter((r: Body) => r.status === 'passed').reduce((s: number, r: Body) => s + r.weight, 0)) / counted.reduce((s: number, r: Body) => s + r.weight, 0);
    expect(report.consistency_score).toBeCloseTo(expected, 1);
    expect(report.consistency_score).toBeLessThan(100);

    // Alerts: one per table below CONSISTENCY_SCORE_ALERT_THRESHOLD (90), delivered once after two failed attempts.
    const firingSubjects = () => deliveries.filter((d) => d.event === 'firing' && d.status === 200).map((d) => d.subject).sort();
    await eventually(async () => (expect(firingSubjects()).toEqual(['public.items', 'public.parents']), true), 20_000);
    const alerts = (await call('GET', '/api/v1/data-sync/monitoring/alerts')).body.alerts as Body[];
    expect(alerts.map((a) => [a.rule, a.subject, a.state])).toEqual(expect.arrayContaining([['consistency_score', 'public.items', 'firing'], ['consistency_score', 'public.parents', 'firing']]));
    expect(alerts.find((a) => a.subject === 'public.items')!.message).toMatch(/consistency score of public.items is [\d.]+% \(threshold 90%\)/);
    const dashboard = (await call('GET', '/api/v1/data-sync/monitoring/dashboard')).body;
    expect(dashboard.consistency.tables).toEqual(expect.arrayContaining([expect.objectContaining({ table: 'public.parents', score: 0 })]));
    expect(dashboard.queues.map((q: Body) => q.queue)).toEqual(expect.arrayContaining(['validate', 'validate.duckdb', 'dualwrite']));
    expect((await call('GET', '/api/v1/data-sync/monitoring/health')).body.status).toBe('degraded');
    const row = await call('GET', '/api/v1/data-sync/consistency/validate/items?primary_key=7');
    expect(row.status).toBe(200);
    expect(row.body).toMatchObject({ consistent: false, status: 'changed', differing_columns: ['note'], postgres: { row: { note: null } }, duckdb: { row: { note: '' } } });
    expect((await call('GET', '/api/v1/data-sync/consistency/validate/items?primary_key=415')).body).toMatchObject({ consistent: true, status: 'equal' });

    const repair = await call('POST', '/api/v1/data-sync/consistency/repair', { run_id: report.id });
    expect(repair.status).toBe(202);
    expect(repair.body.tables).toEqual(expect.arrayContaining([{ table: 'public.items', enqueued: 9, differing: 9, complete: true }, { table: 'public.parents', enqueued: 1, differing: 1, complete: true }]));
    await eventually(async () => (expect(await duck('SELECT count(*)::INT AS n FROM items WHERE id IN (100, 999999)')).toEqual([{ n: 1 }]), true), 20_000);
    await eventually(async () => (expect(await duck('SELECT count(*)::INT AS n FROM parents')).toEqual([{ n: 10 }]), true), 20_000);
    const after = await runCheck({ tables: ['items', 'parents'] });
    expect(after.results.filter((r: Body) => r.status !== 'passed' && r.status !== 'skipped')).toEqual([]);
    expect(after.consistency_score).toBe(100);
    // Resolved once the score is back; while it was low, each alert was delivered once (3 attempts, no repeats).
    await eventually(async () => (expect(deliveries.filter((d) => d.event === 'resolved' && d.status === 200).map((d) => d.subject).sort()).toEqual(['public.items', 'public.parents']), true), 20_000);
    expect(deliveries.filter((d) => d.event === 'firing' && d.subject === 'public.items').map((d) => d.status)).toEqual([500, 500, 200]);
    expect((await call('GET', '/api/v1/data-sync/monitoring/alerts')).body.alerts).toEqual([]);
    const resolved = (await call('GET', '/api/v1/data-sync/monitoring/alerts?state=resolved')).body.alerts as Body[];
    expect(resolved.find((a) => a.subject === 'public.items')).toMatchObject({ state: 'resolved', first_seen: expect.any(String), last_seen: expect.any(String), resolved_at: expect.any(String) });
    expect((await call('GET', '/api/v1/data-sync/monitoring/health')).body.status).toBe('healthy');
    const prom = await fetch(`${proc.http.url}/api/v1/data-sync/monitoring/metrics/prometheus`).then((r) => r.text());
    expect(prom).toMatch(/concord_consistency_score\{table="public.items"\} 100/);
    expect(prom).toMatch(/concord_validator_run_seconds_count\{trigger="manual"\} [1-9]/);
    const status = await call('GET', '/api/v1/data-sync/consistency/status');
    expect(status.body).toMatchObject({ consistency_score: 100, latest_run: { id: after.id } });
    expect(status.body.tables.map((t: Body) => [t.table, t.consistency_score])).toEqual([['public.items', 100], ['public.parents', 100]]);
  }, 120_000);

  it('one run at a time per table: a second run waits for the lock, or reports the table busy past its wait', async () => {
    const redis = proc.runtime.services.redis;
    const key = tableLockKey(`lock-${Date.now()}`, 'public.items');
    const events: string[] = [];
    const hold = (owner: string, ms: number) => async () => {
      events.push(`${owner} in`);
      await new Promise((r) => setTimeout(r, ms));
      events.push(`${owner} out`);
      return owner;
    };
    const a = withTableLock(redis, key, 'run-a', 1000, hold('a', 400));
    await new Promise((r) => setTimeout(r, 50));
    const [busy, waited] = await Promise.all([withTableLock(redis, key, 'run-b', 100, hold('b', 10)), withTableLock(redis, key, 'run-c', 5000, hold('c', 10))]);
    expect([await a, busy, waited]).toEqual(['a', 'busy', 'c']);
    expect(events).toEqual(['a in', 'a out', 'c in', 'c out']);
    expect(await redis.exists(key)).toBe(0);
  });

  it('numeric canonical text: DuckDB DECIMALs (trimmed arithmetically) equal PostgreSQL trim_scale', async () => {
    const values = ['1.50', '10.00', '-0.50', '0.00', '-0.00', '123.45', '100.10', '-7.00', '99999999.99', '0.0001', '-12.3400'];
    for (const [pgType, duckType] of [['numeric(12,2)', 'DECIMAL(12,2)'], ['numeric(18,4)', 'DECIMAL(18,4)'], ['numeric(20,8)', 'DECIMAL(20,8)']] as const) {
      const col = { name: 'v', pgType, isKey: false };
      const rows = values.map((v, i) => `(${i}, '${v}')`).join(', ');
      const pgText = (await db.query<{ t: string }>(`SELECT ${pgDialect.norm(col, `s::${pgType}`)} AS t FROM (VALUES ${rows}) x(i, s) ORDER BY i`)).rows.map((r) => r.t);
      const duckText = (await conn.runAndReadAll(`SELECT ${duckDialect.norm(col, 'v', duckType)} AS t FROM (SELECT i, CAST(s AS ${duckType}) AS v FROM (VALUES ${rows}) x(i, s)) ORDER BY i`)).getRows().map((r) => String(r[0]));
      expect(duckText).toEqual(pgText);
    }
  });

  it('row checksums: PostgreSQL 18, the pre-18 spelling and DuckDB give the same 64 bits; pre-18 canonical text equals 18', async () => {
    const texts = ['', 'a', '|', '\\N', 'é ü 雪 🙂', 'x'.repeat(1000), '0:|5:item1|1.5'];
    const rows = texts.map((t, i) => `(${i}, '${t.replace(/'/g, "''")}')`).join(', ');
    const pre18 = postgresDialect(170000);
    const fromPg = async (d: typeof pgDialect) =>
      (await db.query<{ h: string }>(`SELECT (${d.textHash64('s')})::text AS h FROM (VALUES ${rows}) x(i, s) ORDER BY i`)).rows.map((r) => BigInt.asUintN(64, BigInt(r.h)).toString());
    const fromDuck = (await conn.runAndReadAll(`SELECT CAST(${duckDialect.textHash64('s')} AS VARCHAR) FROM (VALUES ${rows}) x(i, s) ORDER BY i`)).getRows().map((r) => String(r[0]));
    // Independent of both: bytes 8..15 of the md5 digest, little-endian.
    const expected = texts.map((t) => createHash('md5').update(t, 'utf8').digest().readBigUInt64LE(8).toString());
    expect(await fromPg(pgDialect)).toEqual(expected);
    expect(await fromPg(pre18)).toEqual(expected);
    expect(fromDuck).toEqual(expected);
    // The canonical text of every column type of `items` is the same with the pre-18 expressions.
    const cols = (await db.query<{ name: string; t: string }>(`SELECT attname AS name, format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped`)).rows;
    const columns = cols.map((c) => ({ name: c.name, pgType: c.t, isKey: c.name === 'id' }));
    const [{ differing }] = (await db.query<{ differing: string }>(`SELECT count(*)::text AS differing FROM items WHERE ${rowText(pgDialect, columns)} IS DISTINCT FROM ${rowText(pre18, columns)}`)).rows as [{ differing: string }];
    expect(differing).toBe('0');
  });

  it('PostgreSQL checksums are reused while the rows are unchanged, and rehashed only where a row changed or went', async () => {
    // Its own table (not copied), with an integer (int4) key: the range scans must use the index.
    await db.query(`CREATE TABLE cache_probe (id integer PRIMARY KEY, v text, at timestamptz)`);
    await db.query(`INSERT INTO cache_probe SELECT g, 'v' || g, timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(1, 5000) g`);
    const columns = [
      { name: 'id', pgType: 'integer', isKey: true },
      { name: 'v', pgType: 'text', isKey: false },
      { name: 'at', pgType: 'timestamp with time zone', isKey: false },
    ];
    const work = { table: 'public.cache_probe', columns, op: 'checksum' as const, lo: '1', hi: '5001', width: '100' };
    const seen: string[] = [];
    const spy = new Proxy(db, {
      get: (t, p) => (p === 'query' ? (q: string | { text: string }, ...rest: unknown[]) => (seen.push(typeof q === 'string' ? q : q.text), t.query(q as never, ...(rest as []))) : Reflect.get(t, p)),
    });
    const sorted = (r: { buckets?: Array<{ b: string; n: string; h: string }> }) => [...r.buckets!].sort((a, b) => Number(a.b) - Number(b.b));
    const hashed = () => seen.splice(0).filter((q) => q.includes('md5('));
    const cache = new ChecksumCache(10_000);

    const first = await pgSideWork(spy, work, cache);
    expect(sorted(first)).toEqual(sorted(await pgSideWork(db, work)));
    expect(cache.buckets).toBe(50);
    hashed();
    expect(sorted(await pgSideWork(spy, work, cache))).toEqual(sorted(first));
    expect(hashed()).toEqual([]); // unchanged: a fingerprint scan only

    await db.query(`UPDATE cache_probe SET v = 'changed' WHERE id = 250`);
    await db.query(`DELETE FROM cache_probe WHERE id BETWEEN 4901 AND 5000`);
    const after = await pgSideWork(spy, work, cache);
    const rehashed = hashed();
    expect(rehashed).toHaveLength(1);
    expect(rehashed[0]).toContain('unnest'); // just the moved sub-segments
    expect(sorted(after)).toEqual(sorted(await pgSideWork(db, work)));
    expect(sorted(after).filter((b, i) => b.h !== sorted(first)[i]!.h).map((b) => b.b)).toEqual(['2']);
    expect(sorted(after).map((b) => b.b)).not.toContain('49');
    await db.query(`DROP TABLE cache_probe`);
  });

  it('data_hash plans with PostgreSQL\'s row estimate but reports exact counts; small differing sub-segments come in one batched download', async () => {
    // Not copied: both "sides" are this PostgreSQL table and a second one, so only the counting is under test.
    for (const t of ['est_a', 'est_b']) {
      await db.query(`CREATE TABLE ${t} (id bigint PRIMARY KEY, v text)`);
      await db.query(`INSERT INTO ${t} SELECT g, 'v' || g FROM generate_series(1, 150000) g`);
      await db.query(`VACUUM ANALYZE ${t}`);
    }
    // Stale statistics: 10,000 rows gone from a, one changed in b, no ANALYZE since.
    await db.query(`DELETE FROM est_a WHERE id % 15 = 0`);
    await db.query(`UPDATE est_b SET v = 'changed' WHERE id = 77777`);
    const columns = [
      { name: 'id', pgType: 'bigint', isKey: true },
      { name: 'v', pgType: 'text', isKey: false },
    ];
    const bounds = await pgSideWork(db, { table: 'public.est_a', columns, op: 'bounds', estimate: true });
    expect(Number(bounds.bounds!.n)).toBeGreaterThan(140_000); // the estimate, not the 140,000 rows
    expect(bounds.bounds).toMatchObject({ min: '1', max: '149999' }); // 150000 went with every 15th
    const ops: string[] = [];
    const side = (table: string) => (w: SideWork) => (ops.push(w.op), pgSideWork(db, { ...w, table }));
    const out = await dataHash({ pg: side('public.est_a'), duck: side('public.est_b') }, 'public.est_a', columns, { factor: 32, threshold: 256, recheckDelayMs: 0 });
    expect([out.sourceCount, out.copyCount]).toEqual([140_000, 150_000]);
    expect(out.diffs).toHaveLength(10_001);
    expect(out.diffs.filter((d) => d.kind === 'changed').map((d) => d.key)).toEqual(['77777']);
    // One checksum level; every differing sub-segment (each holds a deleted row) downloaded in batches, not one job each.
    expect(ops.filter((o) => o === 'rows').length).toBeLessThanOrEqual(2 * Math.ceil((150_000 * 2) / 65_536));
    for (const t of ['est_a', 'est_b']) await db.query(`DROP TABLE ${t}`);
  });

  it('unknown tables and check types are 400 naming them; reports of unknown runs are 404', async () => {
    const bad = await call('POST', '/api/v1/data-sync/consistency/check', { tables: ['items', 'nope'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details.issues).toEqual([{ field: 'tables.1', reason: expect.stringContaining('"nope"') }]);
    const badType = await call('POST', '/api/v1/data-sync/consistency/check', { check_types: ['row_count', 'vibes'] });
    expect(badType.status).toBe(400);
    expect(badType.body.error.details.issues).toEqual([{ field: 'check_types.1', reason: expect.stringContaining('"vibes"') }]);
    expect((await call('GET', '/api/v1/data-sync/consistency/reports/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await call('GET', '/api/v1/data-sync/consistency/validate/items?primary_key=abc')).status).toBe(400);
    expect(CHECK_WEIGHTS.data_hash).toBeGreaterThan(CHECK_WEIGHTS.row_count);
  });
});
