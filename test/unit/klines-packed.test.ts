import { describe, expect, it } from 'vitest';
import { klinesIngestQueue, type Kline } from '../../queues/index.js';
import { MAX_KLINES_PER_JOB, packKlines, parseKline, type KLINE_FIELDS } from '../../queues/klines.js';
import { zodIssues } from '../../runtime/validation.js';

const k = (i: number, over: Partial<Kline> = {}): Kline => ({ t: 1_700_000_000_000 + i * 60_000, T: 1_700_000_059_999 + i * 60_000, s: `SYM${i % 7}`, o: 100.1, h: 101.25, l: 99, c: 100, v: i, ...over });
const check = (data: unknown) => {
  const r = klinesIngestQueue.schema.safeParse(data);
  return r.success ? 'ok' : zodIssues(r.error).map((i) => `${i.field}: ${i.reason}`);
};

describe('klines packed by field (the klines.ingest job format)', () => {
  it('packs each field as the canonical text of its values, in order', () => {
    const packed = packKlines([k(0), k(1, { s: 'ETH-USD.P', o: 1e21, l: 1e-7, h: 5e-324, c: 0.30000000000000004, v: 0 })]);
    expect(packed).toEqual({
      t: '1700000000000,1700000060000',
      T: '1700000059999,1700000119999',
      s: 'SYM0,ETH-USD.P',
      o: '100.1,1e+21',
      h: '101.25,5e-324',
      l: '99,1e-7',
      c: '100,0.30000000000000004',
      v: '0,0',
    });
    expect(check({ source: 'kafka', count: 2, packed })).toBe('ok');
  });

  it('accepts what packKlines writes for every kline the kline schema accepts', () => {
    // Values at the edges of String()'s output: exponents both ways, 17 digits, zero, the largest time.
    const amounts = [0, 1, 0.1, 1e-6, 1e-7, 123456789012345680000, 1e21, 1.7976931348623157e308, 5e-324, 0.1 + 0.2, 2 ** 53 + 2];
    const klines = amounts.map((a, i) => parseKline({ ...k(i), o: a, h: a, l: a, c: a, v: a })).map((r) => r.data!);
    klines.push(parseKline({ ...k(0), t: 8.64e15, T: 8.64e15 }).data!, parseKline({ ...k(0), t: 0, T: 0, o: '7.50' }).data!);
    expect(klines.every(Boolean)).toBe(true);
    expect(check({ source: 'http', count: klines.length, packed: packKlines(klines) })).toBe('ok');
  });

  it('holds a full job of 10,000 klines', () => {
    const klines = Array.from({ length: MAX_KLINES_PER_JOB }, (_, i) => k(i, { o: i / 7, v: i * 1e-9 }));
    expect(check({ source: 'kafka', count: klines.length, packed: packKlines(klines) })).toBe('ok');
    expect(check({ source: 'kafka', count: klines.length + 1, packed: packKlines([...klines, k(0)]) })).toEqual([
      expect.stringMatching(/^count: /),
    ]);
  });

  it('refuses text that would break out of an array literal or the pub/sub JSON, naming the field', () => {
    const good = packKlines([k(0), k(1)]);
    const bad = (field: (typeof KLINE_FIELDS)[number], text: string) => check({ source: 'kafka', count: 2, packed: { ...good, [field]: text } });
    const cases: Array<[(typeof KLINE_FIELDS)[number], string]> = [
      ['o', '1,2}'],
      ['o', '1,"2"'],
      ['o', '1, 2'],
      ['o', '1,'],
      ['o', ',1'],
      ['o', '1,-2'],
      ['o', '1,NaN'],
      ['o', '1,Infinity'],
      ['o', '1,01'],
      ['o', '1,.5'],
      ['o', '1,1.'],
      ['o', '1,0x10'],
      ['o', '1,1e'],
      ['h', '1,1\n'],
      ['t', '1700000000000,1.5'],
      ['t', '1700000000000,17000000000000000'],
      ['t', '1700000000000,-1'],
      ['T', '1,1e3'],
      ['s', 'BTCUSDT,A B'],
      ['s', 'BTCUSDT,A"B'],
      ['s', 'BTCUSDT,A\\B'],
      ['s', 'BTCUSDT,'],
      ['s', 'BTCUSDT,-AB'],
      ['s', `BTCUSDT,${'A'.repeat(21)}`],
    ];
    for (const [field, text] of cases) expect({ text, issues: bad(field, text) }).toEqual({ text, issues: [expect.stringMatching(new RegExp(`^packed\\.${field}: `))] });
    // A value too many or too few in one field: the count says so.
    expect(check({ source: 'kafka', count: 2, packed: { ...good, v: '1,2,3' } })).toEqual(['packed.v: 3 values; count says 2']);
    expect(check({ source: 'kafka', count: 2, packed: { ...good, c: '1' } })).toEqual(['packed.c: 1 values; count says 2']);
    expect(check({ source: 'kafka', count: 0, packed: good })).toEqual([expect.stringMatching(/^count: /), 'packed.t: 2 values; count says 0', ...['T', 's', 'o', 'h', 'l', 'c', 'v'].map((f) => `packed.${f}: 2 values; count says 0`)]);
    const { h: _h, ...noHigh } = good;
    expect(check({ source: 'kafka', count: 2, packed: noHigh })).toEqual([expect.stringMatching(/^packed\.h: /)]);
    expect(check({ source: 'queue', count: 2, packed: good })).toEqual([expect.stringMatching(/^source: /)]);
  });

  it('still accepts the first format (kline objects), which older producers may have queued', () => {
    expect(check({ source: 'http', klines: [k(0), k(1)] })).toBe('ok');
    expect(check({ source: 'http', klines: [k(0), { ...k(1), o: 'x' }] })).toEqual([expect.stringMatching(/^klines\.1\.o: /)]);
    expect(check({ source: 'http' })).toEqual([expect.stringMatching(/^klines: /)]);
  });
});
