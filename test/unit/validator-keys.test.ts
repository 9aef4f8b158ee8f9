import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { dataHash, type SideResult, type Sides } from '../../actors/validator/index.js';
import { KH_SPACE, keyFromCanonical, keyUnsupported, parseKey, repairKeys, sortKeys } from '../../actors/validator/key-hash.js';
import type { SideColumn, SideWork } from '../../queues/validate.js';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');
const col = (name: string, pgType: string, isKey = true): SideColumn => ({ name, pgType, isKey });

describe('validator keys: PostgreSQL text from canonical text', () => {
  it('timestamps (µs since the epoch) in PostgreSQL ISO text, UTC for time zones, fractional zeros trimmed, BC', () => {
    const ts = col('at', 'timestamp(3) without time zone');
    const tz = col('at', 'timestamp with time zone');
    expect(keyFromCanonical(ts, '0')).toBe('1970-01-01 00:00:00');
    expect(keyFromCanonical(ts, '1704067205500000')).toBe('2024-01-01 00:00:05.5');
    expect(keyFromCanonical(tz, '1704067205000001')).toBe('2024-01-01 00:00:05.000001+00');
    expect(keyFromCanonical(ts, '-1')).toBe('1969-12-31 23:59:59.999999');
    expect(keyFromCanonical(ts, '951782400000000')).toBe('2000-02-29 00:00:00');
    // There is no year 0: the day before 0001-01-01 is 0001-12-31 BC.
    expect(keyFromCanonical(ts, '-62135596800000000')).toBe('0001-01-01 00:00:00');
    expect(keyFromCanonical(ts, String(-62_135_596_800_000_000n - 86_400_000_000n + 36_000_000_000n))).toBe('0001-12-31 10:00:00 BC');
    expect(keyFromCanonical(tz, 'infinity')).toBe('infinity');
  });

  it('dates (days), bytea, char(n) padded as PostgreSQL prints it, text without its length prefix, others as is', () => {
    expect(keyFromCanonical(col('d', 'date'), '19723')).toBe('2024-01-01');
    expect(keyFromCanonical(col('d', 'date'), '-719528')).toBe('0001-01-01 BC');
    expect(keyFromCanonical(col('d', 'date'), '-infinity')).toBe('-infinity');
    expect(keyFromCanonical(col('b', 'bytea'), '00ff')).toBe('\\x00ff');
    expect(keyFromCanonical(col('c', 'character(5)'), 'ab')).toBe('ab   ');
    expect(keyFromCanonical(col('c', 'character(3)'), 'éé')).toBe('éé ');
    expect(keyFromCanonical(col('c', 'character'), '')).toBe(' ');
    expect(keyFromCanonical(col('t', 'text'), '0:')).toBe('');
    expect(keyFromCanonical(col('t', 'character varying(20)'), '5:a:b:c')).toBe('a:b:c');
    expect(keyFromCanonical(col('u', 'uuid'), '36:0b6e2c9a-7a8e-4d43-9a53-2d1f8d1c2b3a')).toBe('0b6e2c9a-7a8e-4d43-9a53-2d1f8d1c2b3a');
    expect(keyFromCanonical(col('n', 'numeric(10,2)'), '1.5')).toBe('1.5');
    expect(keyFromCanonical(col('i', 'integer'), '-7')).toBe('-7');
  });

  it('composite keys parse from JSON arrays of strings or safe integers, with the reason when malformed', () => {
    const keys = [col('a', 'integer'), col('b', 'text')];
    expect(parseKey(keys, '["1","x"]')).toEqual(['1', 'x']);
    expect(parseKey(keys, '[1,"x"]')).toEqual(['1', 'x']);
    expect(parseKey([col('id', 'uuid')], '[1,"x"]')).toEqual(['[1,"x"]']);
    expect(() => parseKey(keys, '["1"]')).toThrow(/JSON array of 2 values \(a, b\)/);
    expect(() => parseKey(keys, 'nope')).toThrow(/JSON array/);
    expect(() => parseKey(keys, '[null,"x"]')).toThrow(/element 0 \(a\) must be a string/);
    expect(() => parseKey(keys, '[12345678901234567890,"x"]')).toThrow(/as strings/);
    expect(repairKeys([...keys, col('v', 'text', false)], ['["1","x"]'])).toEqual([['1', 'x']]);
    expect(repairKeys([col('id', 'uuid')], ['["1","x"]'])).toEqual(['["1","x"]']);
  });

  it('float and array keys are refused with the reason; other keys, composite ones included, are supported', () => {
    expect(keyUnsupported([col('x', 'double precision'), col('v', 'text', false)])).toMatch(/x \(double precision\)/);
    expect(keyUnsupported([col('x', 'integer[]')])).toMatch(/array/);
    expect(keyUnsupported([col('v', 'text', false)])).toMatch(/needs a primary key/);
    expect(keyUnsupported([col('a', 'integer'), col('b', 'uuid'), col('c', 'date')])).toBeUndefined();
  });

  it('reported keys sort deterministically: integers by value, composite keys column by column', () => {
    const of = (...keys: string[]) => keys.map((key) => ({ key }));
    expect(sortKeys([col('id', 'bigint')], of('10', '9', '-1')).map((k) => k.key)).toEqual(['-1', '9', '10']);
    expect(sortKeys([col('id', 'text')], of('b', 'B', 'a', '')).map((k) => k.key)).toEqual(['', 'B', 'a', 'b']);
    expect(sortKeys([col('a', 'integer'), col('b', 'text')], of('["10","a"]', '["9","b"]', '["9","a"]', '["-2","z"]')).map((k) => k.key)).toEqual(['["-2","z"]', '["9","a"]', '["9","b"]', '["10","a"]']);
  });
});

