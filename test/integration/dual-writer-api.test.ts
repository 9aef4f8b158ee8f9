import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { DuckDBConnection } from '@duckdb/node-api';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';
import { cdcAppliedLsnKey, cdcApplyQueue, type CdcApplyBatch, type CdcColumn, type CdcRelation } from '../../queues/cdc.js';

const HOLD = fileURLToPath(new URL('../fixtures/hold-duckdb.ts', import.meta.url));

// Response bodies are read field by field in assertions; their shapes are asserted, not typed.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = Record<string, any>;

interface Harness {
  proc: RunningProcess;
  db: pg.Pool;
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Body }>;
  duck(): Promise<DuckDBConnection>;
}

async function harness(label: string, duckPath: string, extra: Record<string, string> = {}): Promise<Harness> {
  const { redisUrl, databaseUrl } = testServices();
  const url = await freshDatabase(databaseUrl, uniquePrefix(label).replace(/-/g, '_'), 'postgres');
  const db = new pg.Pool({ connectionString: url, max: 3 });
  await db.query(`CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, score numeric(5,2), tags text[], meta jsonb, updated_at timestamptz NOT NULL DEFAULT now())`);
  await db.query(`CREATE TABLE notes (id int PRIMARY KEY, body text)`);
  const env = runtimeEnv({ redisUrl, databaseUrl: url, prefix: uniquePrefix(label) }, {
    DUCKDB_DATABASE_PATH: duckPath,
    LOG_LEVEL: 'silent',
    KAFKA_BROKERS: '',
    DATA_SYNC_ENABLED: 'true',
    DATA_SYNC_TABLES: 'users,notes,events',
    DATA_SYNC_BREAKER_THRESHOLD: '2',
    DATA_SYNC_BREAKER_HALF_OPEN_MS: '1000',
    DATA_SYNC_STRONG_TIMEOUT_MS: '3000',
    ...extra,
  });
  const proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', 'dual-writer', env), onEscalate: () => undefined });
  let conn: DuckDBConnection | undefined;
  return {
    proc,
    db,
    async call(method, path, body) {
      const res = await fetch(`${proc.http.url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : {} };
    },
    async duck() {
      // A connection of its own: never inside the writer's open transaction.
      conn ??= await (await proc.runtime.services.duckdb()).instance.connect();
      return conn;
    },
  };
}

const rowsOf = async (conn: DuckDBConnection, sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJson();
const op = (h: Harness, body: Record<string, unknown>) => h.call('POST', '/api/v1/data-sync/sync/operation', body);

describe('dual-writer API: dual writes, syncs, DLQ', () => {
  let dir: string;
  let h: Harness;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'concord-dwapi-'));
    h = await harness('dwapi', join(dir, 'copy.duckdb'));
  });
  afterAll(async () => {
    await h?.proc.stop(10_000);
    await h?.db.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('strong writes land in both stores before the call returns; eventual writes land through the queue', async () => {
    const created = await op(h, { table_name: 'users', operation_type: 'create', data: { id: 1, name: 'Ada', score: '12.50', tags: ['a', 'b,c'], meta: { k: [1, 2] } }, consistency_level: 'strong' });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({ success: true, operationId: expect.any(String), postgres: 'committed', duckdb: 'applied', strategy: 'real_time', key: { id: '1' } });
    const conn = await h.duck();
    expect(await rowsOf(conn, `SELECT id, name, score::VARCHAR AS score, tags, meta::VARCHAR AS meta FROM users`)).toEqual([{ id: '1', name: 'Ada', score: '12.50', tags: ['a', 'b,c'], meta: '{"k": [1, 2]}' }]);

    const eventual = await op(h, { table_name: 'public.users', operation_type: 'create', data: { id: 2, name: 'Bob' } });
    expect(eventual.status).toBe(202);
    expect(eventual.body).toMatchObject({ success: true, consistency: 'eventual', strategy: 'near_real_time', duckdb: 'queued' });
    await eventually(async () => (await rowsOf(conn, `SELECT name FROM users WHERE id = 2`)).length === 1, 10_000, 100, 'eventual write in DuckDB');

    expect((await op(h, { table_name: 'users', operation_type: 'update', primary_key: 2, data: { name: 'Bobby' }, consistency_level: 'strong' })).body).toMatchObject({ success: true, duckdb: 'applied' });
    expect(await rowsOf(conn, `SELECT name FROM users WHERE id = 2`)).toEqual([{ name: 'Bobby' }]);
    expect((await op(h, { table_name: 'users', operation_type: 'delete', primary_key: { id: 2 }, consistency_level: 'strong' })).body).toMatchObject({ success: true });
    expect(await rowsOf(conn, `SELECT count(*) AS n FROM users WHERE id = 2`)).toEqual([{ n: '0' }]);
    const { rows } = await h.db.query(`SELECT status, count(*)::int AS n FROM concord_dual_write_ops GROUP BY status`);
    await eventually(async () => (await h.db.query(`SELECT count(*)::int AS n FROM concord_dual_write_ops WHERE status <> 'applied'`)).rows[0].n === 0, 5_000, 100, 'operation log applied');
    expect(rows.length).toBeGreaterThan(0);
  });

  it('bad input is a 400 naming the field; missing rows 404; duplicate keys 409', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/api/v1/data-sync/sync/operation', { table_name: 'nope', operation_type: 'create', data: {} }, 'table_name'],
      ['POST', '/api/v1/data-sync/sync/operation', { table_name: 'users', operation_type: 'upsert', data: {} }, 'operation_type'],
      ['POST', '/api/v1/data-sync/sync/operation', { table_name: 'users', operation_type: 'create', data: { id: 5, name: 'x', shoe: 1 } }, 'data.shoe'],
      ['POST', '/api/v1/data-sync/sync/operation', { table_name: 'users', operation_type: 'create', data: { id: 5, name: 'x' }, consistency_level: 'total' }, 'consistency_level'],
      ['POST', '/api/v1/data-sync/sync/operation', { table_name: 'users', operation_type: 'update', data: { name: 'x' } }, 'primary_key'],
      ['POST', '/api/v1/data-sync/sync/table/nope/full', undefined, 'table'],
      ['POST', '/api/v1/data-sync/sync/table/users/full?batch_size=100001', undefined, 'query.batch_size'],
      ['POST', '/api/v1/data-sync/sync/table/users/incremental', { since: 'yesterday' }, 'since'],
      ['POST', '/api/v1/data-sync/sync/table/notes/incremental', { since: '2024-01-01T00:00:00Z' }, 'since'],
    ];
    for (const [method, path, body, field] of cases) {
      const res = await h.call(method, path, body);
      expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      expect(res.body.error.details.issues.map((i: { field: string }) => i.field), path).toContain(field);
    }
    expect((await op(h, { table_name: 'users', operation_type: 'update', primary_key: 404, data: { name: 'x' } })).status).toBe(404);
    expect((await op(h, { table_name: 'users', operation_type: 'create', data: { id: 1, name: 'dup' } })).status).toBe(409);
  });

  it('a leg DuckDB refuses goes to the DLQ with its reason and is retried from the API once the data is fixed', async () => {
    // NaN fits numeric(5,2) in PostgreSQL but not DuckDB's DECIMAL: the leg fails for good.
    const res = await op(h, { table_name: 'users', operation_type: 'create', data: { id: 7, name: 'nan', score: 'NaN' } });
    expect(res.status).toBe(202);
    const id = res.body.operationId as string;
    let entry: Record<string, unknown> | undefined;
    await eventually(async () => {
      const dlq = await h.call('GET', '/api/v1/data-sync/sync/dead-letter-queue');
      entry = (dlq.body.entries as Array<Record<string, unknown>>).find((e) => e.operationId === id);
      return entry !== undefined;
    }, 15_000, 200, 'DLQ entry');
    expect(entry).toMatchObject({ table: 'public.users', operation: 'create', key: ['7'], reason: expect.stringMatching(/Conversion Error|DECIMAL|NaN/i) });
    expect((await h.db.query(`SELECT status, last_error FROM concord_dual_write_ops WHERE id = $1`, [id])).rows[0]).toMatchObject({ status: 'failed', last_error: expect.any(String) });
    await h.db.query(`UPDATE users SET score = 1.25 WHERE id = 7`);
    expect((await h.call('POST', `/api/v1/data-sync/sync/dead-letter-queue/${id}/retry`)).status).toBe(202);
    const conn = await h.duck();
    await eventually(async () => (await rowsOf(conn, `SELECT score::VARCHAR AS s FROM users WHERE id = 7`))[0]?.s === '1.25', 10_000, 100, 'retried leg applied');
    expect((await h.call('POST', `/api/v1/data-sync/sync/dead-letter-queue/${id}/retry`)).status).toBe(404);
  });

  it('cdc.apply batches are applied in order: a failing batch is retried in place, the next waits behind it, a full sync repairs the copy', async () => {
    const { services } = h.proc.runtime;
    const queue = services.queues.queue(cdcApplyQueue.name);
    const id: CdcColumn = { name: 'id', pgType: 'integer', typeOid: 23, isKey: true };
    const before: CdcRelation = { table: 'public.events', columns: [id, { name: 'v', pgType: 'text', typeOid: 25, isKey: false }] };
    const after: CdcRelation = { table: 'public.events', columns: [id] };
    const mk = (lsn: string, relation: CdcRelation, values: string[][]): CdcApplyBatch => ({ slot: 'it_slot', epoch: 1, kind: 'stream', lastLsn: lsn, relations: { 'public.events': relation }, changes: values.map((v) => ({ op: 'upsert', table: 'public.events', lsn, values: v })) });
    const applied = () => services.redis.get(cdcAppliedLsnKey(services.config.queuePrefix, 'it_slot'));
    await queue.add('batch', mk('0/10', before, [['1', 'a'], ['2', 'b']]));
    const conn = await h.duck();
    await eventually(async () => (await applied()) === '0/10', 10_000, 100, 'first batch');
    expect(await rowsOf(conn, `SELECT id, v FROM events ORDER BY id`)).toEqual([{ id: 1, v: 'a' }, { id: 2, v: 'b' }]);
    // Column v is dropped at the source: the copy cannot follow without drift, so the batch is retried, never skipped.
    await h.db.query(`CREATE TABLE events (id int PRIMARY KEY); INSERT INTO events VALUES (1), (2)`);
    await queue.add('batch', mk('0/20', after, [['1']]));
    await queue.add('batch', mk('0/30', after, [['3']]));
    await new Promise((r) => setTimeout(r, 1500));
    expect(await applied()).toBe('0/10');
    expect(await rowsOf(conn, `SELECT count(*) AS n FROM events`)).toEqual([{ n: '2' }]);
    expect((await h.call('GET', '/api/v1/data-sync/sync/status')).body.writer.lastApplyError).toMatch(/dropped or renamed/);
    // The repair: a full sync rebuilds the copy from the table's current shape; the stuck batch then applies, then the next.
    expect((await h.call('POST', '/api/v1/data-sync/sync/table/events/full')).status).toBe(202);
    await eventually(async () => (await applied()) === '0/30', 15_000, 100, 'both batches applied after the repair');
    expect(await rowsOf(conn, `SELECT * FROM events ORDER BY id`)).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
    expect(await queue.getFailedCount()).toBe(0);
  });

  it('cdc.apply batches waiting together are joined into fewer DuckDB transactions; their own jobs are then skipped, the copy is exact', async () => {
    const { services } = h.proc.runtime;
    const queue = services.queues.queue(cdcApplyQueue.name);
    const relation: CdcRelation = { table: 'public.counters', columns: [{ name: 'id', pgType: 'integer', typeOid: 23, isKey: true }, { name: 'v', pgType: 'integer', typeOid: 23, isKey: false }] };
    const batches = Array.from({ length: 30 }, (_, i): CdcApplyBatch => {
      const lsn = `1/${(0x100 + i).toString(16)}`;
      const changes = [['' + (i % 5), '' + i], ['' + (100 + i), '' + i]].map((values) => ({ op: 'upsert' as const, table: 'public.counters', lsn, values }));
      return { slot: 'co_slot', epoch: 1, kind: 'stream', lastLsn: lsn, relations: { 'public.counters': relation }, changes };
    });
    const coalesced = async () => (await services.metrics.registry.getSingleMetric('concord_dual_writer_cdc_batches_coalesced_total')!.get()).values[0]?.value ?? 0;
    const joinedBefore = await coalesced();
    await queue.addBulk(batches.map((data) => ({ name: 'batch', data })));
    await eventually(async () => (await services.redis.get(cdcAppliedLsnKey(services.config.queuePrefix, 'co_slot'))) === batches.at(-1)!.lastLsn, 10_000, 100, 'all batches applied');
    await eventually(async () => (await queue.getWaitingCount()) + (await queue.getActiveCount()) === 0, 10_000, 100, 'every job consumed');
    const conn = await h.duck();
    expect(await rowsOf(conn, `SELECT count(*) AS n, count(DISTINCT id) AS d, sum(v) FILTER (WHERE id < 5) AS last FROM counters`)).toEqual([{ n: '35', d: '35', last: String(25 + 26 + 27 + 28 + 29) }]);
    // `batches` counts committed stream transactions of the slot: fewer than the jobs when they were joined.
    const [state] = await rowsOf(conn, `SELECT batches FROM concord.cdc_state WHERE slot = 'co_slot'`);
    expect(Number(state!.batches)).toBeLessThan(30);
    // Each job was joined once or headed a transaction: a joined job never re-joins the ones after it.
    expect(Number(state!.batches) + (await coalesced()) - joinedBefore).toBe(30);
  });

  it('full and incremental table syncs through the API, with progress in /sync/status', async () => {
    await h.db.query(`INSERT INTO users (id, name, updated_at) SELECT g, 'bulk' || g, '2024-01-01T00:00:00Z' FROM generate_series(100, 1099) g`);
    const full = await h.call('POST', '/api/v1/data-sync/sync/table/users/full?batch_size=300');
    expect(full.status).toBe(202);
    expect(full.body).toMatchObject({ table: 'public.users', mode: 'full', batchSize: 300, status: 'queued' });
    let status: Body = {};
    await eventually(async () => {
      status = (await h.call('GET', '/api/v1/data-sync/sync/status')).body;
      return status.tableSyncs?.some((s: { jobId: string; state: string }) => s.jobId === full.body.jobId && s.state === 'completed');
    }, 15_000, 200, 'full sync done').catch((e) => { console.log(JSON.stringify(status, null, 1)); throw e; });
    const done = status.tableSyncs.find((s: { jobId: string }) => s.jobId === full.body.jobId);
    expect(done.result).toMatchObject({ rows: 1002, batches: 4 });
    const conn = await h.duck();
    expect(await rowsOf(conn, `SELECT count(*) AS n FROM users`)).toEqual([{ n: '1002' }]);
    expect(status).toMatchObject({ enabled: true, strategy: 'hybrid', consistencyLevel: 'eventual', tables: ['public.users', 'public.notes', 'public.events'], writer: { breaker: 'closed', duckdbOpen: true } });

    await h.db.query(`UPDATE users SET name = 'changed', updated_at = '2025-01-01T00:00:00Z' WHERE id IN (100, 101)`);
    await conn.run(`UPDATE users SET name = 'stale-but-old' WHERE id = 102`); // not changed since: stays
    const inc = await h.call('POST', '/api/v1/data-sync/sync/table/users/incremental', { since: '2024-06-01T00:00:00Z' });
    expect(inc.status).toBe(202);
    await eventually(async () => (await rowsOf(conn, `SELECT count(*) AS n FROM users WHERE name = 'changed'`))[0]?.n === '2', 15_000, 200, 'incremental sync');
    expect(await rowsOf(conn, `SELECT name FROM users WHERE id = 102`)).toEqual([{ name: 'stale-but-old' }]);
  });
});

describe('dual-writer API: DuckDB unavailable', () => {
  let dir: string;
  let holder: ChildProcess | undefined;
  let h: Harness;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'concord-dwdown-'));
    const path = join(dir, 'copy.duckdb');
    // Another process holds the file (and its lock): the dual-writer cannot open it.
    holder = spawn(process.execPath, ['--import', 'tsx', HOLD, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      holder!.stdout!.on('data', (d: Buffer) => d.toString().includes('holding') && resolve());
      holder!.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
    h = await harness('dwdown', path);
  });
  afterAll(async () => {
    holder?.kill('SIGKILL');
    await h?.proc.stop(10_000);
    await h?.db.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a strong write reports the DuckDB failure, the breaker opens, and the operation is recovered when DuckDB returns', async () => {
    const results: Body[] = [];
    for (const id of [1, 2, 3]) {
      const res = await op(h, { table_name: 'users', operation_type: 'create', data: { id, name: `u${id}` }, consistency_level: 'strong' });
      expect(res.status).toBe(202);
      expect(res.body).toMatchObject({ success: false, postgres: 'committed', duckdb: 'queued', error: expect.stringMatching(/queued for recovery/) });
      results.push(res.body);
    }
    // PostgreSQL has every row regardless.
    expect((await h.db.query(`SELECT count(*)::int AS n FROM users`)).rows[0].n).toBe(3);
    expect(results.at(-1)!.error).toMatch(/circuit|lock|open/i);
    await eventually(async () => (await h.call('GET', '/api/v1/data-sync/sync/status')).body.writer?.breaker === 'open', 5_000, 100, 'breaker reported open').catch(async (e) => { console.log(JSON.stringify((await h.call('GET', '/api/v1/data-sync/sync/status')).body, null, 1), JSON.stringify(results)); throw e; });
    const ready = await h.call('GET', '/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.checks.duckdb.ok).toBe(false);

    holder!.kill('SIGKILL');
    holder = undefined;
    const conn = await (async () => {
      let c: DuckDBConnection | undefined;
      await eventually(async () => {
        c = await h.duck().catch(() => undefined);
        return c !== undefined;
      }, 15_000, 200, 'DuckDB opens once the holder is gone');
      return c!;
    })();
    await eventually(async () => (await rowsOf(conn, `SELECT count(*) AS n FROM users`).catch(() => [{ n: '0' }]))[0]?.n === '3', 20_000, 250, 'queued legs recovered');
    await eventually(async () => (await h.call('GET', '/api/v1/data-sync/sync/status')).body.writer?.breaker === 'closed', 10_000, 200, 'breaker closed again');
    await eventually(async () => (await h.db.query(`SELECT count(*)::int AS n FROM concord_dual_write_ops WHERE status = 'applied'`)).rows[0].n === 3, 10_000, 200, 'operations marked applied');
  });
});
