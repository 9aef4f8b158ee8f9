import { describe, expect, it } from 'vitest';
import { classifyHoles, splitBySkips } from '../../http/routes/klines-read.js';
import { sequenced, sequencedJson } from '../../actors/sequence-allocator/ingest.js';
import { ingestLaneOf, klineSchema, klinesIngestLanes, klinesIngestQueue, splitByLane } from '../../queues/index.js';
import { parseKline } from '../../queues/klines.js';
import { GapTracker, loadSequenceConfig, parseKlineMessage, type MissedPage, type SequencedKline } from '../../actors/sequence-allocator/index.js';

const k = (seq: number, symbol = 'BTCUSDT'): SequencedKline => ({ seq, symbol, timestamp: seq * 60_000, kline: { t: seq * 60_000, T: seq * 60_000 + 59_999, s: symbol, o: 1, h: 2, l: 0.5, c: 1.5, v: seq } });

describe('holes: skipped vs missing', () => {
  it('finds the holes of a span and splits them by the recorded skips', () => {
    expect(classifyHoles(0, 10, [1, 2, 5, 6, 10], [])).toEqual({ skipped: [], missing: [{ from: 3, to: 4 }, { from: 7, to: 9 }] });
    expect(classifyHoles(0, 10, [1, 2, 5, 6, 10], [{ from: 3, to: 4 }, { from: 8, to: 8 }])).toEqual({
      skipped: [{ from: 3, to: 4 }, { from: 8, to: 8 }],
      missing: [{ from: 7, to: 7 }, { from: 9, to: 9 }],
    });
    // The tail after the last row up to the span's end is a hole too; rows outside the span are ignored.
    expect(classifyHoles(2, 6, [1, 2, 3, 9], [{ from: 0, to: 4 }])).toEqual({ skipped: [{ from: 4, to: 4 }], missing: [{ from: 5, to: 6 }] });
    expect(classifyHoles(5, 5, [], [])).toEqual({ skipped: [], missing: [] });
  });

  it('a skip spanning several holes covers each of them', () => {
    expect(splitBySkips([{ from: 2, to: 3 }, { from: 6, to: 9 }], [{ from: 1, to: 7 }])).toEqual({ skipped: [{ from: 2, to: 3 }, { from: 6, to: 7 }], missing: [{ from: 8, to: 9 }] });
  });
});

describe('kline messages', () => {
  const good = { t: 1000, T: 1999, s: 'BTCUSDT', o: '1.5', h: 2, l: '1', c: 1.75, v: '0' };

  it('accepts a bare kline or an exchange envelope, numbers as JSON numbers or decimal strings', () => {
    expect(parseKlineMessage(JSON.stringify(good))).toEqual({ ok: true, kline: { ...good, o: 1.5, l: 1, v: 0 } });
    expect(parseKlineMessage(Buffer.from(JSON.stringify({ e: 'kline', s: 'BTCUSDT', k: good, seq: 99 })))).toMatchObject({ ok: true, kline: { t: 1000 } });
  });

  it('names the field and the reason of a bad message', () => {
    expect(parseKlineMessage('{')).toEqual({ ok: false, reason: 'not JSON' });
    expect(parseKlineMessage(null)).toEqual({ ok: false, reason: 'empty message' });
    const bad = (over: object) => parseKlineMessage(JSON.stringify({ ...good, ...over }));
    expect(bad({ T: 10 })).toEqual({ ok: false, reason: 'T: close time T must be >= open time t' });
    expect(bad({ h: '0.5' })).toEqual({ ok: false, reason: 'h: high must be >= low' });
    expect(bad({ v: '-1' })).toMatchObject({ ok: false, reason: expect.stringMatching(/^v: /) });
    expect(bad({ t: 1.5 })).toMatchObject({ ok: false, reason: expect.stringMatching(/^t: an integer/) });
    expect(bad({ s: 'BTC/USDT' })).toMatchObject({ ok: false, reason: expect.stringMatching(/^s: a symbol/) });
    expect(bad({ o: 'NaN' })).toMatchObject({ ok: false, reason: expect.stringMatching(/^o: /) });
  });
});

