import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compareRows, consistencyScore, dataHash, loadValidatorConfig, type Sides, type SideResult } from '../../actors/validator/index.js';
import { evaluateRules, loadMonitoringConfig, type Snapshot } from '../../actors/monitoring/index.js';
import type { SideWork } from '../../queues/validate.js';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

/** One side as a key → row-hash map, answering the side ops the way the SQL does. */
function fakeSide(rows: Map<bigint, string>, onLookup?: () => void) {
  const inRange = (w: SideWork) => [...rows.entries()].filter(([k]) => k >= BigInt(w.lo!) && k < BigInt(w.hi!));
  return async (w: SideWork): Promise<SideResult> => {
    switch (w.op) {
      case 'bounds': {
        const keys = [...rows.keys()].sort((a, b) => (a < b ? -1 : 1));
        return { bounds: { n: String(keys.length), min: keys[0]?.toString() ?? null, max: keys.at(-1)?.toString() ?? null } };
      }
      case 'checksum': {
        const buckets = new Map<string, { n: number; h: bigint }>();
        for (const [k, h] of inRange(w)) {
          const b = ((k - BigInt(w.lo!)) / BigInt(w.width!)).toString();
          const cur = buckets.get(b) ?? { n: 0, h: 0n };
          buckets.set(b, { n: cur.n + 1, h: cur.h ^ BigInt(`0x${h.slice(0, 16)}`) });
        }
        return { buckets: [...buckets].map(([b, v]) => ({ b, n: String(v.n), h: v.h.toString() })) };
      }
      case 'rows': {
        // With `buckets`: only the listed sub-segments (numbered by width from lo), as the SQL does.
        const picked = w.buckets ? new Set(w.buckets) : undefined;
        const rowsOf = inRange(w).filter(([k]) => !picked || picked.has(((k - BigInt(w.lo!)) / BigInt(w.width!)).toString()));
        return { rows: rowsOf.map(([k, h]) => [k.toString(), h]) };
      }
      case 'lookup':
        onLookup?.();
        return { rows: w.keys!.flatMap((k) => (rows.has(BigInt(k)) ? [[k, rows.get(BigInt(k))!] as [string, string]] : [])) };
      default:
        throw new Error(`not faked: ${w.op}`);
    }
  };
}

const table = (n: number) => new Map(Array.from({ length: n }, (_, i) => [BigInt(i + 1), md5(`row ${i + 1}`)]));
const columns = [{ name: 'id', pgType: 'bigint', isKey: true }];

describe('validator: bisection', () => {
  it('finds changed, missing and extra keys by bisecting, downloading only small segments', async () => {
    const source = table(100_000);
    const copy = new Map(source);
    copy.set(777n, md5('other'));
    copy.delete(50_000n);
    copy.set(250_000n, md5('stray'));
    const sides: Sides = { pg: fakeSide(source), duck: fakeSide(copy) };
    const out = await dataHash(sides, 'public.t', columns, { factor: 32, threshold: 64, recheckDelayMs: 0 });
    // Big segments cut into several checksum jobs find the same keys.
    const split = await dataHash(sides, 'public.t', columns, { factor: 32, threshold: 64, recheckDelayMs: 0, maxRowsPerJob: 7_000 });
    expect(split.diffs).toEqual(out.diffs);
    expect(out.diffs).toEqual([
      { key: '777', kind: 'changed' },
      { key: '50000', kind: 'missing_in_copy' },
      { key: '250000', kind: 'extra_in_copy' },
    ]);
    expect(out.rowsDownloaded).toBeLessThan(1000);
    expect(out.levels).toBeLessThanOrEqual(3);
  });

  it('bisects further where a sub-segment is still big (sparse keys)', async () => {
    const source = new Map<bigint, string>();
    for (let i = 1n; i <= 1000n; i++) {
      source.set(i, md5(`a${i}`));
      source.set(1_000_000_000n + i, md5(`b${i}`));
    }
    const copy = new Map(source);
    copy.set(500n, md5('x'));
    const out = await dataHash({ pg: fakeSide(source), duck: fakeSide(copy) }, 'public.t', columns, { factor: 32, threshold: 64, recheckDelayMs: 0 });
    expect(out.diffs).toEqual([{ key: '500', kind: 'changed' }]);
    expect(out.levels).toBeGreaterThanOrEqual(3);
    expect(out.rowsDownloaded).toBeLessThanOrEqual(128);
  });

  it('identical sides: one checksum level, nothing downloaded', async () => {
    const source = table(10_000);
    const out = await dataHash({ pg: fakeSide(source), duck: fakeSide(new Map(source)) }, 'public.t', columns, { factor: 32, threshold: 64, recheckDelayMs: 0 });
    expect(out).toMatchObject({ diffs: [], rowsDownloaded: 0, levels: 1, segmentsChecked: 1 });
  });

  it('a difference that settles before the recheck (in flight through CDC) is not reported', async () => {
    const source = table(5_000);
    const copy = new Map(source);
    copy.set(10n, md5('stale'));
    copy.set(20n, md5('really different'));
    // CDC applies key 10 while the validator waits to recheck.
    const sides: Sides = { pg: fakeSide(source), duck: fakeSide(copy, () => copy.set(10n, source.get(10n)!)) };
    const out = await dataHash(sides, 'public.t', columns, { factor: 32, threshold: 64, recheckDelayMs: 10 });
    expect(out.diffs).toEqual([{ key: '20', kind: 'changed' }]);
    expect(out.settledOnRecheck).toBe(1);
  });

  it('compareRows names each kind', () => {
    expect(compareRows([['1', 'a'], ['2', 'b']], [['2', 'c'], ['3', 'd']])).toEqual([
      { key: '1', kind: 'missing_in_copy' },
      { key: '2', kind: 'changed' },
      { key: '3', kind: 'extra_in_copy' },
    ]);
  });
});

