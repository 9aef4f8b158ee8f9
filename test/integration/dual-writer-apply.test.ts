import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createRedis, openDuckDb, type DuckDb } from '../../runtime/index.js';
import { cdcAppliedLsnKey, type CdcApplyBatch, type CdcChange, type CdcRelation, type CdcWireChange } from '../../queues/cdc.js';
import { packBatch } from '../../queues/cdc-rows.js';
import { CdcApplier, DuckWriter, readAppliedLsn } from '../../actors/dual-writer/index.js';
import { readRelation, readTableBatches } from '../../actors/dual-writer/pg-source.js';
import { syncTable } from '../../actors/dual-writer/table-sync.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';

/** The DuckDB applier over a real DuckDB file, real PostgreSQL (type round trips, table syncs) and real Redis (applied LSN). */
describe('dual-writer: applying to DuckDB', () => {
  let dir: string;
  let duck: DuckDb;
  let writer: DuckWriter;
  let applier: CdcApplier;
  let pool: pg.Pool;
  const redis = () => createRedis(testServices().redisUrl, 'client');
  let r: ReturnType<typeof redis>;
  const prefix = uniquePrefix('dwa');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'concord-dw-'));
    duck = await openDuckDb({ path: join(dir, 'copy.duckdb'), threads: 1 });
    writer = new DuckWriter({ open: async () => duck, breakerThreshold: 5, breakerHalfOpenMs: 1000 });
    r = redis();
    applier = new CdcApplier(writer, r, prefix);
    const url = await freshDatabase(testServices().databaseUrl, uniquePrefix('dwa').replace(/-/g, '_'));
    pool = new pg.Pool({ connectionString: url, max: 3 });
  });
  afterAll(async () => {
    await writer?.close();
    duck?.close();
    r?.disconnect();
    await pool?.end();
    rmSync(dir, { recursive: true, force: true });
  });

  const rows = async (sql: string) => (await duck.connection.runAndReadAll(sql)).getRowObjectsJson();
  const rel: CdcRelation = {
    table: 'public.items',
    columns: [
      { name: 'id', pgType: 'bigint', typeOid: 20, isKey: true },
      { name: 'name', pgType: 'text', typeOid: 25, isKey: false },
      { name: 'body', pgType: 'text', typeOid: 25, isKey: false },
    ],
  };
  let lsn = 0x100;
  const next = () => `0/${(lsn++).toString(16).toUpperCase()}`;
  // Packed, as the reader queues them (queues/cdc-rows.ts); test/integration/dual-writer-copy.test.ts applies value arrays.
  const batch = (changes: Array<Exclude<CdcWireChange, string>>, relation = rel): CdcApplyBatch =>
    packBatch({ slot: 'slot_a', epoch: 1, kind: 'stream', lastLsn: changes.at(-1)!.lsn, relations: { [relation.table]: relation }, changes });
  const up = (id: number, name: string, body: string | null, at = next()): CdcChange => ({ op: 'upsert', table: 'public.items', lsn: at, values: [String(id), name, body] });

  it('the same key changed many times in one batch ends with its last value; the LSN is stored and published', async () => {
    const changes: CdcChange[] = [];
    for (let i = 0; i < 50; i++) changes.push(up(1, `v${i}`, 'b'));
    changes.push(up(2, 'two', null), { op: 'delete', table: 'public.items', lsn: next(), key: ['2'] }, up(3, 'three', 'x'));
    const out = await applier.apply(batch(changes));
    expect(out).toMatchObject({ applied: 53, skipped: 0, written: 3 });
    expect(await rows('SELECT id, name, body FROM items ORDER BY id')).toEqual([
      { id: '1', name: 'v49', body: 'b' },
      { id: '3', name: 'three', body: 'x' },
    ]);
    const last = changes.at(-1)!.lsn;
    expect(await readAppliedLsn(duck.connection, 'slot_a')).toBe(last);
    expect(await r.get(cdcAppliedLsnKey(prefix, 'slot_a'))).toBe(last);
  });

  it('a replayed batch changes nothing, even when the copy was edited meanwhile', async () => {
    const ten = up(10, 'ten', 'x');
    const b = batch([ten, up(11, 'eleven', 'y')]);
    await applier.apply(b);
    await duck.connection.run(`UPDATE items SET name = 'edited' WHERE id = 10`);
    const again = await applier.apply(b);
    expect(again).toMatchObject({ applied: 0, skipped: 2, written: 0 });
    expect(await rows('SELECT name FROM items WHERE id = 10')).toEqual([{ name: 'edited' }]);
    // A partly applied batch (older changes, then new ones) applies only the new part.
    const mixed = batch([ten, up(12, 'twelve', 'z')]);
    expect(await applier.apply(mixed)).toMatchObject({ applied: 1, skipped: 1 });
  });

  it('an unchanged TOAST column keeps the large text of the copy', async () => {
    const large = 'L'.repeat(100_000);
    await applier.apply(batch([up(20, 'big', large)]));
    await applier.apply(batch([{ op: 'upsert', table: 'public.items', lsn: next(), values: ['20', 'renamed', null], unchanged: [2] }]));
    const [row] = await rows('SELECT name, length(body) AS n, body = repeat(\'L\', 100000) AS same FROM items WHERE id = 20');
    expect(row).toEqual({ name: 'renamed', n: '100000', same: true });
  });

  it('TRUNCATE is mirrored, and later changes of the same batch land after it', async () => {
    await applier.apply(batch([up(30, 'a', null), { op: 'truncate', tables: ['public.items'], lsn: next() }, up(31, 'after', null)]));
    expect(await rows('SELECT id FROM items ORDER BY id')).toEqual([{ id: '31' }]);
  });

  it('an added column is added to the copy; a dropped column is refused and the batch is not applied', async () => {
    const wider: CdcRelation = { ...rel, columns: [...rel.columns, { name: 'price', pgType: 'numeric(12,2)', typeOid: 1700, isKey: false }] };
    await applier.apply(batch([{ op: 'upsert', table: 'public.items', lsn: next(), values: ['40', 'p', null, '12.30'] }], wider));
    expect(await rows('SELECT id, price::VARCHAR AS price FROM items WHERE id IN (31, 40) ORDER BY id')).toEqual([
      { id: '31', price: null },
      { id: '40', price: '12.30' },
    ]);
    const before = await readAppliedLsn(duck.connection, 'slot_a');
    await expect(applier.apply(batch([up(41, 'x', null)]))).rejects.toThrow(/price.*dropped or renamed/);
    expect(await readAppliedLsn(duck.connection, 'slot_a')).toBe(before);
    expect(await rows('SELECT count(*) AS n FROM items WHERE id = 41')).toEqual([{ n: '0' }]);
  });

  it('every mapped type round-trips exactly from PostgreSQL (text output) into DuckDB, NULLs kept, dates before 1 AD too', async () => {
    await pool.query(`CREATE TABLE typed (
      id int4 PRIMARY KEY, i2 int2, i8 int8, n numeric(38,18), n2 numeric(12,2), nu numeric, r real, d double precision,
      t text, v varchar(20), b boolean, u uuid, dt date, ts timestamp, tz timestamptz, j json, jb jsonb, by bytea,
      ai int4[], at text[], an numeric(10,3)[], ab bool[])`);
    await pool.query(`INSERT INTO typed VALUES
      (1, -32768, 9223372036854775807, '12345678901234567890.123456789012345678', -0.01, '123456789012345678901234567890.123456789012345678901', 3.4028235e38, 1.7976931348623157e308,
       'ünïcødé ''quoted'' \\ backslash', 'short', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-01 12:34:56.789012', '2024-06-01 12:30:00.123456+05:30',
       '{"b": 1, "a": [1, 2.50]}', '{"z": null, "a": {"deep": [true, "x"]}}', '\\x00ff10', '{1,NULL,-3}', '{"a,b","q\\"x",NULL,"NULL",""}', '{1.5,NULL,-2.125}', '{t,f,NULL}'),
      (2, NULL, NULL, NULL, NULL, NULL, 'NaN', '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL, NULL),
      (3, 0, -1, 0, 0, 'NaN', 1.1, 0.1, '', '', false, NULL, '1970-01-01', '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', 'null', '[]', '\\x', '{}', '{" spaced "}', '{}', '{}'),
      (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '0044-03-15 BC', '0001-01-01 12:00:00.5 BC', '0001-12-31 23:59:59+02 BC', NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
    const relation = await readRelation(pool, 'public.typed');
    // Twice: as value arrays, then packed (what the reader queues) after a truncate of the copy.
    for (const packed of [false, true]) {
      let first = true;
      for await (const chunk of readTableBatches(pool, relation, 2)) {
        const changes: CdcChange[] = chunk.map((values) => ({ op: 'upsert', table: 'public.typed', lsn: next(), values }));
        if (packed && first) changes.unshift({ op: 'truncate', tables: ['public.typed'], lsn: changes[0]!.lsn });
        first = false;
        const b: CdcApplyBatch = { slot: 'slot_types', epoch: 1, kind: 'stream', lastLsn: changes.at(-1)!.lsn, relations: { 'public.typed': relation }, changes };
        await applier.apply(packed ? packBatch(b) : b);
      }
    }
    // Compare canonical text forms: PostgreSQL renders, DuckDB renders, both normalised the same way.
    const pgRows = (
      await pool.query(`SELECT id, i2::text, i8::text, n::text, n2::text, nu::text, r::float8::text AS r, d::text, t, v, b::text, u::text, (dt - DATE '1970-01-01')::text AS dt, (extract(epoch FROM ts) * 1000000)::bigint::text AS ts,
        (extract(epoch FROM tz) * 1000000)::bigint::text AS tz, j::jsonb::text AS j, jb::text AS jb, encode(by, 'hex') AS by,
        array_to_json(ai)::text AS ai, array_to_json(at)::text AS at, array_to_json(an)::text AS an, array_to_json(ab)::text AS ab FROM typed ORDER BY id`)
    ).rows;
    const duckRows = await rows(`SELECT id::VARCHAR AS id, i2::VARCHAR AS i2, i8::VARCHAR AS i8, n::VARCHAR AS n, n2::VARCHAR AS n2, nu, r::DOUBLE::VARCHAR AS r, d::VARCHAR AS d, t, v,
        b::VARCHAR AS b, u::VARCHAR AS u, date_diff('day', DATE '1970-01-01', dt)::VARCHAR AS dt, epoch_us(ts)::VARCHAR AS ts, epoch_us(tz)::VARCHAR AS tz, j::VARCHAR AS j, jb::VARCHAR AS jb,
        lower(hex("by")) AS "by", to_json(ai)::VARCHAR AS ai, to_json("at")::VARCHAR AS "at", to_json(an)::VARCHAR AS an, to_json(ab)::VARCHAR AS ab FROM typed ORDER BY id`);
    const norm = (row: Record<string, unknown>) => {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(row)) {
        if (v === null || v === undefined) out[k] = null;
        else if (['j', 'jb', 'ai', 'at', 'an', 'ab'].includes(k)) out[k] = JSON.parse(String(v));
        else if (['r', 'd'].includes(k)) out[k] = Number(String(v).replace(/^inf$/i, 'Infinity').replace(/^-inf$/i, '-Infinity'));
        else if (k === 'b') out[k] = String(v).startsWith('t');
        else out[k] = String(v);
      }
      return out;
    };
    expect(duckRows.map(norm)).toEqual(pgRows.map(norm));
    // Spot checks of the values that are easy to get wrong.
    const [one] = await rows(`SELECT n::VARCHAR AS n, nu, i8::VARCHAR AS i8, typeof(n) AS tn, typeof(nu) AS tnu, typeof(tz) AS ttz, typeof(ai) AS tai FROM typed WHERE id = 1`);
    expect(one).toEqual({ n: '12345678901234567890.123456789012345678', nu: '123456789012345678901234567890.123456789012345678901', i8: '9223372036854775807', tn: 'DECIMAL(38,18)', tnu: 'VARCHAR', ttz: 'TIMESTAMP WITH TIME ZONE', tai: 'INTEGER[]' });
    expect(await rows(`SELECT "at" FROM typed WHERE id = 1`)).toEqual([{ at: ['a,b', 'q"x', null, 'NULL', ''] }]);
  });

  it('full sync rebuilds the copy in batches; incremental sync upserts rows changed since a timestamp', async () => {
    await pool.query(`CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(14,2), updated_at timestamptz NOT NULL DEFAULT now())`);
    await pool.query(`INSERT INTO accounts SELECT g, 'owner' || g, g * 1.5, '2024-01-01T00:00:00Z' FROM generate_series(1, 2500) g`);
    // A stale copy row that the source does not have: a full sync removes it.
    await duck.connection.run(`CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner VARCHAR, balance DECIMAL(14,2), updated_at TIMESTAMPTZ, gone VARCHAR); INSERT INTO accounts VALUES (99999, 'ghost', 0, now(), 'x')`);
    const progress: number[] = [];
    const full = await syncTable(writer, pool, { table: 'public.accounts', mode: 'full', batchSize: 1000 }, (p) => void progress.push(p.rows));
    expect(full).toMatchObject({ rows: 2500, batches: 3 });
    expect(progress).toEqual([1000, 2000, 2500]);
    expect(await rows(`SELECT count(*) AS n, sum(balance)::VARCHAR AS s, count(*) FILTER (WHERE id = 99999) AS ghost FROM accounts`)).toEqual([{ n: '2500', s: '4689375.00', ghost: '0' }]);
    await pool.query(`UPDATE accounts SET balance = -1, updated_at = '2024-03-01T00:00:00Z' WHERE id IN (7, 8)`);
    await pool.query(`INSERT INTO accounts VALUES (3000, 'new', 5, '2024-03-02T00:00:00Z')`);
    const inc = await syncTable(writer, pool, { table: 'public.accounts', mode: 'incremental', batchSize: 2, since: '2024-02-01T00:00:00Z', column: 'updated_at' }, () => undefined);
    expect(inc).toMatchObject({ rows: 3, batches: 2 });
    expect(await rows(`SELECT id, balance::VARCHAR AS b FROM accounts WHERE id IN (6, 7, 8, 3000) ORDER BY id`)).toEqual([
      { id: 6, b: '9.00' },
      { id: 7, b: '-1.00' },
      { id: 8, b: '-1.00' },
      { id: 3000, b: '5.00' },
    ]);
    await expect(syncTable(writer, pool, { table: 'public.typed', mode: 'incremental', batchSize: 10, since: '2024-01-01T00:00:00Z', column: 'updated_at' }, () => undefined)).rejects.toThrow(/no column updated_at/);
  });
});
