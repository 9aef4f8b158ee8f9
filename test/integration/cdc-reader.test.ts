import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { cdcAppliedLsnKey, compareLsn, type CdcApplyBatch } from '../../queues/cdc.js';
import { CdcSetupError } from '../../actors/cdc-reader/setup.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';
import { dropSlot, ModelCopy, queuedBatches, sourceRows, startReader, type ReaderHandle } from '../support/cdc.js';

describe('cdc-reader against a real slot', () => {
  let dbUrl: string;
  let db: pg.Pool;
  let redis: Redis;
  const slots: string[] = [];
  const readers: ReaderHandle[] = [];

  beforeAll(async () => {
    dbUrl = await freshDatabase(testServices().databaseUrl, uniquePrefix('cdc').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 4 });
    redis = new Redis(testServices().redisUrl);
  }, 60_000);
  afterAll(async () => {
    for (const r of readers) await r.stop().catch(() => undefined);
    for (const s of slots) await dropSlot(db, s);
    await db?.end();
    redis?.disconnect();
  });

  async function reader(tables: string, env: Record<string, string> = {}) {
    const slot = uniquePrefix('s').replace(/-/g, '_');
    slots.push(slot);
    const prefix = uniquePrefix('cdc');
    const h = await startReader({ databaseUrl: dbUrl, redisUrl: testServices().redisUrl, prefix, env: { CDC_MONITORED_TABLES: tables, CDC_REPLICATION_SLOT_NAME: slot, ...env } });
    readers.push(h);
    return { h, slot, prefix };
  }
  const streamBatches = async (h: ReaderHandle) => (await queuedBatches(h.queue)).filter((b) => b.kind === 'stream');
  const confirmed = async (slot: string) =>
    (await db.query<{ lsn: string }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [slot])).rows[0]!.lsn;

  it('creates publication and slot, snapshots the table, batches on transaction boundaries within the max, acks only what was applied', async () => {
    await db.query('CREATE TABLE items (id int PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)');
    await db.query(`INSERT INTO items SELECT g, 'item ' || g, g * 1.25, '2024-01-02 03:04:05.123456+00' FROM generate_series(1, 25) g`);
    const { h, slot, prefix } = await reader('items', { CDC_MAX_BATCH_SIZE: '10', CDC_SNAPSHOT_CHUNK_SIZE: '10' });

    const pub = await db.query(`SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, [`${slot}_pub`]);
    expect(pub.rows.map((r: { tablename: string }) => r.tablename)).toEqual(['concord_cdc_watermark', 'items']);
    const state = await db.query(`SELECT state, rows_copied FROM concord_cdc_tables WHERE slot = $1`, [slot]);
    expect(state.rows).toEqual([{ state: 'streaming', rows_copied: '25' }]);

    const snap = (await queuedBatches(h.queue)).filter((b) => b.kind === 'snapshot');
    expect(snap).toHaveLength(3);
    expect(snap[0]!.changes[0]).toMatchObject({ op: 'truncate', tables: ['public.items'] });
    expect(snap.flatMap((b) => b.changes).filter((c) => c.op === 'upsert')).toHaveLength(25);
    expect(snap[0]!.relations['public.items']!.columns.map((c) => [c.name, c.pgType, c.isKey])).toEqual([
      ['id', 'integer', true],
      ['name', 'text', false],
      ['amount', 'numeric(12,2)', false],
      ['at', 'timestamp with time zone', false],
    ]);
    const cp = snap[0]!.lastLsn;
    expect(await confirmed(slot)).toBe(cp);

    // Transactions of 3, 4, 5, 12 (alone bigger than the max), 1, 6 and 2 changes.
    const sizes = [3, 4, 5, 12, 1, 6, 2];
    let id = 100;
    for (const n of sizes) {
      const client = await db.connect();
      await client.query('BEGIN');
      for (let i = 0; i < n; i++) {
        const k = id++;
        if (i % 3 === 2) await client.query('UPDATE items SET amount = amount + 1 WHERE id = $1', [(k % 25) + 1]);
        else await client.query(`INSERT INTO items VALUES ($1, $2, 1.5, now())`, [k, `new ${k}`]);
      }
      await client.query('COMMIT');
      client.release();
    }
    const total = sizes.reduce((a, b) => a + b, 0);
    const batches = await eventually(async () => {
      const b = await streamBatches(h);
      return b.flatMap((x) => x.changes).length === total ? b : undefined;
    }, 20_000, 50, 'all stream changes queued');

    // Every transaction (one commit LSN) sits whole in one batch; only a lone transaction exceeds the max.
    const txOf = new Map<string, number>();
    batches.forEach((b, i) => {
      const lsns = new Set(b.changes.map((c) => c.lsn));
      for (const l of lsns) {
        expect(txOf.has(l)).toBe(false);
        txOf.set(l, i);
      }
      if (b.changes.length > 10) expect(lsns.size).toBe(1);
      expect(b.lastLsn).toBe([...lsns].sort(compareLsn).at(-1));
    });
    const perTx = [...txOf.keys()].sort(compareLsn).map((l) => batches.flatMap((b) => b.changes).filter((c) => c.lsn === l).length);
    expect(perTx).toEqual(sizes);

    // Nothing applied yet: the slot stays at the snapshot's position however long we wait.
    await new Promise((r) => setTimeout(r, 600));
    expect(await confirmed(slot)).toBe(cp);

    // The applier publishes the second batch's LSN: the slot confirms exactly that, never more.
    await redis.set(cdcAppliedLsnKey(prefix, slot), batches[1]!.lastLsn);
    await eventually(async () => (await confirmed(slot)) === batches[1]!.lastLsn, 10_000, 50, 'ack of the applied LSN');
    await new Promise((r) => setTimeout(r, 600));
    expect(await confirmed(slot)).toBe(batches[1]!.lastLsn);

    // Everything applied, nothing pending: the slot may move on past it (keepalives / heartbeats).
    const model = new ModelCopy();
    await model.catchUp(h.queue, redis, prefix, slot);
    expect(model.rows('public.items')).toEqual(await sourceRows(db, 'items'));
    await eventually(async () => compareLsn(await confirmed(slot), batches.at(-1)!.lastLsn) >= 0, 10_000, 50, 'ack of everything');
    expect(h.fatal).toEqual([]);
  }, 60_000);

  it('mirrors TRUNCATE, key changes, unchanged TOAST, and passes an added column on', async () => {
    await db.query('CREATE TABLE docs (id int PRIMARY KEY, title text, body text)');
    await db.query('ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL');
    const { h } = await reader('docs', { CDC_MAX_BATCH_SIZE: '100' });
    const big = 'x'.repeat(20_000);
    await db.query('INSERT INTO docs VALUES (1, $1, $2), (2, $3, $2)', ['one', big, 'two']);
    await db.query(`UPDATE docs SET title = 'one!' WHERE id = 1`);
    await db.query(`UPDATE docs SET id = 3 WHERE id = 2`);
    await db.query('TRUNCATE docs');
    await db.query('INSERT INTO docs VALUES (4, $1, $2)', ['four', big]);
    await db.query('ALTER TABLE docs ADD COLUMN tags text[]');
    await db.query(`INSERT INTO docs VALUES (5, 'five', 'b', '{a,"b c"}')`);
    const changes = await eventually(async () => {
      const c = (await streamBatches(h)).flatMap((b) => b.changes);
      return c.length >= 8 ? c : undefined;
    }, 20_000, 50, 'changes queued');
    expect(changes.map((c) => c.op)).toEqual(['upsert', 'upsert', 'upsert', 'delete', 'upsert', 'truncate', 'upsert', 'upsert']);
    expect(changes[2]).toMatchObject({ op: 'upsert', values: ['1', 'one!', null], unchanged: [2] });
    expect(changes[3]).toMatchObject({ op: 'delete', key: ['2'] });
    expect(changes[5]).toMatchObject({ op: 'truncate', tables: ['public.docs'] });
    expect(changes[7]).toMatchObject({ op: 'upsert', values: ['5', 'five', 'b', '{a,"b c"}'] });
    const last = (await streamBatches(h)).at(-1)!;
    expect(last.relations['public.docs']!.columns.at(-1)).toEqual({ name: 'tags', pgType: 'text[]', typeOid: 1009, isKey: false });
    expect(h.fatal).toEqual([]);
  }, 60_000);

  it('quarantines a table whose column is dropped or that has no primary key, loudly, and keeps the others flowing', async () => {
    await db.query('CREATE TABLE good (id int PRIMARY KEY, v text)');
    await db.query('CREATE TABLE drifty (id int PRIMARY KEY, a text, b text)');
    await db.query('CREATE TABLE nokey (v text)');
    await db.query('ALTER TABLE nokey REPLICA IDENTITY FULL');
    const { h, slot } = await reader('good,drifty,nokey');
    await db.query(`INSERT INTO drifty VALUES (1, 'a', 'b')`);
    await db.query('ALTER TABLE drifty DROP COLUMN b');
    await db.query(`INSERT INTO drifty VALUES (2, 'a')`);
    await db.query(`INSERT INTO nokey VALUES ('x')`);
    await db.query(`INSERT INTO good VALUES (1, 'still flowing')`);
    const changes = await eventually(async () => {
      const c = (await streamBatches(h)).flatMap((b) => b.changes);
      return c.some((x) => x.op === 'upsert' && x.table === 'public.good') ? c : undefined;
    }, 20_000, 50, 'good table change queued');
    expect(changes.filter((c) => c.op === 'upsert').map((c) => c.op === 'upsert' && [c.table, c.values[0]])).toEqual([
      ['public.drifty', '1'],
      ['public.good', '1'],
    ]);
    const states = await eventually(async () => {
      const { rows } = await db.query<{ table_name: string; state: string; reason: string }>(`SELECT table_name, state, reason FROM concord_cdc_tables WHERE slot = $1 AND state = 'quarantined' ORDER BY 1`, [slot]);
      return rows.length === 2 ? rows : undefined;
    }, 10_000, 50, 'quarantine recorded');
    expect(states[0]).toMatchObject({ table_name: 'public.drifty', reason: expect.stringContaining('column b was dropped') });
    expect(states[1]).toMatchObject({ table_name: 'public.nokey', reason: expect.stringContaining('no primary key') });
    const metrics = await h.registry.metrics();
    expect(metrics).toMatch(/concord_cdc_schema_errors_total\{kind="dropped_or_renamed_column"\} 1/);
    expect(metrics).toMatch(/concord_cdc_schema_errors_total\{kind="no_primary_key"\} 1/);
    expect(metrics).toMatch(/concord_cdc_quarantined_tables 2/);
    expect(h.reader.status().quarantined).toHaveProperty('public.drifty');
  }, 60_000);

  it('says what is wrong when the role lacks REPLICATION or does not own the tables', async () => {
    const role = uniquePrefix('r').replace(/-/g, '_');
    await db.query(`CREATE TABLE owned (id int PRIMARY KEY)`);
    await db.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    await db.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);
    const url = new URL(dbUrl);
    url.username = role;
    url.password = 'pw';
    const start = (env: Record<string, string> = {}) =>
      startReader({ databaseUrl: url.toString(), redisUrl: testServices().redisUrl, prefix: uniquePrefix('cdc'), env: { CDC_MONITORED_TABLES: 'owned', CDC_REPLICATION_SLOT_NAME: uniquePrefix('s').replace(/-/g, '_'), ...env } });
    const noRep = await start().catch((e: unknown) => e);
    expect(noRep).toBeInstanceOf(CdcSetupError);
    expect(String((noRep as Error).message)).toMatch(new RegExp(`role ${role} lacks the REPLICATION attribute.*ALTER ROLE "${role}" WITH REPLICATION`));
    await db.query(`ALTER ROLE ${role} WITH REPLICATION`);
    const notOwner = await start().catch((e: unknown) => e);
    expect(notOwner).toBeInstanceOf(CdcSetupError);
    expect(String((notOwner as Error).message)).toMatch(/may not create publication .* must own those tables/);
  }, 60_000);
});

export type { CdcApplyBatch };