describe('validator: score and configuration', () => {
  it('the score weighs passed checks, ignores skipped ones and counts errors as not passed', () => {
    expect(consistencyScore([{ status: 'passed', weight: 1 }, { status: 'failed', weight: 3 }, { status: 'skipped', weight: 2 }])).toBe(25);
    expect(consistencyScore([{ status: 'passed', weight: 3 }, { status: 'error', weight: 1 }])).toBe(75);
    expect(consistencyScore([{ status: 'skipped', weight: 2 }])).toBeNull();
  });

  it('business rules are validated strictly, naming the variable and the problem', () => {
    const base = { DATABASE_URL: 'postgres://x/y', VALIDATOR_TABLES: 'orders' };
    const ok = loadValidatorConfig({ ...base, VALIDATOR_BUSINESS_RULES: JSON.stringify({ orders: [{ name: 'positive', predicate: 'total > 0' }, { name: 'sum', aggregate: 'sum(total)', tolerance: 0.01 }] }) });
    expect(ok.rules['public.orders']).toEqual([
      { name: 'positive', predicate: 'total > 0', aggregate: undefined, tolerance: 0 },
      { name: 'sum', predicate: undefined, aggregate: 'sum(total)', tolerance: 0.01 },
    ]);
    const bad = (rules: unknown) => () => loadValidatorConfig({ ...base, VALIDATOR_BUSINESS_RULES: typeof rules === 'string' ? rules : JSON.stringify(rules) });
    expect(bad('{nope')).toThrow(/VALIDATOR_BUSINESS_RULES/);
    expect(bad({ orders: [{ name: 'x', predicate: 'a > 0; DROP TABLE orders' }] })).toThrow(/no ";"/);
    expect(bad({ orders: [{ name: 'x', predicate: 'a > 0', aggregate: 'sum(a)' }] })).toThrow(/exactly one of predicate or aggregate/);
    expect(bad({ users: [{ name: 'x', predicate: 'a > 0' }] })).toThrow(/not one of the checked tables/);
    expect(bad({ orders: [{ name: 'x', predicate: 'a > 0', extra: 1 }] })).toThrow(/VALIDATOR_BUSINESS_RULES/);
    expect(() => loadValidatorConfig({ ...base, VALIDATOR_SCHEDULED_CHECK_TYPES: 'row_count,vibes' })).toThrow(/vibes/);
  });
});

describe('monitoring: alert rules', () => {
  const snapshot = (over: { lag?: number; dlq?: number; scores?: Array<[string, number | null]> }): Snapshot => ({
    at: new Date().toISOString(),
    sync: { lagSeconds: over.lag ?? 0, successRate: 1, operationsLastHour: { applied: 1, failed: 0, skipped: 0, pending: 0 } },
    queues: [],
    dlqTotal: over.dlq ?? 0,
    consistency: { score: null, tables: (over.scores ?? []).map(([table, score]) => ({ table, score, checkedAt: null })), validatorSeconds: null },
    errors: [],
  });
  const config = loadMonitoringConfig({ DATABASE_URL: 'postgres://x/y' });

  it('defaults are the seed\'s: 15 minutes of lag, score 90.0, 100 DLQ entries', () => {
    expect(config).toMatchObject({ syncLagThresholdMinutes: 15, scoreThreshold: 90, dlqThreshold: 100, webhookUrl: undefined });
    expect(() => loadMonitoringConfig({ DATABASE_URL: 'postgres://x/y', CONSISTENCY_SCORE_ALERT_THRESHOLD: '120' })).toThrow(/CONSISTENCY_SCORE_ALERT_THRESHOLD/);
    expect(() => loadMonitoringConfig({ DATABASE_URL: 'postgres://x/y', ALERT_WEBHOOK_URL: 'ftp://x' })).toThrow(/ALERT_WEBHOOK_URL/);
  });

  it('each rule fires past its threshold only; unchecked tables are left alone', () => {
    const firing = (s: Snapshot) => evaluateRules(s, config).filter((c) => c.firing).map((c) => `${c.rule}:${c.subject}`);
    expect(firing(snapshot({ lag: 15 * 60, dlq: 100, scores: [['public.a', 90], ['public.b', null]] }))).toEqual([]);
    expect(firing(snapshot({ lag: 15 * 60 + 1, dlq: 101, scores: [['public.a', 89.99], ['public.b', null]] }))).toEqual(['sync_lag:global', 'dead_letter_queue:global', 'consistency_score:public.a']);
    expect(evaluateRules(snapshot({ scores: [['public.b', null]] }), config).map((c) => c.subject)).not.toContain('public.b');
  });
});
