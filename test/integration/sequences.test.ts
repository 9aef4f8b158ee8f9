import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { SequenceAllocator } from '../../actors/sequence-allocator/index.js';
import { ingestBatch } from '../../actors/sequence-allocator/ingest.js';
import { klinesIngestQueue, sequenceKey } from '../../queues/index.js';
import { startRedis } from '../../scripts/services/redis.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startFixture } from '../support/child.js';
import { readFile } from 'node:fs/promises';
import { migrateDatabase } from '../../cli/capabilities.js';
import { createLogger } from '../../runtime/index.js';

const ALLOCATE = fileURLToPath(new URL('../fixtures/sequence-allocate.ts', import.meta.url));

/** Runs test/fixtures/sequence-allocate.ts in a process of its own; resolves with its JSON line. */
function allocateInProcess(env: Record<string, string>): Promise<{ pid: number; numbers: Record<string, number[]> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ALLOCATE], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`allocator process exited ${code}: ${err.slice(-2000)}`))));
  });
}

const increasing = (list: number[]) => list.every((n, i) => i === 0 || n > list[i - 1]!);

describe('sequence allocator (real Redis, PostgreSQL and processes)', () => {
  let db: pg.Pool;
  let dbUrl: string;

  beforeAll(async () => {
    dbUrl = await freshDatabase(testServices().databaseUrl, uniquePrefix('seq').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 4 });
  });
  afterAll(async () => {
    await db?.end();
  });

  it('migration: safe on the seed tables with rows and no sequences, idempotent, reversible', async () => {
    const url = await freshDatabase(testServices().databaseUrl, uniquePrefix('seqmig').replace(/-/g, '_'));
    const seed = new pg.Pool({ connectionString: url, max: 1 });
    try {
      await seed.query(`CREATE TABLE market_klines (time timestamptz NOT NULL, symbol varchar(20) NOT NULL, open double precision, high double precision,
                          low double precision, close double precision, volume double precision, PRIMARY KEY (time, symbol))`);
      await seed.query(`INSERT INTO market_klines SELECT now() - i * interval '1 minute', 'BTCUSDT', 1, 2, 0.5, 1.5, i FROM generate_series(1, 5) i`);
      await seed.query(`CREATE TABLE sequence_tracker (id SERIAL PRIMARY KEY, last_sequence BIGINT NOT NULL DEFAULT 0, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)`);
      await seed.query(`INSERT INTO sequence_tracker (last_sequence) VALUES (41)`);
      await migrateDatabase('postgres', url, createLogger('silent'));
      const rows = await seed.query<{ n: string; with_seq: string }>(`SELECT count(*) AS n, count(sequence) AS with_seq FROM market_klines`);
      expect(rows.rows[0]).toEqual({ n: '5', with_seq: '0' });
      const tracker = await seed.query(`SELECT stream, last_sequence::int, last_assigned::int FROM sequence_tracker`);
      expect(tracker.rows).toEqual([{ stream: 'global', last_sequence: 41, last_assigned: 41 }]);
      // The seed's SQL callers go on where they were.
      expect((await seed.query(`SELECT get_next_sequence() AS n`)).rows[0]).toEqual({ n: '42' });
      // Running the file again changes nothing and fails on nothing; down then up works too.
      const sql = (name: string) => readFile(new URL(`../../migrations/postgres/${name}`, import.meta.url), 'utf8');
      await seed.query(await sql('0003_sequences.sql'));
      expect((await seed.query(`SELECT count(*)::int AS n FROM sequence_tracker`)).rows[0]).toEqual({ n: 1 });
      await seed.query(await sql('0003_sequences.down.sql'));
      await expect(seed.query(`SELECT get_next_sequence()`)).rejects.toThrow(/does not exist/);
      // The seed's own tables and rows stay: the down file drops only what 0003 created.
      expect((await seed.query(`SELECT count(*)::int AS n FROM market_klines`)).rows[0]).toEqual({ n: 5 });
      expect((await seed.query(`SELECT last_sequence::int AS n FROM sequence_tracker`)).rows).toEqual([{ n: 42 }]);
      await seed.query(await sql('0003_sequences.sql'));
      expect((await seed.query(`SELECT get_next_sequence('global', 2) AS n`)).rows[0]).toEqual({ n: '43' });
    } finally {
      await seed.end();
    }
  });

  it('three processes and SQL callers at once: every number distinct, each caller strictly increasing per stream', async () => {
    const prefix = uniquePrefix('seqconc');
    const env = { REDIS_URL: testServices().redisUrl, DATABASE_URL: dbUrl, SEQ_PREFIX: prefix, SEQ_STREAMS: 'AAA,BBB', SEQ_COUNT: '1500', SEQ_RESERVE: '200', SEQ_BLOCK: '25' };
    const runs = Promise.all([allocateInProcess(env), allocateInProcess(env), allocateInProcess({ ...env, SEQ_MODE: 'allocate', SEQ_COUNT: '400' })]);
    const fromSql: number[] = [];
    for (let i = 0; i < 40; i++) {
      fromSql.push(Number((await db.query<{ n: string }>(`SELECT get_next_sequence('AAA') AS n`)).rows[0]!.n));
      await new Promise((r) => setTimeout(r, 10));
    }
    const results = await runs;
    expect(increasing(fromSql)).toBe(true);
    for (const stream of ['AAA', 'BBB']) {
      const lists = results.map((r) => r.numbers[stream]!);
      for (const list of lists) expect(increasing(list)).toBe(true);
      const all = [...lists.flat(), ...(stream === 'AAA' ? fromSql : [])];
      expect(all.length).toBe(1500 + 1500 + 400 + (stream === 'AAA' ? 40 : 0));
      expect(new Set(all).size).toBe(all.length);
      // PostgreSQL's tracker covers every number handed out.
      const tracker = await db.query<{ last_sequence: string }>(`SELECT last_sequence FROM sequence_tracker WHERE stream = $1`, [stream]);
      expect(Number(tracker.rows[0]!.last_sequence)).toBeGreaterThanOrEqual(Math.max(...all));
    }
  }, 90_000);

  it('Redis flushed, then restarted, then restarted from an older snapshot: the next number is above every issued one', async (ctx) => {
    const server = await startRedis({ mode: 'test' });
    if (!server.owned) return ctx.skip('REDIS_URL points at a Redis this test must not flush or restart');
    const redis = new Redis(server.url, { maxRetriesPerRequest: 3 });
    redis.on('error', () => undefined);
    const prefix = uniquePrefix('seqflush');
    const allocator = new SequenceAllocator(redis, db, { prefix, reserveSize: 100, blockSize: 10 });
    const issued: number[] = [];
    const take = async (k: number) => {
      for (let i = 0; i < k; i++) issued.push(await allocator.allocate('FLUSHME'));
    };
    try {
      await take(250);
      expect(issued).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));

      let high = Math.max(...issued);
      await redis.flushall(); // our own server, started above
      await take(5);
      expect(issued.slice(-5).every((n) => n > high)).toBe(true);

      high = Math.max(...issued);
      await server.restart(); // no persistence: the state is gone
      await eventually(async () => redis.status === 'ready', 10_000, 20, 'client reconnected');
      await take(5);
      expect(issued.slice(-5).every((n) => n > high)).toBe(true);

      // A Redis restarted from an older snapshot: state from before the last numbers was handed out.
      const snapshot = await redis.hgetall(sequenceKey(prefix, 'FLUSHME'));
      await take(50);
      high = Math.max(...issued);
      await server.restart();
      await eventually(async () => redis.status === 'ready', 10_000, 20, 'client reconnected');
      const restorer = new Redis(server.url);
      await restorer.hset(sequenceKey(prefix, 'FLUSHME'), snapshot);
      restorer.disconnect();
      await take(5);
      expect(issued.slice(-5).every((n) => n > high)).toBe(true);
      expect(new Set(issued).size).toBe(issued.length);
      expect(increasing(issued)).toBe(true);
    } finally {
      allocator.close();
      redis.disconnect();
      await server.stop();
    }
  }, 60_000);

  it('recovers above the highest sequence in market_klines when the tracker lags behind it', async () => {
    const redis = new Redis(testServices().redisUrl);
    const prefix = uniquePrefix('seqfloor');
    await db.query(`INSERT INTO market_klines (time, symbol, open, high, low, close, volume, sequence) VALUES (now(), 'FLOORUSD', 1, 1, 1, 1, 1, 777777)`);
    await db.query(`INSERT INTO sequence_tracker (stream, last_sequence, last_assigned) VALUES ('FLOORUSD', 5, 5)`);
    const allocator = new SequenceAllocator(redis, db, { prefix, reserveSize: 10 });
    try {
      expect(await allocator.allocate('FLOORUSD')).toBe(777778);
      expect(Number((await db.query<{ n: string }>(`SELECT get_next_sequence('FLOORUSD') AS n`)).rows[0]!.n)).toBeGreaterThan(777778);
      // A stream new to the tracker starts above the klines table from SQL too.
      await db.query(`INSERT INTO market_klines (time, symbol, open, high, low, close, volume, sequence) VALUES (now(), 'SQLONLY', 1, 1, 1, 1, 1, 41)`);
      expect(Number((await db.query<{ n: string }>(`SELECT get_next_sequence('SQLONLY', 3) AS n`)).rows[0]!.n)).toBe(42);
    } finally {
      allocator.close();
      redis.disconnect();
    }
  });

  it('a kline another writer stores between the check and the insert keeps that row; its number is recorded as skipped', async () => {
    const redis = new Redis(testServices().redisUrl);
    const allocator = new SequenceAllocator(redis, db, { prefix: uniquePrefix('seqrace'), reserveSize: 10 });
    // A pool whose client lets a rival write land just before the batch's INSERT. The batch's
    // plain INSERT then fails on the rival's row and is made again keeping it (a second INSERT,
    // where the rival's write is already there).
    let inserts = 0;
    const racing = {
      connect: async () => {
        const client = await db.connect();
        const query = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
        (client as unknown as { query: unknown }).query = async (...a: unknown[]) => {
          if (typeof a[0] === 'string' && a[0].includes('INSERT INTO market_klines')) {
            inserts++;
            await db.query(`INSERT INTO market_klines (time, symbol, close) VALUES ('epoch'::timestamptz + 2000 * interval '1 millisecond', 'RACEUSD', 42) ON CONFLICT DO NOTHING`);
          }
          return query(...a);
        };
        return client;
      },
    } as unknown as pg.Pool;
    const klines = [1000, 2000, 3000].map((t) => ({ t, T: t + 999, s: 'RACEUSD', o: 1, h: 1, l: 1, c: 1, v: 1 }));
    try {
      const result = await ingestBatch({ pool: racing, redis, allocator, channelPrefix: uniquePrefix('race') }, klines);
      expect(result).toMatchObject({ received: 3, stored: 2, duplicates: 1 });
      expect(inserts).toBe(2);
      const rows = await db.query(`SELECT (extract(epoch FROM time) * 1000)::int AS t, sequence::int AS seq, close FROM market_klines WHERE symbol = 'RACEUSD' ORDER BY time`);
      expect(rows.rows).toEqual([{ t: 1000, seq: 1, close: 1 }, { t: 2000, seq: null, close: 42 }, { t: 3000, seq: 3, close: 1 }]);
      const skips = await db.query(`SELECT from_seq::int AS f, to_seq::int AS t FROM sequence_skips WHERE stream = 'RACEUSD'`);
      expect(skips.rows).toEqual([{ f: 2, t: 2 }]);
    } finally {
      allocator.close();
      redis.disconnect();
    }
  });

  it('a worker killed with SIGKILL mid-ingest: every kline stored once, per symbol in sequence order, no number twice', async () => {
    const prefix = uniquePrefix('seqkill');
    const redis = new Redis(testServices().redisUrl);
    const queue = new Queue(klinesIngestQueue.name, { connection: redis, prefix });
    const env = {
      REDIS_URL: testServices().redisUrl,
      DATABASE_URL: dbUrl,
      CONCORD_QUEUE_PREFIX: prefix,
      KAFKA_BROKERS: '',
      OUTBOX_ENABLED: 'false',
      SYNC_EVENTS_ENABLED: 'false',
      LOG_LEVEL: 'info',
      SEQUENCE_RESERVE_SIZE: '1000',
    };
    const symbols = ['KILLA', 'KILLB', 'KILLC', 'KILLD'];
    const JOBS = 60;
    const PER_JOB = 500;
    const a = startFixture('sequences', env);
    try {
      await a.waitFor((l) => l.fixtureEvent === 'ready', 30_000);
      // Per symbol, open times increase with arrival order, so sequence order must follow time order.
      await queue.addBulk(
        Array.from({ length: JOBS }, (_, j) => ({
          name: 'test',
          data: {
            source: 'http' as const,
            klines: Array.from({ length: PER_JOB }, (_, i) => {
              const n = j * PER_JOB + i;
              return { t: 1_700_000_000_000 + Math.floor(n / 4) * 60_000, T: 1_700_000_000_000 + Math.floor(n / 4) * 60_000 + 59_999, s: symbols[n % 4]!, o: 1, h: 2, l: 0.5, c: 1.5, v: n };
            }),
          },
        })),
      );
      await eventually(async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM market_klines WHERE symbol LIKE 'KILL%'`)).rows[0]!.n) >= 2 * PER_JOB, 30_000, 5, 'some batches stored');
      a.kill('SIGKILL');
      await a.exited;
      const before = Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM market_klines WHERE symbol LIKE 'KILL%'`)).rows[0]!.n);
      expect(before).toBeLessThan(JOBS * PER_JOB);

      const b = startFixture('sequences', env);
      try {
        await eventually(
          async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM market_klines WHERE symbol LIKE 'KILL%'`)).rows[0]!.n) === JOBS * PER_JOB,
          60_000,
          200,
          'every kline stored',
        );
        await eventually(async () => {
          const counts = await queue.getJobCounts('active', 'waiting');
          return (counts.active ?? 0) + (counts.waiting ?? 0) === 0;
        }, 10_000, 100, 'queue drained');
      } finally {
        b.kill('SIGKILL');
        await b.exited;
      }
      for (const s of symbols) {
        const { rows } = await db.query<{ seq: string; v: number }>(`SELECT sequence AS seq, volume AS v FROM market_klines WHERE symbol = $1 ORDER BY time`, [s]);
        const seqs = rows.map((r) => Number(r.seq));
        expect(rows).toHaveLength((JOBS * PER_JOB) / 4);
        expect(increasing(seqs)).toBe(true);
        expect(new Set(seqs).size).toBe(seqs.length);
      }
      expect(await queue.getFailedCount()).toBe(0);
    } finally {
      a.kill('SIGKILL');
      await queue.close();
      redis.disconnect();
    }
  }, 120_000);
});
