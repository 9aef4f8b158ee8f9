import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { GapTracker, SequenceAllocator, type GapInfo, type SequencedKline } from '../../actors/sequence-allocator/index.js';
import { packKlines } from '../../queues/klines.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';

const T0 = 1_704_067_200_000;
const kline = (s: string, i: number) => ({ t: T0 + i * 60_000, T: T0 + i * 60_000 + 59_999, s, o: 100 + i, h: 110 + i, l: 90 + i, c: 105 + i, v: 1.5 + i });

/** The klines HTTP surface over a real allocator, PostgreSQL and Redis (no Kafka). */
describe('klines API and sequence allocator (HTTP path)', () => {
  let proc: RunningProcess;
  let db: pg.Pool;
  let sub: Redis;
  let base: string;
  let prefix: string;
  const received: SequencedKline[] = [];

  beforeAll(async () => {
    const { redisUrl, databaseUrl } = testServices();
    const dbUrl = await freshDatabase(databaseUrl, uniquePrefix('klapi').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 2 });
    prefix = uniquePrefix('klapi');
    const env = runtimeEnv({ redisUrl, databaseUrl: dbUrl, prefix }, {
      KAFKA_BROKERS: '',
      OUTBOX_ENABLED: 'false',
      SYNC_EVENTS_ENABLED: 'false',
      KLINES_CHANNEL_PREFIX: `${prefix}:klines:`,
      SEQUENCE_RESERVE_SIZE: '50',
      // Three ingest lanes: BTCUSDT is in lane 0 and ETHUSDT in lane 2, so a POST of both is two jobs.
      KLINES_INGEST_LANES: '3',
    });
    proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', 'sequence-allocator', env), onEscalate: () => undefined });
    base = proc.http.url;
    sub = new Redis(redisUrl);
    await sub.psubscribe(`${prefix}:klines:*`);
    sub.on('pmessage', (_p, _c, m) => received.push(JSON.parse(m) as SequencedKline));
  });
  afterAll(async () => {
    sub?.disconnect();
    await proc?.stop(10_000);
    await db?.end();
  });

  const get = async (path: string) => {
    const res = await fetch(`${base}${path}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & { data: SequencedKline[] } };
  };
  const post = async (body: unknown) => {
    const res = await fetch(`${base}/api/v1/klines?wait=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const fieldsOf = (body: Record<string, unknown>) => (body.error as { details: { issues: Array<{ field: string }> } }).details.issues.map((i) => i.field).sort();

  it('stamps per-symbol sequences in arrival order, stores, publishes, and ignores a redelivery', async () => {
    const first = await post({ klines: [kline('BTCUSDT', 0), kline('ETHUSDT', 0), kline('BTCUSDT', 1), kline('BTCUSDT', 2), kline('BTCUSDT', 1)] });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ accepted: 5, received: 5, stored: 4, duplicates: 1 });
    expect(first.body.jobIds).toHaveLength(2);
    const again = await post([kline('BTCUSDT', 1), kline('BTCUSDT', 3)]); // 1 is a redelivery
    expect(again.body).toMatchObject({ stored: 1, duplicates: 1 });
    // Binance-style strings are accepted too.
    const strings = await post({ ...kline('BTCUSDT', 4), o: '104.5', h: '200', l: '1', c: '150', v: '0.001' });
    expect(strings.body).toMatchObject({ stored: 1 });

    const { rows } = await db.query<{ symbol: string; sequence: string; t: string }>(
      `SELECT symbol, sequence, (extract(epoch FROM time) * 1000)::bigint AS t FROM market_klines ORDER BY symbol, sequence`,
    );
    expect(rows.map((r) => [r.symbol, Number(r.sequence), Number(r.t)])).toEqual([
      ['BTCUSDT', 1, T0],
      ['BTCUSDT', 2, T0 + 60_000],
      ['BTCUSDT', 3, T0 + 120_000],
      ['BTCUSDT', 4, T0 + 180_000],
      ['BTCUSDT', 5, T0 + 240_000],
      ['ETHUSDT', 1, T0],
    ]);
    await eventually(async () => received.length >= 6, 5_000, 20, 'six publications');
    await new Promise((r) => setTimeout(r, 100));
    expect(received.filter((m) => m.symbol === 'BTCUSDT').map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(received).toHaveLength(6);
    // Order is per symbol: with lanes, ETHUSDT's message may come before BTCUSDT's.
    expect(received.find((m) => m.symbol === 'BTCUSDT')).toEqual({ seq: 1, symbol: 'BTCUSDT', timestamp: T0, kline: kline('BTCUSDT', 0) });

    const pos = await get('/api/v1/sequences/BTCUSDT');
    expect(pos.body).toMatchObject({ stream: 'BTCUSDT', mode: 'symbol', last: 5, assigned: 5, stored: 5 });
    expect(pos.body.durable).toBeGreaterThanOrEqual(5);
  });

  it('missed API: exclusive/inclusive bounds, limit and paging, unknown symbol', async () => {
    const range = await get('/api/v1/klines/missed?symbol=BTCUSDT&fromSeq=1&toSeq=3');
    expect(range.status).toBe(200);
    expect(range.body).toMatchObject({ symbol: 'BTCUSDT', fromSeq: 1, toSeq: 3, count: 2, hasMore: false, skipped: [], missing: [] });
    expect(range.body.data.map((d) => d.seq)).toEqual([2, 3]);
    expect(range.body.data[0]).toEqual({ seq: 2, symbol: 'BTCUSDT', timestamp: T0 + 60_000, kline: kline('BTCUSDT', 1) });

    const page1 = await get('/api/v1/klines/missed?symbol=BTCUSDT&fromSeq=0&toSeq=100&limit=2');
    expect(page1.body).toMatchObject({ count: 2, hasMore: true });
    expect(page1.body.data.map((d) => d.seq)).toEqual([1, 2]);
    const page2 = await get('/api/v1/klines/missed?symbol=BTCUSDT&fromSeq=2&toSeq=100&limit=2');
    expect(page2.body.data.map((d) => d.seq)).toEqual([3, 4]);
    const page3 = await get('/api/v1/klines/missed?symbol=BTCUSDT&fromSeq=4&toSeq=100&limit=2');
    expect(page3.body).toMatchObject({ count: 1, hasMore: false, missing: [] });

    const defaultLimit = await get('/api/v1/klines/missed?symbol=BTCUSDT&fromSeq=0&toSeq=5');
    expect(defaultLimit.body.count).toBe(5);
    const unknown = await get('/api/v1/klines/missed?symbol=NOPE&fromSeq=0&toSeq=10');
    expect(unknown).toMatchObject({ status: 200, body: { count: 0, data: [], hasMore: false } });
  });

  it('missed API: the JSON built in PostgreSQL carries every value exactly, in the documented key order', async () => {
    // Rows as another writer could leave them: awkward floats, no close time, values JSON has no number for.
    await db.query(
      `INSERT INTO market_klines (time, symbol, open, high, low, close, volume, sequence, close_time) VALUES
         ('epoch'::timestamptz + $1::bigint * interval '1 millisecond', 'EX.A-1', 0.1, 1e21, 1e-7, 123456.789012345, 0, 1, 'epoch'::timestamptz + ($1::bigint + 59999) * interval '1 millisecond'),
         ('epoch'::timestamptz + ($1::bigint + 60000) * interval '1 millisecond', 'EX.A-1', 'NaN', 'Infinity', '-Infinity', NULL, 0.30000000000000004, 2, NULL)`,
      [T0],
    );
    const res = await fetch(`${base}/api/v1/klines/missed?symbol=EX.A-1&fromSeq=0&toSeq=2`);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { data: Array<Record<string, unknown> & { kline: Record<string, unknown> }> } & Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['symbol', 'fromSeq', 'toSeq', 'count', 'data', 'hasMore', 'skipped', 'missing']);
    expect(Object.keys(body.data[0]!)).toEqual(['seq', 'symbol', 'timestamp', 'kline']);
    expect(Object.keys(body.data[0]!.kline)).toEqual(['t', 'T', 's', 'o', 'h', 'l', 'c', 'v']);
    expect(body).toEqual({
      symbol: 'EX.A-1',
      fromSeq: 0,
      toSeq: 2,
      count: 2,
      hasMore: false,
      skipped: [],
      missing: [],
      data: [
        { seq: 1, symbol: 'EX.A-1', timestamp: T0, kline: { t: T0, T: T0 + 59_999, s: 'EX.A-1', o: 0.1, h: 1e21, l: 1e-7, c: 123456.789012345, v: 0 } },
        { seq: 2, symbol: 'EX.A-1', timestamp: T0 + 60_000, kline: { t: T0 + 60_000, T: null, s: 'EX.A-1', o: null, h: null, l: null, c: null, v: 0.30000000000000004 } },
      ],
    });
    await db.query(`DELETE FROM market_klines WHERE symbol = 'EX.A-1'`); // the gap report test counts symbols
  });

  it('missed API: 400 naming the field for every bad parameter', async () => {
    const cases: Array<[string, string[]]> = [
      ['fromSeq=0&toSeq=5', ['query.symbol']],
      ['symbol=BTCUSDT&toSeq=5', ['query.fromSeq']],
      ['symbol=BTCUSDT&fromSeq=0', ['query.toSeq']],
      ['symbol=BTCUSDT&fromSeq=1.5&toSeq=5', ['query.fromSeq']],
      ['symbol=BTCUSDT&fromSeq=abc&toSeq=5', ['query.fromSeq']],
      ['symbol=BTCUSDT&fromSeq=-1&toSeq=5', ['query.fromSeq']],
      ['symbol=BTCUSDT&fromSeq=0&toSeq=-5', ['query.toSeq']],
      ['symbol=BTCUSDT&fromSeq=5&toSeq=5', ['query.fromSeq']],
      ['symbol=BTCUSDT&fromSeq=6&toSeq=5', ['query.fromSeq']],
      ['symbol=BTCUSDT&fromSeq=0&toSeq=5&limit=0', ['query.limit']],
      ['symbol=BTCUSDT&fromSeq=0&toSeq=5&limit=1001', ['query.limit']],
      ['symbol=BTCUSDT&fromSeq=0&toSeq=5&limit=ten', ['query.limit']],
      ['symbol=BTC%20USDT&fromSeq=0&toSeq=5', ['query.symbol']],
    ];
    for (const [query, fields] of cases) {
      const res = await get(`/api/v1/klines/missed?${query}`);
      expect({ query, status: res.status, fields: res.status === 400 ? fieldsOf(res.body) : [] }).toEqual({ query, status: 400, fields });
    }
  });

  it('POST: 400 naming the kline field, nothing stored from a refused request', async () => {
    const bad = await post({ klines: [kline('BTCUSDT', 10), { ...kline('BTCUSDT', 11), h: 'high' }, { ...kline('BTCUSDT', 12), T: T0 }] });
    expect(bad.status).toBe(400);
    expect(fieldsOf(bad.body)).toEqual(['klines.1.h', 'klines.2.T']);
    const missing = await post({ t: T0, s: 'BTCUSDT' });
    expect(fieldsOf(missing.body)).toEqual(['klines.0.T', 'klines.0.c', 'klines.0.h', 'klines.0.l', 'klines.0.o', 'klines.0.v']);
    expect((await post([])).status).toBe(400);
    const { rows } = await db.query(`SELECT 1 FROM market_klines WHERE time >= to_timestamp($1 / 1000.0)`, [T0 + 10 * 60_000]);
    expect(rows).toHaveLength(0);
  });

  it('tells numbers never stamped (skipped) from stamped klines that are gone (missing); NULL sequences are counted', async () => {
    // Another caller of the stream takes numbers 6..8: the next kline gets 9.
    // Another caller of the stream takes 3 numbers. Its first use re-syncs from PostgreSQL and
    // jumps above every reserved number, so the ingest path's next kline skips 6..f+2.
    const other = new SequenceAllocator(new Redis(testServices().redisUrl), db, { prefix, reserveSize: 50 });
    const f = await other.allocate('BTCUSDT', 3);
    expect(f).toBeGreaterThan(6);
    expect((await post([kline('BTCUSDT', 5)])).body).toMatchObject({ stored: 1, skipped: f + 2 - 5 });
    const next = f + 3;
    // Stamped and then deleted: lost data.
    await db.query(`DELETE FROM market_klines WHERE symbol = 'BTCUSDT' AND sequence = 3`);
    // A row from an older producer, without a sequence.
    await db.query(`INSERT INTO market_klines (time, symbol, open, high, low, close, volume) VALUES (to_timestamp(0), 'BTCUSDT', 1, 1, 1, 1, 1)`);

    const missed = await get(`/api/v1/klines/missed?symbol=BTCUSDT&fromSeq=1&toSeq=${next + 10}`);
    expect(missed.body.data.map((d) => d.seq)).toEqual([2, 4, 5, next]);
    expect(missed.body).toMatchObject({ skipped: [{ from: 6, to: f + 2 }], missing: [{ from: 3, to: 3 }] });

    const gaps = await get('/api/v1/klines/gaps?symbol=BTCUSDT');
    expect(gaps.body).toEqual({
      mode: 'symbol',
      symbols: [
        {
          symbol: 'BTCUSDT', records: 6, withSequence: 5, withoutSequence: 1, minSeq: 1, maxSeq: next,
          missing: [{ from: 3, to: 3 }], skipped: [{ from: 6, to: f + 2 }], missingCount: 1, skippedCount: f + 2 - 5, truncated: false,
        },
      ],
    });
    const all = await get('/api/v1/klines/gaps');
    expect((all.body.symbols as Array<{ symbol: string }>).map((s) => s.symbol)).toEqual(['BTCUSDT', 'ETHUSDT']);
    const stats = await get('/api/v1/stats');
    expect(stats.body.sequences).toMatchObject({ mode: 'symbol', kafkaTopic: null, numbersSkipped: f + 2 - 5 });
    other.close();
  });

  it('GapTracker: with messages dropped on purpose, the client recovers exactly the missing klines, in order', async () => {
    const delivered: Array<{ seq: number; recovered: boolean; t: number }> = [];
    const gaps: GapInfo[] = [];
    const tracker = new GapTracker({ baseUrl: base, pageSize: 7, onGap: (g) => void gaps.push(g), onKline: (k, recovered) => void delivered.push({ seq: k.seq, recovered, t: k.kline.t }) });
    const client = new Redis(testServices().redisUrl);
    await client.subscribe(`${prefix}:klines:SOLUSDT`);
    let n = 0;
    const handled: Promise<void>[] = [];
    client.on('message', (_c, m) => {
      n++;
      // Drop messages 2..4 and 9..30 of the stream (a slow or disconnected client).
      if ((n >= 2 && n <= 4) || (n >= 9 && n <= 30)) return;
      handled.push(tracker.handle(m));
    });
    const all = Array.from({ length: 40 }, (_, i) => kline('SOLUSDT', i));
    for (let i = 0; i < all.length; i += 10) await post(all.slice(i, i + 10));
    await eventually(async () => n === 40, 5_000, 20, 'all 40 messages seen');
    await Promise.all(handled);
    client.disconnect();
    expect(delivered.map((d) => d.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(delivered.map((d) => d.t)).toEqual(all.map((k) => k.t));
    expect(delivered.filter((d) => d.recovered).map((d) => d.seq)).toEqual([2, 3, 4, ...Array.from({ length: 22 }, (_, i) => i + 9)]);
    expect(gaps).toEqual([
      { symbol: 'SOLUSDT', after: 1, before: 5, recovered: 3, skipped: [], missing: [] },
      { symbol: 'SOLUSDT', after: 8, before: 31, recovered: 22, skipped: [], missing: [] },
    ]);
  });

  it('jobs an older version queued (kline objects) are stored beside packed ones; a malformed packed job goes to the DLQ naming the field', async () => {
    const queue = proc.runtime.services.queues.queue('klines.ingest');
    const objects = await queue.add('old', { source: 'http', klines: [kline('OLDFMT', 0), kline('OLDFMT', 1)] });
    // Kline 1 again, packed: stored once across the two formats.
    const packed = await queue.add('new', { source: 'kafka', count: 2, packed: packKlines([kline('OLDFMT', 1), kline('OLDFMT', 2)]) });
    const bad = await queue.add('bad', { source: 'kafka', count: 1, packed: { ...packKlines([kline('OLDFMT', 3)]), o: '1}' } });
    const result = async (id: string) => (await queue.getJob(id))?.returnvalue as Record<string, number> | undefined;
    await eventually(async () => Boolean((await result(objects.id!)) && (await result(packed.id!))), 10_000, 50, 'both jobs done');
    expect(await result(objects.id!)).toMatchObject({ received: 2, stored: 2, duplicates: 0 });
    expect(await result(packed.id!)).toMatchObject({ received: 2, stored: 1, duplicates: 1 });
    const { rows } = await db.query<{ seq: string; t: string }>(`SELECT sequence AS seq, (extract(epoch FROM time) * 1000)::bigint AS t FROM market_klines WHERE symbol = 'OLDFMT' ORDER BY time`);
    expect(rows.map((r) => [Number(r.seq), Number(r.t)])).toEqual([0, 1, 2].map((i) => [i + 1, T0 + i * 60_000]));
    await eventually(async () => received.filter((m) => m.symbol === 'OLDFMT').length === 3, 5_000, 20, 'three publications');
    expect(received.filter((m) => m.symbol === 'OLDFMT')).toEqual([0, 1, 2].map((i) => ({ seq: i + 1, symbol: 'OLDFMT', timestamp: T0 + i * 60_000, kline: kline('OLDFMT', i) })));
    await eventually(async () => (await proc.runtime.services.deadLetters.list('klines.ingest', 0, 10)).entries.some((e) => e.jobId === bad.id), 10_000, 50, 'bad job dead-lettered');
    const entry = (await proc.runtime.services.deadLetters.list('klines.ingest', 0, 10)).entries.find((e) => e.jobId === bad.id)!;
    expect(entry.failedReason).toMatch(/^invalid payload: data\.packed\.o: numbers >= 0 joined by commas/);
    expect(entry.attemptsMade).toBe(1);
  });
});
