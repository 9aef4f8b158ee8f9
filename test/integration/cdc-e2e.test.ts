import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { DuckDBInstance } from '@duckdb/node-api';
import { cdcAppliedLsnKey, compareLsn } from '../../queues/cdc.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startFixture, type Child } from '../support/child.js';
import { dropSlot } from '../support/cdc.js';

const COLUMNS = 'id::text, name, amount::text, n::text';

/** PostgreSQL → cdc-reader → cdc.apply → dual-writer → DuckDB, in real worker processes. */
describe('CDC end to end into DuckDB', () => {
  let dbUrl: string;
  let db: pg.Pool;
  let redis: Redis;
  let dir: string;
  const slots: string[] = [];
  const children: Child[] = [];

  beforeAll(async () => {
    dbUrl = await freshDatabase(testServices().databaseUrl, uniquePrefix('cdce').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 4 });
    redis = new Redis(testServices().redisUrl);
    dir = mkdtempSync(join(tmpdir(), 'concord-cdc-e2e-'));
  }, 60_000);
  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await c.exited;
    }
  });
  afterAll(async () => {
    for (const s of slots) await dropSlot(db, s);
    await db?.end();
    redis?.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  function pipeline(table: string, slot: string, prefix: string, duckPath: string): { start(): Promise<Child> } {
    const env = {
      REDIS_URL: testServices().redisUrl,
      DATABASE_URL: dbUrl,
      CONCORD_QUEUE_PREFIX: prefix,
      CDC_ENABLED: 'true',
      CDC_MONITORED_TABLES: table,
      CDC_REPLICATION_SLOT_NAME: slot,
      CDC_LEASE_TTL_MS: '1000',
      DATA_SYNC_ENABLED: 'true',
      DUCKDB_DATABASE_PATH: duckPath,
    };
    return {
      async start() {
        const c = startFixture('cdc-e2e', env);
        children.push(c);
        await Promise.all([c.waitFor((l) => l.msg === 'streaming from the slot', 60_000), c.waitFor((l) => l.msg === 'dual-writer holds DuckDB', 60_000)]);
        return c;
      },
    };
  }
  /** WAL insert position just before a transaction's commit: applied >= it means that transaction is in DuckDB. */
  async function tx(work: (c: pg.PoolClient) => Promise<void>): Promise<string> {
    const c = await db.connect();
    try {
      await c.query('BEGIN');
      await work(c);
      const { rows } = await c.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      await c.query('COMMIT');
      return rows[0]!.lsn;
    } finally {
      c.release();
    }
  }
  const appliedPast = (prefix: string, slot: string, lsn: string) =>
    eventually(async () => compareLsn((await redis.get(cdcAppliedLsnKey(prefix, slot))) ?? '0/0', lsn) >= 0, 60_000, 50, `applied LSN reaches ${lsn}`);
  async function copyEqualsSource(c: Child, table: string, duckPath: string): Promise<void> {
    c.kill('SIGTERM');
    await c.exited;
    const byId = (a: Array<string | null>, b: Array<string | null>) => Number(a[0]) - Number(b[0]);
    const source = ((await db.query({ text: `SELECT ${COLUMNS} FROM ${table}`, rowMode: 'array' })).rows as string[][]).sort(byId);
    const duck = await DuckDBInstance.create(duckPath);
    const conn = await duck.connect();
    try {
      const copy = (await conn.runAndReadAll(`SELECT id::VARCHAR, name, amount::VARCHAR, n::VARCHAR FROM main.${table} ORDER BY id`)).getRows().map((r) => r.map((v) => (v === null ? null : String(v)))).sort(byId);
      expect(copy.length).toBe(source.length);
      const firstDiff = copy.findIndex((r, i) => JSON.stringify(r) !== JSON.stringify(source[i]));
      expect(firstDiff === -1 ? null : { copy: copy[firstDiff], source: source[firstDiff] }).toBeNull();
      expect(copy).toEqual(source);
    } finally {
      conn.closeSync();
      duck.closeSync();
    }
  }
  const names = () => {
    const slot = uniquePrefix('s').replace(/-/g, '_');
    slots.push(slot);
    return { slot, prefix: uniquePrefix('cdce'), duckPath: join(dir, `${slot}.duckdb`) };
  };
  let next = 1;
  /** One random transaction of 1..40 changes: inserts, updates (some of the key), deletes. */
  const randomTx = (table: string) =>
    tx(async (c) => {
      const n = 1 + Math.floor(Math.random() * 40);
      for (let i = 0; i < n; i++) {
        const r = Math.random();
        const k = 1 + Math.floor(Math.random() * next);
        if (r < 0.5) await c.query(`INSERT INTO ${table} VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`, [next++, `n${i}`, (Math.random() * 1000).toFixed(2), i]);
        else if (r < 0.8) await c.query(`UPDATE ${table} SET amount = amount + 0.01, n = n + 1, name = name || 'u' WHERE id = $1`, [k]);
        else if (r < 0.85) await c.query(`UPDATE ${table} SET id = $2 WHERE id = $1`, [k, next++]);
        else await c.query(`DELETE FROM ${table} WHERE id = $1`, [k]);
      }
    });

  it('mixed inserts, updates, deletes and truncates over many transactions: the copy equals the source row for row', async () => {
    const table = 'e2e_mixed';
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), n bigint)`);
    await db.query(`INSERT INTO ${table} SELECT g, 'seed', g * 0.5, g FROM generate_series(1, 200) g`);
    next = 201;
    const { slot, prefix, duckPath } = names();
    const c = await pipeline(table, slot, prefix, duckPath).start();
    let last = '0/0';
    for (let t = 0; t < 80; t++) {
      if (t === 30 || t === 60) last = await tx((cl) => cl.query(`TRUNCATE ${table}`).then(() => undefined));
      else last = await randomTx(table);
    }
    // The same key many times in one transaction ends with its last value.
    last = await tx(async (cl) => {
      await cl.query(`INSERT INTO ${table} VALUES (100000, 'first', 1, 1)`);
      for (let i = 2; i <= 30; i++) await cl.query(`UPDATE ${table} SET name = $2, n = $3 WHERE id = $1`, [100000, `v${i}`, i]);
    });
    await appliedPast(prefix, slot, last);
    await copyEqualsSource(c, table, duckPath);
  }, 120_000);

  it('a worker SIGKILLed in the middle of a stream and restarted: the copy equals the source, nothing lost or doubled', async () => {
    const table = 'e2e_kill';
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), n bigint)`);
    next = 1;
    const { slot, prefix, duckPath } = names();
    const p = pipeline(table, slot, prefix, duckPath);
    const first = await p.start();
    let running = true;
    let last = '0/0';
    const writer = (async () => {
      while (running) last = await randomTx(table);
    })();
    await eventually(async () => ((await redis.get(cdcAppliedLsnKey(prefix, slot))) ? true : undefined), 30_000, 50, 'some batches applied');
    await new Promise((r) => setTimeout(r, 300));
    first.kill('SIGKILL');
    await first.exited;
    await new Promise((r) => setTimeout(r, 500));
    const second = await p.start();
    await new Promise((r) => setTimeout(r, 500));
    running = false;
    await writer;
    await appliedPast(prefix, slot, last);
    await copyEqualsSource(second, table, duckPath);
  }, 120_000);
});