describe('kline checks written out for the hot path', () => {
  const good = { t: 1000, T: 1999, s: 'BTCUSDT', o: '1.5', h: 2, l: '1', c: 1.75, v: '0' };
  const variants: unknown[] = [
    good,
    { ...good, extra: 1, seq: 5 },
    null,
    [],
    'kline',
    { ...good, s: 'BTC/USDT' },
    { ...good, s: 'A'.repeat(21) },
    { ...good, s: 5 },
    { ...good, t: 1.5 },
    { ...good, t: -1 },
    { ...good, t: 8.64e15 + 1 },
    { ...good, t: 8.64e15, T: 8.64e15 },
    { ...good, t: 2 ** 60, T: 2 ** 60 },
    { ...good, t: '1000' },
    { ...good, T: 999 },
    { ...good, h: '0.5' },
    { ...good, o: -1 },
    { ...good, o: '-1' },
    { ...good, o: 'NaN' },
    { ...good, o: '1e400' },
    { ...good, o: '1e-5' },
    { ...good, o: '.5' },
    { ...good, o: '1.' },
    { ...good, o: ' 1' },
    { ...good, o: '' },
    { ...good, o: true },
    { ...good, o: null },
    { ...good, v: undefined },
    { ...good, h: 1e308, l: 0 },
    { ...good, t: -0, T: 0 },
  ];

  it('accept exactly what the schema accepts, with the same result', () => {
    for (const value of variants) {
      const schema = klineSchema.safeParse(value);
      const fast = parseKline(value);
      expect({ value, success: fast.success, data: fast.data }).toEqual({ value, success: schema.success, data: schema.data });
    }
  });

  it("a job's klines: checked by hand, and a bad one still named by its field", () => {
    const stored = { t: 1000, T: 1999, s: 'BTCUSDT', o: 1.5, h: 2, l: 1, c: 1.75, v: 0 };
    expect(klinesIngestQueue.schema.safeParse({ source: 'kafka', klines: [stored, stored] }).success).toBe(true);
    const bad = klinesIngestQueue.schema.safeParse({ source: 'kafka', klines: [stored, { ...stored, h: 'x' }, { ...stored, s: 'A B' }, 7] });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues.map((i) => i.path.join('.')).sort()).toEqual(['klines.1.h', 'klines.2.s', 'klines.3']);
    expect(klinesIngestQueue.schema.safeParse({ source: 'kafka', klines: [] }).success).toBe(false);
    expect(klinesIngestQueue.schema.safeParse({ source: 'kafka', klines: [{ ...stored, o: Number.NaN }] }).success).toBe(false);
  });
});

