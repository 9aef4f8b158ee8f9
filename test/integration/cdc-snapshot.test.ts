import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startFixture, type Child } from '../support/child.js';
import { loadConfig } from '../../runtime/index.js';
import { startProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { dropSlot, ModelCopy, sourceRows, startReader, type ReaderHandle } from '../support/cdc.js';

/** Random inserts, updates and deletes on keys 1..keys until stopped; returns the stopper. */
function writer(db: pg.Pool, table: string, keys: number): () => Promise<number> {
  let running = true;
  let n = 0;
  const loop = (async () => {
    while (running) {
      const k = 1 + Math.floor(Math.random() * keys);
      const r = Math.random();
      if (r < 0.4) await db.query(`INSERT INTO ${table} VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v`, [k, `w${n}`]);
      else if (r < 0.8) await db.query(`UPDATE ${table} SET v = $2 WHERE id = $1`, [k, `u${n}`]);
      else await db.query(`DELETE FROM ${table} WHERE id = $1`, [k]);
      n++;
    }
  })();
  return async () => {
    running = false;
    await loop;
    return n;
  };
}

describe('cdc-reader snapshot, backfill and failover', () => {
  let dbUrl: string;
  let db: pg.Pool;
  let redis: Redis;
  const slots: string[] = [];
  const handles: ReaderHandle[] = [];
  const children: Child[] = [];

  beforeAll(async () => {
    dbUrl = await freshDatabase(testServices().databaseUrl, uniquePrefix('cdcs').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 6 });
    redis = new Redis(testServices().redisUrl);
  }, 60_000);
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const h of handles) await h.stop().catch(() => undefined);
    for (const s of slots) await dropSlot(db, s);
    await db?.end();
    redis?.disconnect();
  });

  const names = () => {
    const slot = uniquePrefix('s').replace(/-/g, '_');
    slots.push(slot);
    return { slot, prefix: uniquePrefix('cdc') };
  };
  const start = async (slot: string, prefix: string, tables: string, env: Record<string, string> = {}) => {
    const h = await startReader({ databaseUrl: dbUrl, redisUrl: testServices().redisUrl, prefix, env: { CDC_MONITORED_TABLES: tables, CDC_REPLICATION_SLOT_NAME: slot, ...env } });
    handles.push(h);
    return h;
  };
  /** Applies what is queued until the copy equals the source table. */
  const converges = (model: ModelCopy, h: ReaderHandle, prefix: string, slot: string, table: string) =>
    eventually(async () => {
      await model.catchUp(h.queue, redis, prefix, slot);
      const [copy, source] = [model.rows(`public.${table}`), await sourceRows(db, table)];
      return JSON.stringify(copy) === JSON.stringify(source) ? copy : undefined;
    }, 30_000, 100, `copy of ${table} equals the source`);

  it('the initial snapshot is consistent with the slot: writes during it are neither lost nor doubled', async () => {
    await db.query('CREATE TABLE acct (id int PRIMARY KEY, v text)');
    await db.query(`INSERT INTO acct SELECT g, 'init' FROM generate_series(1, 3000) g`);
    const { slot, prefix } = names();
    const stop = writer(db, 'acct', 3500);
    const h = await start(slot, prefix, 'acct', { CDC_SNAPSHOT_CHUNK_SIZE: '500' });
    await new Promise((r) => setTimeout(r, 500));
    const writes = await stop();
    expect(writes).toBeGreaterThan(50);
    const model = new ModelCopy();
    const rows = await converges(model, h, prefix, slot, 'acct');
    expect(rows.length).toBeGreaterThan(1000);
    expect(model.seen.some((b) => b.kind === 'stream')).toBe(true);
  }, 60_000);

  it('backfills a table added later in key chunks while it is written to (streamed rows win), and resumes after a stop', async () => {
    await db.query('CREATE TABLE first_t (id int PRIMARY KEY, v text)');
    await db.query('CREATE TABLE later (id int PRIMARY KEY, v text)');
    await db.query(`INSERT INTO later SELECT g, 'orig ' || g FROM generate_series(1, 3000) g`);
    const { slot, prefix } = names();
    const model = new ModelCopy();
    const h1 = await start(slot, prefix, 'first_t');
    await db.query(`INSERT INTO first_t VALUES (1, 'a')`);
    await h1.stop();

    const stop = writer(db, 'later', 3200);
    // The model applier runs alongside, as the dual-writer would: without it the
    // queue passes its high-water mark and the reader (rightly) pauses.
    let current = h1;
    const applier = setInterval(() => void model.catchUp(current.queue, redis, prefix, slot).catch(() => undefined), 100);
    try {
      const h2 = (current = await start(slot, prefix, 'first_t,later', { CDC_SNAPSHOT_CHUNK_SIZE: '100' }));
      // Stop part-way through the backfill, and resume from the stored progress.
      const progress = await eventually(async () => {
        const { rows } = await db.query<{ state: string; last_key: string[] | null }>(`SELECT state, last_key FROM concord_cdc_tables WHERE slot = $1 AND table_name = 'public.later'`, [slot]);
        return rows[0]?.last_key && Number(rows[0].last_key[0]) >= 500 ? rows[0] : undefined;
      }, 30_000, 20, 'backfill progress stored');
      expect(progress.state).toBe('backfill');
      await h2.stop();
      const h3 = (current = await start(slot, prefix, 'first_t,later', { CDC_SNAPSHOT_CHUNK_SIZE: '100' }));
      await eventually(async () => {
        const { rows } = await db.query<{ state: string }>(`SELECT state FROM concord_cdc_tables WHERE slot = $1 AND table_name = 'public.later'`, [slot]);
        return rows[0]?.state === 'streaming';
      }, 30_000, 50, 'backfill finished');
      await stop();
      clearInterval(applier);
      await converges(model, h3, prefix, slot, 'later');
      expect(model.rows('public.first_t')).toEqual([['1', 'a']]);
      const chunks = model.seen.filter((b) => b.kind === 'snapshot' && b.relations['public.later']);
      expect(chunks.length).toBeGreaterThanOrEqual(20); // ~3000 rows in chunks of 100, fewer as the writer deletes
      expect(h2.fatal.concat(h3.fatal)).toEqual([]);
    } finally {
      clearInterval(applier);
      await stop();
    }
  }, 90_000);

  it('a row changed between a chunk\'s select and its high watermark keeps its streamed value (DBLog)', async () => {
    await db.query('CREATE TABLE base_t (id int PRIMARY KEY, v text)');
    await db.query('CREATE TABLE raced (id int PRIMARY KEY, v text)');
    await db.query(`INSERT INTO raced SELECT g, 'orig' FROM generate_series(1, 40) g`);
    const { slot, prefix } = names();
    const model = new ModelCopy();
    const h1 = await start(slot, prefix, 'base_t');
    await model.catchUp(h1.queue, redis, prefix, slot);
    await h1.stop();
    let raced = 0;
    const h = await startReader({
      databaseUrl: dbUrl,
      redisUrl: testServices().redisUrl,
      prefix,
      env: { CDC_MONITORED_TABLES: 'base_t,raced', CDC_REPLICATION_SLOT_NAME: slot, CDC_SNAPSHOT_CHUNK_SIZE: '10' },
      // Inside every chunk's window: change the chunk's first row, delete its last.
      afterChunkSelect: async (_table, rows) => {
        if (rows.length === 0) return;
        await db.query(`UPDATE raced SET v = 'streamed' WHERE id = $1`, [rows[0]![0]]);
        await db.query(`DELETE FROM raced WHERE id = $1`, [rows.at(-1)![0]]);
        raced++;
      },
    });
    handles.push(h);
    await converges(model, h, prefix, slot, 'raced');
    expect(raced).toBe(4);
    expect(model.rows('public.raced').filter((r) => r[1] === 'streamed')).toHaveLength(4);
    expect(model.rows('public.raced')).toHaveLength(36);
  }, 60_000);

  it('one reader per slot across processes: SIGKILL the holder and another process takes over from the slot', async () => {
    await db.query('CREATE TABLE ha (id int PRIMARY KEY, v text)');
    const { slot, prefix } = names();
    const env = {
      REDIS_URL: testServices().redisUrl,
      DATABASE_URL: dbUrl,
      CONCORD_QUEUE_PREFIX: prefix,
      CDC_ENABLED: 'true',
      CDC_MONITORED_TABLES: 'ha',
      CDC_REPLICATION_SLOT_NAME: slot,
      CDC_LEASE_TTL_MS: '1000',
      CDC_ACK_INTERVAL_MS: '100',
    };
    const a = startFixture('cdc', env);
    const b = startFixture('cdc', env);
    children.push(a, b);
    const streaming = (c: Child) => c.waitFor((l) => l.msg === 'streaming from the slot', 60_000);
    const first = await Promise.race([streaming(a).then(() => a), streaming(b).then(() => b)]);
    const other = first === a ? b : a;
    await db.query(`INSERT INTO ha SELECT g, 'before' FROM generate_series(1, 50) g`);
    const queue = (await import('bullmq')).Queue;
    const q = new queue('cdc.apply', { connection: redis, prefix });
    const model = new ModelCopy();
    await eventually(async () => {
      await model.catchUp(q, redis, prefix, slot);
      return model.rows('public.ha').length === 50;
    }, 30_000, 100, 'first holder streams');
    first.kill('SIGKILL');
    await first.exited;
    await db.query(`UPDATE ha SET v = 'after' WHERE id <= 25`);
    await db.query(`INSERT INTO ha SELECT g, 'after' FROM generate_series(51, 60) g`);
    await streaming(other);
    await eventually(async () => {
      await model.catchUp(q, redis, prefix, slot);
      return JSON.stringify(model.rows('public.ha')) === JSON.stringify(await sourceRows(db, 'ha'));
    }, 30_000, 100, 'standby took over and the copy caught up');
    const leaders = other.lines.filter((l) => l.msg === 'lease taken; starting as leader');
    expect(leaders).toHaveLength(1);
    expect(Number(leaders[0]!.epoch)).toBeGreaterThan(1);
    // The status route, from an api-role process (the control plane).
    const apiEnv = { ...env, PORT: '0', HOST: '127.0.0.1', AUTH_MODE: 'none', LOG_LEVEL: 'silent', KAFKA_BROKERS: '', DUCKDB_DATABASE_PATH: ':memory:' };
    const api = await startProcess({ config: loadConfig(apiEnv), role: 'api', ...selectCapabilities('api', undefined, apiEnv), onEscalate: () => undefined });
    let status;
    try {
      status = await eventually(async () => {
        const body = (await (await fetch(`${api.http.url}/api/v1/data-sync/cdc/status`)).json()) as {
          reader?: { epoch: number };
          slot: Record<string, unknown>;
          publication: { tables: string[] };
          tables: unknown[];
          lag: { bytes: unknown };
          appliedLsn: string;
        };
        if (body.reader?.epoch !== Number(leaders[0]!.epoch)) throw new Error(`status so far: ${JSON.stringify(body).slice(0, 400)}`);
        return body;
      }, 10_000, 100, 'status from the new holder');
    } finally {
      await api.stop(5_000);
    }
    expect(status.slot).toMatchObject({ name: slot, exists: true, active: true });
    expect(status.publication.tables).toEqual(['public.concord_cdc_watermark', 'public.ha']);
    expect(status.tables).toEqual([expect.objectContaining({ table: 'public.ha', state: 'streaming' })]);
    expect(typeof status.lag.bytes).toBe('number');
    expect(status.appliedLsn).toBe(model.stored);
    await q.close();
  }, 90_000);
});
