import { describe, expect, it } from 'vitest';
import { ingestLaneOf, klinesIngestQueue, type Kline } from '../../queues/index.js';
import { KLINE_FIELDS, MAX_KLINES_PER_JOB, packKlines } from '../../queues/klines.js';
import { packMessages, parseKlineMessage, scanKline } from '../../actors/sequence-allocator/kline-packer.js';

/** What packMessages must give: every message the slow way (parseKlineMessage, then packKlines). */
function reference(values: Array<Buffer | null>, lanes: number) {
  const perLane = new Map<number, Kline[]>();
  const rejected: Array<{ index: number; reason: string }> = [];
  values.forEach((value, index) => {
    const r = parseKlineMessage(value);
    if (!r.ok) return void rejected.push({ index, reason: r.reason });
    const lane = ingestLaneOf(r.kline.s, lanes);
    if (!perLane.has(lane)) perLane.set(lane, []);
    perLane.get(lane)!.push(r.kline);
  });
  const out = new Map<number, Array<{ count: number; packed: ReturnType<typeof packKlines> }>>();
  for (const [lane, list] of perLane) {
    const jobs = [];
    for (let i = 0; i < list.length; i += MAX_KLINES_PER_JOB) {
      const part = list.slice(i, i + MAX_KLINES_PER_JOB);
      jobs.push({ count: part.length, packed: packKlines(part) });
    }
    out.set(lane, jobs);
  }
  return { lanes: out, rejected };
}

let seed = 7;
const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
const digits = (n: number, first = '123456789') => (n === 0 ? '' : pick([...first]) + Array.from({ length: n - 1 }, () => pick([...'0123456789'])).join(''));
/** A decimal of up to ~17 digits: mostly canonical, sometimes not (leading/trailing zeros, tiny, long). */
function amount(): string {
  const r = random();
  if (r < 0.05) return pick(['0', '0.0', '00', '1.', '.5', '1e5', '1E-3', '-1', '-0', '100.10', '0.000001', '0.0000001', '0.0000009999', 'NaN', '']);
  if (r < 0.25) return `0.${'0'.repeat(Math.floor(random() * 7))}${digits(1 + Math.floor(random() * 12))}`;
  const int = digits(1 + Math.floor(random() * 9));
  const frac = random() < 0.7 ? digits(Math.floor(random() * 9), '0123456789') : '';
  return frac ? `${int}.${frac}` : int;
}
const space = () => (random() < 0.1 ? pick([' ', '\n', '\t', '\r\n  ']) : '');

/** A message as a producer might write it: field order, spacing, strings or numbers, envelopes, mistakes. */
function message(i: number): Buffer | null {
  if (random() < 0.01) return null;
  if (random() < 0.01) return Buffer.from(pick(['not json', '{', '[]', '"x"', '{}', 'null', '{"t":1}garbage']));
  const t = random() < 0.02 ? pick(['-1', '1.5', '8640000000000001', '1e12', '017', '"1700000000000"', '1700000000000.0']) : String(1_700_000_000_000 + Math.floor(i / 5) * 60_000);
  const T = random() < 0.02 ? '0' : String(Number(t) + 59_999 || 59_999);
  const s = random() < 0.02 ? pick(['"A B"', '"é"', '"\\u0041BC"', '""', `"${'A'.repeat(21)}"`, '5', '"-AB"']) : `"${pick(['BTCUSDT', 'ETH-USD', 'A.B_C', 'x1'])}"`;
  const amt = () => {
    const a = amount();
    return random() < 0.5 || !/^[0-9.]+$/.test(a) ? `"${a}"` : a;
  };
  let [h, l] = [amt(), amt()];
  // Mostly high >= low, as in real data (then both paths must agree on more than a refusal).
  if (random() < 0.9 && Number(h.replace(/"/g, '')) < Number(l.replace(/"/g, ''))) [h, l] = [l, h];
  const fields: Array<[string, string]> = [['t', t], ['T', T], ['s', s], ['o', amt()], ['h', h], ['l', l], ['c', amt()], ['v', amt()]];
  if (random() < 0.3) fields.sort(() => random() - 0.5);
  if (random() < 0.02) fields.push(pick([['x', '1'], ['t', '1'], ['seq', '9']]));
  if (random() < 0.01) fields.pop();
  let body = `${space()}{${fields.map(([k, v]) => `${space()}"${k}"${space()}:${space()}${v}${space()}`).join(',')}}${space()}`;
  if (random() < 0.03) body = `{"e":"kline","s":"BTCUSDT","k":${body}}`;
  return Buffer.from(body);
}