/** kh as the SQL computes it: low 62 bits of md5(canonical key) bytes 8..15 read little-endian. */
const kh = (canonicalKey: string) => createHash('md5').update(canonicalKey).digest().readBigUInt64LE(8) & (KH_SPACE - 1n);

/** One side of a uuid-keyed table, answering the side ops in hash space as runHashed does. */
function hashedSide(rows: Map<string, string>, calls: SideWork[]) {
  const all = () => [...rows].map(([key, h]) => ({ key, h, kh: kh(`${key.length}:${key}`) }));
  const inRange = (w: SideWork) =>
    all().filter((r) => r.kh >= BigInt(w.lo!) && r.kh < BigInt(w.hi!) && (!w.buckets || w.buckets.includes(((r.kh - BigInt(w.lo!)) / BigInt(w.width!)).toString())));
  return async (w: SideWork): Promise<SideResult> => {
    calls.push(w);
    switch (w.op) {
      case 'bounds':
        return { bounds: { n: String(rows.size), min: rows.size ? '0' : null, max: rows.size ? (KH_SPACE - 1n).toString() : null } };
      case 'checksum': {
        const buckets = new Map<string, { n: number; h: bigint }>();
        for (const r of inRange(w)) {
          const b = ((r.kh - BigInt(w.lo!)) / BigInt(w.width!)).toString();
          const cur = buckets.get(b) ?? { n: 0, h: 0n };
          buckets.set(b, { n: cur.n + 1, h: cur.h ^ BigInt(`0x${r.h.slice(0, 16)}`) });
        }
        return { buckets: [...buckets].map(([b, v]) => ({ b, n: String(v.n), h: v.h.toString() })) };
      }
      case 'rows':
        return { rows: inRange(w).map((r) => [r.key, r.h]) };
      case 'lookup':
        return { rows: w.keyTuples!.flatMap(([k]) => (rows.has(k!) ? [[k!, rows.get(k!)!] as [string, string]] : [])) };
      default:
        throw new Error(`not faked: ${w.op}`);
    }
  };
}

describe('validator keys: bisection in hash space', () => {
  it('finds scattered differences of a uuid-keyed table with one checksum scan and one batched download per side', async () => {
    const uuid = (i: number) => md5(`u${i}`).replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
    const source = new Map(Array.from({ length: 50_000 }, (_, i) => [uuid(i), md5(`row ${i}`)]));
    const copy = new Map(source);
    const changed = Array.from({ length: 40 }, (_, i) => uuid(i * 1000 + 7));
    for (const k of changed) copy.set(k, md5('other'));
    copy.delete(uuid(123));
    copy.set(uuid(999_999), md5('stray'));
    const calls: SideWork[] = [];
    const out = await dataHash({ pg: hashedSide(source, calls), duck: hashedSide(copy, calls) } satisfies Sides, 'public.t', [col('id', 'uuid'), col('v', 'text', false)], { factor: 32, threshold: 64, recheckDelayMs: 0 });
    const expected = [...changed.map((key) => ({ key, kind: 'changed' })), { key: uuid(123), kind: 'missing_in_copy' }, { key: uuid(999_999), kind: 'extra_in_copy' }];
    expect(out.diffs).toEqual(expected.sort((a, b) => (a.key < b.key ? -1 : 1)));
    const ops = (op: string) => calls.filter((c) => c.op === op).length;
    expect([ops('checksum'), ops('rows'), ops('lookup')]).toEqual([2, 2, 2]); // per side: one each
    expect(calls.find((c) => c.op === 'rows')!.buckets!.length).toBeLessThanOrEqual(42); // two differences may share a sub-segment
    expect(calls.find((c) => c.op === 'lookup')!.keyTuples).toHaveLength(42);
    expect(out.rowsDownloaded).toBeLessThan(42 * 64 * 2 + 84 * 2);
    expect(out.levels).toBe(1);
  });
});
