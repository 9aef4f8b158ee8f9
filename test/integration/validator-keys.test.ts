import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { duckSideWork, pgSideWork, PG_SESSION_OPTIONS } from '../../actors/validator/index.js';
import { KH_SPACE, keyOfRow, keyPartsSql, khSql } from '../../actors/validator/key-hash.js';
import { duckdb as duckDialect, postgres as pgDialect, rowText } from '../../actors/validator/normalize.js';
import type { SideColumn } from '../../queues/validate.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';
import { validatorClient, type Body } from '../support/validator-client.js';


/**
 * Key shapes and values for the PostgreSQL/DuckDB agreement test: [PostgreSQL type, DuckDB
 * type (the dual-writer's), values]. A single integer key takes the integer path, not kh:
 * integers appear here inside composite keys.
 */
const KEY_TYPES: Array<[string, string, string[]]> = [
  ['uuid', 'UUID', ['0b6e2c9a-7a8e-4d43-9a53-2d1f8d1c2b3a', 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF', '00000000-0000-0000-0000-000000000000']],
  ['text', 'VARCHAR', ['', 'a', 'A', 'é', 'e\u0301', '👍🏽', '\\N', 'a|b', ' lead', 'trail ', '["1","x"]', 'x'.repeat(300)]],
  ['character varying(20)', 'VARCHAR', ['abc', 'x:y']],
  ['character(5)', 'VARCHAR', ['ab', 'abcde', '']],
  ['date', 'DATE', ['2024-01-01', '1970-01-01', '1969-12-31', '2000-02-29', '0001-01-01', '9999-12-31', 'infinity', '-infinity']],
  ['timestamp(3) without time zone', 'TIMESTAMP', ['2024-01-01 10:00:00.123', '1969-12-31 23:59:59.999', '2000-02-29 00:00:00', '1900-06-01 12:00:00.5']],
  ['timestamp without time zone', 'TIMESTAMP', ['2024-01-01 10:00:00.000001', 'infinity']],
  ['timestamp with time zone', 'TIMESTAMP WITH TIME ZONE', ['2024-01-01 10:00:00.5+02', '1900-01-01 00:00:00+00', '2038-01-19 03:14:08.999999-07:30']],
  ['numeric(10,2)', 'DECIMAL(10,2)', ['1.50', '-0.01', '0', '12345678.90']],
  ['bytea', 'BLOB', ['\\x00ff', '\\x', '\\x7c5c4e']],
];

const TEXT = { getTypeParser: () => (x: string) => x } as unknown as pg.CustomTypesConfig;
const formatTuple = (n: number, t: string[]) => (n === 1 ? t[0]! : JSON.stringify(t));

describe('validator keys: PostgreSQL and DuckDB agree on kh and key text', () => {
  let db: pg.Pool;
  let utc: pg.Pool;
  let conn: DuckDBConnection;

  beforeAll(async () => {
    const url = await freshDatabase(testServices().databaseUrl, uniquePrefix('vkh').replace(/-/g, '_'));
    db = new pg.Pool({ connectionString: url, max: 2, options: PG_SESSION_OPTIONS });
    // Writes, and PostgreSQL's own text of each key to compare the validator's spelling with (UTC, ISO).
    utc = new pg.Pool({ connectionString: url, max: 1, options: '-c TimeZone=UTC -c DateStyle=ISO,MDY' });
    conn = await (await DuckDBInstance.create(':memory:')).connect();
  });
  afterAll(async () => {
    conn?.closeSync();
    await db?.end();
    await utc?.end();
  });

  /** A PostgreSQL table and its DuckDB copy (values cast from PostgreSQL's text as the dual-writer casts them). */
  async function both(table: string, keys: Array<[string, string, string[]]>): Promise<SideColumn[]> {
    const columns: SideColumn[] = [...keys.map(([pgType], i) => ({ name: `k${i}`, pgType, isKey: true })), { name: 'v', pgType: 'text', isKey: false }];
    await utc.query(`CREATE TABLE ${table} (${columns.map((c) => `${c.name} ${c.pgType}`).join(', ')}, PRIMARY KEY (${keys.map((_, i) => `k${i}`).join(', ')}))`);
    const n = Math.max(...keys.map(([, , v]) => v.length));
    for (let r = 0; r < n; r++) {
      const values = keys.map(([, , v]) => v[r % v.length]!);
      await utc.query(`INSERT INTO ${table} VALUES (${values.map((_, i) => `$${i + 1}::${keys[i]![0]}`).join(', ')}, 'v${r}') ON CONFLICT DO NOTHING`, values);
    }
    await conn.run(`CREATE TABLE ${table} (${keys.map(([, duckType], i) => `k${i} ${duckType}`).join(', ')}, v VARCHAR)`);
    // Each column's output text (char(n) keeps its padding), as pgoutput sends it to the dual-writer.
    const text = await utc.query<Record<string, string>>({ text: `SELECT ${columns.map((c) => c.name).join(', ')} FROM ${table}`, types: TEXT });
    for (const row of text.rows) {
      const casts = keys.map(([, duckType], i) => (duckType === 'BLOB' ? `from_hex(substr($${i + 1}, 3))` : `CAST($${i + 1} AS ${duckType})`));
      await conn.run(`INSERT INTO ${table} VALUES (${casts.join(', ')}, $${keys.length + 1})`, [...keys.map((_, i) => row[`k${i}`]!), row.v!]);
    }
    return columns;
  }

  it('each key type, and composite keys: the same kh, the same [key, md5] rows, keys spelled as PostgreSQL prints them, found again by lookup on both sides', async () => {
    const shapes: Array<Array<[string, string, string[]]>> = [
      ...KEY_TYPES.map((t) => [t]),
      [['integer', 'INTEGER', ['-1', '0', '7']], ['text', 'VARCHAR', ['a', '', 'é|x', '\\N']]],
      [['date', 'DATE', ['2024-01-01', '1999-12-31']], ['timestamp with time zone', 'TIMESTAMP WITH TIME ZONE', ['2024-01-01 10:00:00.5+00', '2024-01-01 10:00:00+05']], ['uuid', 'UUID', ['0b6e2c9a-7a8e-4d43-9a53-2d1f8d1c2b3a']]],
      [['boolean', 'BOOLEAN', ['t', 'f']], ['bigint', 'BIGINT', ['-9223372036854775808', '0', '9223372036854775807']]],
    ];
    for (const [i, shape] of shapes.entries()) {
      const table = `kh${i}`;
      const columns = await both(table, shape);
      const keys = columns.filter((c) => c.isKey);
      const duckTypes = Object.fromEntries(shape.map(([, duckType], j) => [`k${j}`, duckType]));
      // kh itself, row by row, keyed by the key texts; non-negative and below 2^62.
      const pgKh = (await db.query<string[]>({ text: `SELECT ${keyPartsSql(pgDialect, keys).join(', ')}, ${khSql(pgDialect, keys)}::text, ${rowText(pgDialect, keys)} FROM ${table}`, rowMode: 'array' })).rows;
      // kh is md5(canonical key text) bytes 8..15 little-endian, low 62 bits (checked against node's md5).
      for (const r of pgKh) expect(r[keys.length]).toBe((createHash('md5').update(r[keys.length + 1]!).digest().readBigUInt64LE(8) & (KH_SPACE - 1n)).toString());
      const duckKh = (await conn.runAndReadAll(`SELECT ${keyPartsSql(duckDialect, keys, duckTypes).join(', ')}, CAST(${khSql(duckDialect, keys, duckTypes)} AS VARCHAR) FROM ${table}`)).getRows();
      const asMap = (rows: unknown[][]) => new Map(rows.map((r) => [keyOfRow(keys, r.slice(0, keys.length).map(String)), String(r[keys.length])]));
      const pgMap = asMap(pgKh);
      expect(asMap(duckKh), `${table} (${shape.map((s) => s[0]).join(', ')})`).toEqual(pgMap);
      for (const kh of pgMap.values()) expect(BigInt(kh) >= 0n && BigInt(kh) < KH_SPACE).toBe(true);

      // The side ops: the same [key, md5] rows over the whole hash space.
      const work = { table: `public.${table}`, columns, op: 'rows' as const, lo: '0', hi: KH_SPACE.toString() };
      const sorted = (r: Array<[string, string]>) => [...r].sort((a, b) => (a[0] < b[0] ? -1 : 1));
      const pgRows = sorted((await pgSideWork(db, work)).rows!);
      expect(sorted((await duckSideWork(conn, work)).rows!)).toEqual(pgRows);
      expect(pgRows.length).toBe((await db.query(`SELECT 1 FROM ${table}`)).rowCount);

      // Keys are PostgreSQL's own text of the key columns (UTC), a JSON array for composite keys.
      const own = (await utc.query<Record<string, string>>({ text: `SELECT ${keys.map((c) => c.name).join(', ')} FROM ${table}`, types: TEXT })).rows;
      const ownKeys = own.map((r) => (keys.length === 1 ? r.k0! : JSON.stringify(keys.map((c) => r[c.name]!)))).sort();
      expect(pgRows.map((r) => r[0]).sort()).toEqual(ownKeys);

      // Every key text finds its row on both sides (what recheck and validate-one-row rely on).
      const tuples = pgRows.map(([k]) => (keys.length === 1 ? [k] : (JSON.parse(k) as string[])));
      const lookup = { table: `public.${table}`, columns, op: 'lookup' as const, keyTuples: tuples };
      expect(sorted((await pgSideWork(db, lookup)).rows!)).toEqual(pgRows);
      expect(sorted((await duckSideWork(conn, lookup)).rows!)).toEqual(pgRows);
      expect((await duckSideWork(conn, { ...lookup, keyTuples: tuples.slice(0, 1) })).rows).toEqual(pgRows.filter((r) => r[0] === pgRows.find((p) => p[0] === formatTuple(keys.length, tuples[0]!))![0]));
    }
  });

  it('BC dates and timestamps are spelled as PostgreSQL prints them (PostgreSQL side)', async () => {
    await utc.query(`CREATE TABLE kh_bc_pg_only (k0 date PRIMARY KEY, v text)`);
    await utc.query(`INSERT INTO kh_bc_pg_only VALUES ('0044-03-15 BC', 'a'), ('0001-12-31 BC', 'b'), ('4713-01-01 BC', 'c')`);
    await utc.query(`CREATE TABLE kh_bc_ts (k0 timestamp PRIMARY KEY, v text)`);
    await utc.query(`INSERT INTO kh_bc_ts VALUES ('0044-03-15 10:00:00.25 BC', 'a'), ('0001-12-31 23:59:59 BC', 'b')`);
    for (const [table, pgType] of [['kh_bc_pg_only', 'date'], ['kh_bc_ts', 'timestamp without time zone']] as const) {
      const cols = [{ name: 'k0', pgType, isKey: true }, { name: 'v', pgType: 'text', isKey: false }];
      const rows = (await pgSideWork(db, { table: `public.${table}`, columns: cols, op: 'rows', lo: '0', hi: KH_SPACE.toString() })).rows!;
      const own = (await utc.query<{ k0: string }>({ text: `SELECT k0 FROM ${table}`, types: TEXT })).rows.map((r) => r.k0);
      expect(rows.map((r) => r[0]).sort()).toEqual(own.sort());
    }
  });
});

const ROWS = 3000;
const RULES = { c_items: [{ name: 'qty_positive', predicate: 'qty > 0' }], u_items: [{ name: 'amount_total', aggregate: 'sum(amount)' }] };
const TABLES = ['u_items', 't_items', 'c_items', 'c_lines', 'd_events'];
/** The uuid of row g, as PostgreSQL prints it (md5('u' || g)::uuid). */
const uuidOf = async (db: pg.Pool, g: number) => (await db.query<{ u: string }>(`SELECT md5('u' || $1::int)::uuid::text AS u`, [g])).rows[0]!.u;

/**
 * The validator end to end on a uuid key, a text key, composite (integer, text) and
 * (date, timestamp, timestamptz) keys, and a composite foreign key: real PostgreSQL, the
 * dual-writer holding a real DuckDB file, the validator serving the DuckDB side, Redis queues.
 */
describe('validator keys: uuid, text and composite keys end to end', () => {
  let dir: string;
  let proc: RunningProcess;
  let db: pg.Pool;
  /** Reads timestamptz text in UTC, as the validator spells keys. */
  let utc: pg.Pool;
  let conn: DuckDBConnection;

  const { call, duck, runCheck } = validatorClient(() => ({ proc, conn }), 90_000);
  const result = (report: Body, table: string, type: string, name = type): Body => report.results.find((r: Body) => r.table === `public.${table}` && r.check_type === type && r.check_name === name);
  const validate = (table: string, key: string) => call('GET', `/api/v1/data-sync/consistency/validate/${table}?primary_key=${encodeURIComponent(key)}`);
  const notPassed = (report: Body) => report.results.filter((r: Body) => r.status !== 'passed' && r.status !== 'skipped').map((r: Body) => [r.table, r.check_name, r.status, r.details]);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'concord-validator-keys-'));
    const { redisUrl, databaseUrl } = testServices();
    const url = await freshDatabase(databaseUrl, uniquePrefix('valk').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: url, max: 3 });
    utc = new pg.Pool({ connectionString: url, max: 1, options: '-c TimeZone=UTC' });
    await db.query(`CREATE TABLE u_items (id uuid PRIMARY KEY, name text, note text, amount numeric(12,2))`);
    await db.query(`INSERT INTO u_items SELECT md5('u' || g)::uuid, 'item ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, (g % 1000) / 100.0 FROM generate_series(1, $1) g`, [ROWS]);
    await db.query(`CREATE TABLE t_items (code varchar(40) PRIMARY KEY, note text)`);
    await db.query(`INSERT INTO t_items SELECT 'code-' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, $1) g`, [ROWS]);
    await db.query(`INSERT INTO t_items VALUES ('', 'empty key'), ('with space ', 'x'), ('ünï|\\N', 'y')`);
    await db.query(`CREATE TABLE c_items (a integer, b text, note text, qty integer, PRIMARY KEY (a, b))`);
    await db.query(`INSERT INTO c_items SELECT g % 50 - 10, 'b' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, g % 9 + 1 FROM generate_series(1, $1) g`, [ROWS]);
    await db.query(`CREATE TABLE c_lines (id uuid PRIMARY KEY, item_a integer, item_b text, qty integer, FOREIGN KEY (item_a, item_b) REFERENCES c_items (a, b))`);
    await db.query(`INSERT INTO c_lines SELECT md5('l' || g)::uuid, g % 50 - 10, 'b' || g, 1 FROM generate_series(1, 200) g`);
    await db.query(`CREATE TABLE d_events (day date, at timestamp(3), zat timestamptz, v text, PRIMARY KEY (day, at, zat))`);
    await db.query(
      `INSERT INTO d_events SELECT date '2024-01-01' + g % 300, timestamp '2024-01-01' + g * interval '1.001 second', timestamptz '2024-01-01 00:00:00+00' + g * interval '1.000001 second', 'v' || g
         FROM generate_series(1, $1) g`,
      [ROWS],
    );
    const env = runtimeEnv({ redisUrl, databaseUrl: url, prefix: uniquePrefix('valk') }, {
      DUCKDB_DATABASE_PATH: join(dir, 'copy.duckdb'),
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      KAFKA_BROKERS: '',
      DATA_SYNC_ENABLED: 'true',
      DATA_SYNC_TABLES: TABLES.join(','),
      VALIDATOR_CHECK_INTERVAL_SECONDS: '0',
      VALIDATOR_DOWNLOAD_THRESHOLD: '64',
      VALIDATOR_RECHECK_DELAY_SECONDS: '0',
      VALIDATOR_BUSINESS_RULES: JSON.stringify(RULES),
    });
    proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', 'dual-writer,validator', env), onEscalate: () => undefined });
    for (const t of TABLES) expect((await call('POST', `/api/v1/data-sync/sync/table/${t}/full`)).status).toBe(202);
    conn = await (await proc.runtime.services.duckdb()).instance.connect();
    await eventually(async () => {
      for (const t of TABLES) expect(await duck(`SELECT count(*)::INT AS n FROM ${t}`)).toEqual([{ n: t === 'c_lines' ? 200 : t === 't_items' ? ROWS + 3 : ROWS }]);
      return true;
    }, 60_000);
  }, 180_000);

  afterAll(async () => {
    conn?.closeSync();
    await proc?.stop(10_000);
    await db?.end();
    await utc?.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('identical stores: every check of every key shape passes (none skipped for its key) and the score is 100', async () => {
    const report = await runCheck({});
    expect(notPassed(report)).toEqual([]);
    for (const t of TABLES) {
      expect(result(report, t, 'data_hash'), t).toMatchObject({ status: 'passed', diff_total: 0 });
      expect(result(report, t, 'row_count').status, t).toBe('passed');
    }
    expect(result(report, 'u_items', 'data_hash')).toMatchObject({ source_count: ROWS, copy_count: ROWS });
    expect(result(report, 'c_items', 'business_rules', 'qty_positive').status).toBe('passed');
    expect(result(report, 'u_items', 'business_rules', 'amount_total').status).toBe('passed');
    expect(result(report, 'c_lines', 'referential_integrity', 'c_lines_item_a_item_b_fkey').status).toBe('passed');
    expect(report.consistency_score).toBe(100);
  }, 120_000);

  it('reports exactly the rows deleted, added and changed on either side (NULL vs empty string too), shows both sides of one row, and repair makes the next check pass', async () => {
    const [u7, u10, u11, u12, uNew] = await Promise.all([7, 10, 11, 12, 999_999].map((g) => uuidOf(db, g))) as [string, string, string, string, string];
    const l1 = (await db.query<{ u: string }>(`SELECT md5('l1')::uuid::text AS u`)).rows[0]!.u;
    const uStray = '7e57a11d-0000-4000-8000-000000000001';
    await conn.run(`DELETE FROM u_items WHERE id = '${u10}';
      INSERT INTO u_items (id, name) VALUES ('${uStray}', 'stray');
      UPDATE u_items SET note = '' WHERE id = '${u7}';                  -- NULL in PostgreSQL
      UPDATE u_items SET amount = amount + 0.01 WHERE id = '${u11}';
      UPDATE u_items SET name = name WHERE id = '${u12}';              -- unchanged
      DELETE FROM t_items WHERE code = 'code-10';
      INSERT INTO t_items VALUES ('code-10 ', 'trailing blank: another key');
      UPDATE t_items SET note = '' WHERE code = 'code-14';              -- NULL in PostgreSQL
      UPDATE t_items SET note = NULL WHERE code = '';                   -- 'empty key' in PostgreSQL
      DELETE FROM c_items WHERE a = -9 AND b = 'b1';                    -- the parent of a c_lines row
      INSERT INTO c_items VALUES (-9, 'B1', 'stray', 1);
      UPDATE c_items SET note = '' WHERE a = -3 AND b = 'b7';           -- NULL in PostgreSQL
      UPDATE c_items SET qty = -1 WHERE a = 30 AND b = 'b40';
      DELETE FROM d_events WHERE v = 'v5';
      INSERT INTO d_events VALUES (DATE '2030-05-06', TIMESTAMP '2030-05-06 07:08:09.123', TIMESTAMPTZ '2030-05-06 07:08:09.5+00', 'stray');
      UPDATE d_events SET v = '' WHERE v = 'v6';`);
    // And on the PostgreSQL side (no CDC runs in this process): a new row and a change.
    await db.query(`INSERT INTO u_items (id, name) VALUES ($1, 'new')`, [uNew]);
    await db.query(`UPDATE t_items SET note = 'changed in pg' WHERE code = 'with space '`);
    const d = await utc.query<{ day: string; at: string; zat: string }>({ text: `SELECT day, at, zat FROM d_events WHERE v IN ('v5', 'v6') ORDER BY v`, types: TEXT });
    const dKey = (r: { day: string; at: string; zat: string }) => JSON.stringify([r.day, r.at, r.zat]);

    const report = await runCheck({ tables: TABLES });
    expect(result(report, 'u_items', 'data_hash').diff_keys).toEqual(
      [
        { key: u7, kind: 'changed' },
        { key: u10, kind: 'missing_in_copy' },
        { key: u11, kind: 'changed' },
        { key: uNew, kind: 'missing_in_copy' },
        { key: uStray, kind: 'extra_in_copy' },
      ].sort((a, b) => (a.key! < b.key! ? -1 : 1)),
    );
    expect(result(report, 't_items', 'data_hash').diff_keys).toEqual([
      { key: '', kind: 'changed' },
      { key: 'code-10', kind: 'missing_in_copy' },
      { key: 'code-10 ', kind: 'extra_in_copy' },
      { key: 'code-14', kind: 'changed' },
      { key: 'with space ', kind: 'changed' },
    ]);
    expect(result(report, 'c_items', 'data_hash').diff_keys).toEqual([
      { key: '["-9","B1"]', kind: 'extra_in_copy' },
      { key: '["-9","b1"]', kind: 'missing_in_copy' },
      { key: '["-3","b7"]', kind: 'changed' },
      { key: '["30","b40"]', kind: 'changed' },
    ]);
    expect(result(report, 'd_events', 'data_hash').diff_keys).toEqual([
      { key: dKey(d.rows[0]!), kind: 'missing_in_copy' },
      { key: dKey(d.rows[1]!), kind: 'changed' },
      { key: '["2030-05-06","2030-05-06 07:08:09.123","2030-05-06 07:08:09.5+00"]', kind: 'extra_in_copy' },
    ]);
    // Bisected in hash space: one checksum scan, then only the small differing sub-segments were read.
    expect(result(report, 'u_items', 'data_hash').details).toMatchObject({ levels: 1, segmentsChecked: 1 });
    expect(result(report, 'u_items', 'data_hash').details.rowsDownloaded).toBeLessThan(ROWS / 4);
    expect(result(report, 'c_lines', 'data_hash').status).toBe('passed');
    expect(result(report, 'u_items', 'row_count')).toMatchObject({ status: 'failed', source_count: ROWS + 1, copy_count: ROWS });
    expect(result(report, 'c_items', 'business_rules', 'qty_positive')).toMatchObject({ status: 'failed', diff_total: 1, diff_keys: [{ key: '["30","b40"]', kind: 'violation_in_copy' }] });
    expect(result(report, 'u_items', 'business_rules', 'amount_total').status).toBe('failed');
    expect(result(report, 'c_lines', 'referential_integrity', 'c_lines_item_a_item_b_fkey')).toMatchObject({ status: 'failed', diff_total: 1, diff_keys: [{ key: l1, kind: 'orphan_in_copy' }] });
    expect(report.consistency_score).toBeLessThan(100);

    // One row, both sides: by the key's text, and by a JSON array for composite keys.
    expect((await validate('u_items', u7.toUpperCase())).body).toMatchObject({ status: 'changed', differing_columns: ['note'], postgres: { row: { note: null } }, duckdb: { row: { note: '' } } });
    expect((await validate('u_items', u12)).body).toMatchObject({ consistent: true, status: 'equal' });
    expect((await validate('t_items', '')).body).toMatchObject({ status: 'changed', differing_columns: ['note'], postgres: { row: { note: 'empty key' } }, duckdb: { row: { note: null } } });
    expect((await validate('t_items', 'code-10 ')).body).toMatchObject({ status: 'extra_in_copy', postgres: null, duckdb: { row: { code: 'code-10 ' } } });
    expect((await validate('c_items', '[-3, "b7"]')).body).toMatchObject({ status: 'changed', differing_columns: ['note'], postgres: { row: { a: -3, b: 'b7', note: null } }, duckdb: { row: { note: '' } } });
    expect((await validate('c_items', '["-9","B1"]')).body).toMatchObject({ status: 'extra_in_copy', postgres: null });
    expect((await validate('d_events', '["2030-05-06", "2030-05-06 07:08:09.123", "2030-05-06 09:08:09.5+02"]')).body).toMatchObject({ status: 'extra_in_copy', duckdb: { row: { v: 'stray' } } });

    const repair = await call('POST', '/api/v1/data-sync/consistency/repair', { run_id: report.id });
    expect(repair.status).toBe(202);
    expect(repair.body.tables).toEqual(
      expect.arrayContaining([
        { table: 'public.u_items', enqueued: 5, differing: 5, complete: true },
        { table: 'public.t_items', enqueued: 5, differing: 5, complete: true },
        { table: 'public.c_items', enqueued: 4, differing: 4, complete: true },
        { table: 'public.d_events', enqueued: 3, differing: 3, complete: true },
      ]),
    );
    // The copy-only rows are deleted (their keys parsed back by PostgreSQL and DuckDB), the others copied.
    await eventually(async () => {
      expect(await duck(`SELECT count(*)::INT AS n FROM u_items WHERE id IN ('${uStray}', '${u10}', '${uNew}')`)).toEqual([{ n: 2 }]);
      expect(await duck(`SELECT code FROM t_items WHERE code IN ('code-10', 'code-10 ')`)).toEqual([{ code: 'code-10' }]);
      expect(await duck(`SELECT b FROM c_items WHERE a = -9 AND lower(b) = 'b1'`)).toEqual([{ b: 'b1' }]);
      expect(await duck(`SELECT count(*)::INT AS n FROM d_events WHERE v IN ('stray', 'v5')`)).toEqual([{ n: 1 }]);
      return true;
    }, 30_000);
    const after = await runCheck({ tables: TABLES });
    expect(notPassed(after)).toEqual([]);
    expect(after.consistency_score).toBe(100);
  }, 240_000);

  it('repairs the keys given (text, JSON arrays) and those a run found with "repair": true; a malformed key is a 400 naming its field', async () => {
    await conn.run(`DELETE FROM c_items WHERE a = 0 AND b = 'b10'; DELETE FROM t_items WHERE code = 'ünï|\\N'; INSERT INTO d_events VALUES (DATE '2031-01-01', TIMESTAMP '2031-01-01 00:00:00', TIMESTAMPTZ '2031-01-01 00:00:00+00', 'x')`);
    const r1 = await call('POST', '/api/v1/data-sync/consistency/repair', { table: 'c_items', primary_keys: [[0, 'b10']] });
    const r2 = await call('POST', '/api/v1/data-sync/consistency/repair', { table: 't_items', primary_keys: ['ünï|\\N'] });
    const r3 = await call('POST', '/api/v1/data-sync/consistency/repair', { table: 'd_events', primary_keys: ['["2031-01-01","2031-01-01 00:00:00","2031-01-01 00:00:00+00"]'] });
    for (const r of [r1, r2, r3]) expect(r).toMatchObject({ status: 202, body: { tables: [{ enqueued: 1, differing: 1, complete: true }] } });
    await eventually(async () => {
      expect(await duck(`SELECT note FROM c_items WHERE a = 0 AND b = 'b10'`)).toEqual([{ note: 'n10' }]);
      expect(await duck(`SELECT note FROM t_items WHERE code = 'ünï|\\N'`)).toEqual([{ note: 'y' }]);
      expect(await duck(`SELECT count(*)::INT AS n FROM d_events WHERE v = 'x'`)).toEqual([{ n: 0 }]);
      return true;
    }, 30_000);

    // `"repair": true` on a check: the run itself enqueues the differing composite keys.
    await conn.run(`DELETE FROM c_items WHERE a = 1 AND b = 'b11'; UPDATE d_events SET v = 'changed' WHERE v = 'v9'`);
    const repairing = await runCheck({ tables: ['c_items', 'd_events'], check_types: ['data_hash'], repair: true });
    expect(result(repairing, 'c_items', 'data_hash').diff_keys).toEqual([{ key: '["1","b11"]', kind: 'missing_in_copy' }]);
    await eventually(async () => {
      expect(await duck(`SELECT note FROM c_items WHERE a = 1 AND b = 'b11'`)).toEqual([{ note: 'n11' }]);
      expect(await duck(`SELECT count(*)::INT AS n FROM d_events WHERE v = 'changed'`)).toEqual([{ n: 0 }]);
      return true;
    }, 30_000);

    const issues = async (p: Promise<{ status: number; body: Body }>) => {
      const r = await p;
      expect(r.status).toBe(400);
      return r.body.error.details.issues as Array<{ field: string; reason: string }>;
    };
    expect(await issues(validate('u_items', 'not-a-uuid'))).toEqual([{ field: 'primary_key', reason: expect.stringMatching(/id \(uuid\).*invalid input syntax for type uuid/) }]);
    expect(await issues(validate('c_items', '["1"]'))).toEqual([{ field: 'primary_key', reason: expect.stringContaining('JSON array of 2 values (a, b)') }]);
    expect(await issues(validate('c_items', '["x","b1"]'))).toEqual([{ field: 'primary_key', reason: expect.stringContaining('a (integer)') }]);
    expect(await issues(validate('c_items', 'b1'))).toEqual([{ field: 'primary_key', reason: expect.stringContaining('JSON array') }]);
    expect(await issues(validate('t_items', 'x'.repeat(41)))).toEqual([{ field: 'primary_key', reason: expect.stringContaining('character varying(40)') }]);
    expect(await issues(call('POST', '/api/v1/data-sync/consistency/repair', { table: 'u_items', primary_keys: [await uuidOf(db, 1), 'nope'] }))).toEqual([{ field: 'primary_keys.1', reason: expect.stringContaining('uuid') }]);
    expect(await issues(call('POST', '/api/v1/data-sync/consistency/repair', { table: 'd_events', primary_keys: [['2024-13-01', '2024-01-01 00:00:00', '2024-01-01 00:00:00+00']] }))).toEqual([
      { field: 'primary_keys.0', reason: expect.stringContaining('day (date)') },
    ]);
    expect(await issues(call('POST', '/api/v1/data-sync/consistency/repair', { table: 'c_items', primary_keys: [[1, null]] }))).toEqual([expect.objectContaining({ field: expect.stringMatching(/^primary_keys\.0/) })]);
  }, 120_000);
});