describe('GapTracker', () => {
  /** A fake missed API over stored klines 1..n of BTCUSDT, with paging like the server's. */
  function api(n: number) {
    const calls: Array<[number, number, number]> = [];
    const fetchPage = async (symbol: string, fromSeq: number, toSeq: number, limit: number): Promise<MissedPage> => {
      calls.push([fromSeq, toSeq, limit]);
      const rows = Array.from({ length: n }, (_, i) => k(i + 1, symbol)).filter((x) => x.seq > fromSeq && x.seq <= toSeq);
      return { symbol, fromSeq, toSeq, count: Math.min(limit, rows.length), data: rows.slice(0, limit), hasMore: rows.length > limit };
    };
    return { calls, fetchPage };
  }

  it('recovers a gap page by page and delivers in order before the newer message; ignores repeats and older ones', async () => {
    const { calls, fetchPage } = api(100);
    const got: string[] = [];
    const tracker = new GapTracker({ fetchPage, pageSize: 4, onKline: (x, recovered) => void got.push(`${x.seq}${recovered ? 'r' : ''}`) });
    await tracker.handle(k(1));
    await tracker.handle(JSON.stringify(k(2)));
    await tracker.handle(k(2)); // repeat
    await tracker.handle(k(12)); // 3..11 missed
    await tracker.handle(k(5)); // older
    expect(got).toEqual(['1', '2', '3r', '4r', '5r', '6r', '7r', '8r', '9r', '10r', '11r', '12']);
    expect(calls).toEqual([[2, 11, 4], [6, 11, 4], [10, 11, 4]]);
    expect(tracker.last('BTCUSDT')).toBe(12);
  });

  it('handles messages of a symbol one at a time, even when they arrive during a recovery', async () => {
    const { fetchPage } = api(20);
    const got: number[] = [];
    const slow = async (...args: Parameters<typeof fetchPage>) => {
      await new Promise((r) => setTimeout(r, 20));
      return fetchPage(...args);
    };
    const tracker = new GapTracker({ fetchPage: slow, onKline: (x) => void got.push(x.seq) });
    tracker.seed('BTCUSDT', 0);
    await Promise.all([tracker.handle(k(5)), tracker.handle(k(6)), tracker.handle(k(9))]);
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('a failed recovery rejects and keeps the position, so the next message recovers from there', async () => {
    const { fetchPage } = api(10);
    let fail = true;
    const got: number[] = [];
    const tracker = new GapTracker({
      fetchPage: async (...a) => {
        if (fail) throw new Error('API down');
        return fetchPage(...a);
      },
      onKline: (x) => void got.push(x.seq),
    });
    await tracker.handle(k(1));
    await expect(tracker.handle(k(4))).rejects.toThrow('API down');
    expect(tracker.last('BTCUSDT')).toBe(1);
    fail = false;
    await tracker.handle(k(6));
    expect(got).toEqual([1, 2, 3, 4, 5, 6]);
  });
});

describe('sequence config', () => {
  it('reads defaults and refuses bad values naming the variable', () => {
    expect(loadSequenceConfig({ DATABASE_URL: 'postgres://x/y' })).toMatchObject({ enabled: true, mode: 'symbol', reserveSize: 10_000, blockSize: 1000, kafkaEnabled: false, topic: 'market_data', groupId: 'concord-klines' });
    expect(loadSequenceConfig({})).toMatchObject({ enabled: false });
    expect(() => loadSequenceConfig({ DATABASE_URL: 'postgres://x/y', SEQUENCE_STREAM_MODE: 'per-user', SEQUENCE_RESERVE_SIZE: '0' })).toThrow(/SEQUENCE_STREAM_MODE[\s\S]*SEQUENCE_RESERVE_SIZE|SEQUENCE_RESERVE_SIZE[\s\S]*SEQUENCE_STREAM_MODE/);
    expect(() => loadSequenceConfig({ DATABASE_URL: 'postgres://x/y', KLINES_KAFKA_ENABLED: 'true' })).toThrow(/KAFKA_BROKERS/);
  });

  it('ingest lanes: 1 by default, more than 1 refused in global mode', () => {
    expect(loadSequenceConfig({ DATABASE_URL: 'postgres://x/y' }).lanes).toBe(1);
    expect(loadSequenceConfig({ DATABASE_URL: 'postgres://x/y', SEQUENCE_STREAM_MODE: 'global' }).lanes).toBe(1);
    expect(loadSequenceConfig({ DATABASE_URL: 'postgres://x/y', KLINES_INGEST_LANES: '6' }).lanes).toBe(6);
    expect(() => loadSequenceConfig({ DATABASE_URL: 'postgres://x/y', SEQUENCE_STREAM_MODE: 'global', KLINES_INGEST_LANES: '2' })).toThrow(/KLINES_INGEST_LANES/);
    expect(() => loadSequenceConfig({ DATABASE_URL: 'postgres://x/y', KLINES_INGEST_LANES: '0' })).toThrow(/KLINES_INGEST_LANES/);
  });
});

describe('ingest lanes and messages', () => {
  it('a symbol always maps to one lane, every lane is used, and each lane keeps arrival order', () => {
    const symbols = Array.from({ length: 200 }, (_, i) => `SYM${i}`);
    const lanes = new Set(symbols.map((s) => ingestLaneOf(s, 4)));
    expect([...lanes].sort()).toEqual([0, 1, 2, 3]);
    expect(symbols.every((s) => ingestLaneOf(s, 4) === ingestLaneOf(s, 4) && ingestLaneOf(s, 1) === 0)).toBe(true);
    const klines = Array.from({ length: 1000 }, (_, i) => ({ s: symbols[i % 7]!, i }));
    const split = splitByLane(klines, 4);
    expect([...split.values()].flat()).toHaveLength(1000);
    for (const [lane, list] of split) {
      expect(list.every((k) => ingestLaneOf(k.s, 4) === lane)).toBe(true);
      expect(list.map((k) => k.i)).toEqual([...list.map((k) => k.i)].sort((a, b) => a - b));
    }
    expect(klinesIngestLanes(3).map((q) => q.name)).toEqual(['klines.ingest', 'klines.ingest.1', 'klines.ingest.2']);
  });

  it('the hand-written pub/sub message is exactly JSON.stringify of the sequenced kline', () => {
    for (const [o, v] of [[100.1, 12.5], [1e-7, 1e21], [0, 123456789.123456], [5e-324, 1.7976931348623157e308]] as const) {
      const kline = { t: 1_700_000_000_000, T: 1_700_000_059_999, s: 'BTC-USD.P_1', o, h: 2, l: 0, c: 1.5, v, seq: 9_007_199_254_740_991 };
      expect(sequencedJson(kline)).toBe(JSON.stringify(sequenced(kline)));
    }
  });
});