describe('Kafka messages packed straight from their bytes', () => {
  it('reads the message producers send, numbers as strings or as numbers, in any order and spacing', () => {
    const at = new Int32Array(16);
    const text = (m: Buffer) => KLINE_FIELDS.map((_, f) => m.toString('latin1', at[2 * f], at[2 * f + 1]));
    const m1 = Buffer.from(JSON.stringify({ t: 1_700_000_000_000, T: 1_700_000_059_999, s: 'SYM1', o: '100.1', h: '101.2', l: '99.3', c: '100.4', v: '12.5' }));
    expect(scanKline(m1, at)).toBe(true);
    expect(text(m1)).toEqual(['1700000000000', '1700000059999', 'SYM1', '100.1', '101.2', '99.3', '100.4', '12.5']);
    const m2 = Buffer.from(' {"v": 0, "c":0.000001,"l":"1","h":2,"o":123456789012345,"s":"A.B-C_D","T":5 ,"t":0}\n');
    expect(scanKline(m2, at)).toBe(true);
    expect(text(m2)).toEqual(['0', '5', 'A.B-C_D', '123456789012345', '2', '1', '0.000001', '0']);
    // Klines, but not in canonical form or not this shape: the slow path takes them.
    const good = { t: 1000, T: 1999, s: 'BTCUSDT', o: '1.5', h: 2, l: '1', c: 1.75, v: '0' };
    for (const over of [{ o: '1.50' }, { o: '1e3' }, { o: 1234567890123456 }, { o: '0.0000001' }, { t: 1000.5 }, { e: 'x' }, { h: '1.25', l: '1.3' }, { T: 999 }]) {
      expect({ over, scanned: scanKline(Buffer.from(JSON.stringify({ ...good, ...over })), at) }).toEqual({ over, scanned: false });
    }
    expect(scanKline(Buffer.from(JSON.stringify({ e: 'kline', k: good })), at)).toBe(false);
    expect(scanKline(Buffer.from(JSON.stringify(good)), at)).toBe(true);
  });

  it('high and low compare as decimals', () => {
    const at = new Int32Array(16);
    const ok = (h: string, l: string) => scanKline(Buffer.from(`{"t":1,"T":2,"s":"A","o":1,"h":"${h}","l":"${l}","c":1,"v":1}`), at);
    expect([ok('2', '10'), ok('10', '2'), ok('1.5', '1.25'), ok('1.25', '1.5'), ok('1', '1'), ok('1.5', '1'), ok('1', '1.5'), ok('0.1', '0.09'), ok('0.09', '0.1'), ok('100', '99.999')]).toEqual([
      false, true, true, false, true, true, false, true, false, true,
    ]);
  });

  it('gives exactly what parsing each message the slow way gives, with 1 or 3 lanes', () => {
    for (const lanes of [1, 3]) {
      const values = Array.from({ length: 20_000 }, (_, i) => message(i));
      const got = packMessages(values, lanes);
      const want = reference(values, lanes);
      expect(got.rejected).toEqual(want.rejected);
      expect([...got.lanes.keys()].sort()).toEqual([...want.lanes.keys()].sort());
      for (const [lane, jobs] of want.lanes) expect(got.lanes.get(lane)).toEqual(jobs);
      // The generator makes both kinds: most taken by the fast path, some by the slow one, some refused.
      const at = new Int32Array(16);
      const scanned = values.filter((v) => v !== null && scanKline(v, at)).length;
      expect(scanned).toBeGreaterThan(values.length * 0.3);
      expect(values.length - scanned - want.rejected.length).toBeGreaterThan(values.length * 0.05);
      expect(want.rejected.length).toBeGreaterThan(values.length * 0.02);
      for (const jobs of got.lanes.values()) {
        for (const job of jobs) expect(klinesIngestQueue.schema.safeParse({ source: 'kafka', ...job }).success).toBe(true);
      }
    }
  });

  it('splits a lane into jobs of at most 10,000 klines, in arrival order', () => {
    const values = Array.from({ length: 25_001 }, (_, i) => Buffer.from(JSON.stringify({ t: i, T: i, s: 'BTCUSDT', o: 1, h: 1, l: 1, c: 1, v: i })));
    const jobs = packMessages(values, 1).lanes.get(0)!;
    expect(jobs.map((j) => j.count)).toEqual([10_000, 10_000, 5_001]);
    expect(jobs.map((j) => j.packed.v.split(',')[0])).toEqual(['0', '10000', '20000']);
    expect(jobs[2]!.packed.t.split(',').at(-1)).toBe('25000');
  });
});
