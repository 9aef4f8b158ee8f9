import type pg from 'pg';
import { GLOBAL_STREAM, type StreamMode } from '../../queues/index.js';

export interface Range {
  from: number;
  to: number;
}

/** Ranges reported at most, per list; `truncated` says when there were more. */
export const MAX_RANGES = 1000;

/**
 * Splits the numbers of (after, upTo] that have no stored kline into `skipped` (reserved
 * but never stamped: recorded in sequence_skips) and `missing` (stamped, not found: data
 * deleted or never stored). `present` is sorted; `skips` are sorted by `from`.
 */
export function classifyHoles(after: number, upTo: number, present: readonly number[], skips: readonly Range[]): { skipped: Range[]; missing: Range[] } {
  const holes: Range[] = [];
  let prev = after;
  for (const seq of present) {
    if (seq <= prev) continue;
    if (seq > upTo) break;
    if (seq > prev + 1) holes.push({ from: prev + 1, to: seq - 1 });
    prev = seq;
  }
  if (upTo > prev) holes.push({ from: prev + 1, to: upTo });
  return splitBySkips(holes, skips);
}

/** Each hole's parts covered by a skip are `skipped`, the rest `missing`. */
export function splitBySkips(holes: readonly Range[], skips: readonly Range[]): { skipped: Range[]; missing: Range[] } {
  const skipped: Range[] = [];
  const missing: Range[] = [];
  let s = 0;
  for (const hole of holes) {
    let cursor = hole.from;
    while (s < skips.length && skips[s]!.to < cursor) s++;
    for (let i = s; i < skips.length && skips[i]!.from <= hole.to && cursor <= hole.to; i++) {
      const sk = skips[i]!;
      if (sk.to < cursor) continue;
      if (sk.from > cursor) missing.push({ from: cursor, to: sk.from - 1 });
      const end = Math.min(sk.to, hole.to);
      skipped.push({ from: Math.max(sk.from, cursor), to: end });
      cursor = end + 1;
    }
    if (cursor <= hole.to) missing.push({ from: cursor, to: hole.to });
  }
  return { skipped, missing };
}

const count = (ranges: readonly Range[]) => ranges.reduce((n, r) => n + r.to - r.from + 1, 0);

/**
 * Per symbol: records, with and without a sequence, min/max sequence; and per stream the
 * numbers between the first stored one and the last stamped one that have no kline, as
 * `skipped` (never stamped) and `missing` ranges.
 */
export async function gapReport(db: pg.Pool, mode: StreamMode, symbol: string | undefined) {
  const summary = await db.query<{ symbol: string; records: string; with_sequence: string; min: string | null; max: string | null }>(
    `SELECT symbol, count(*) AS records, count(sequence) AS with_sequence, min(sequence)::text AS min, max(sequence)::text AS max
       FROM market_klines WHERE ($1::text IS NULL OR symbol = $1) GROUP BY symbol ORDER BY symbol`,
    [symbol ?? null],
  );
  const partition = mode === 'symbol' ? 'symbol' : `'${GLOBAL_STREAM}'::text`;
  const [holes, trackers, skips] = await Promise.all([
    db.query<{ stream: string; f: string; t: string }>(
      `SELECT stream, prev + 1 AS f, sequence - 1 AS t FROM (
         SELECT ${partition} AS stream, sequence, lag(sequence) OVER (PARTITION BY ${partition} ORDER BY sequence) AS prev
           FROM market_klines WHERE sequence IS NOT NULL AND ($1::text IS NULL OR symbol = $1 OR $2)) s
        WHERE sequence > prev + 1 ORDER BY stream, f LIMIT $3`,
      [symbol ?? null, mode === 'global', MAX_RANGES * 100],
    ),
    db.query<{ stream: string; last_assigned: string }>(`SELECT stream, last_assigned FROM sequence_tracker`),
    db.query<{ stream: string; f: string; t: string }>(`SELECT stream, from_seq AS f, to_seq AS t FROM sequence_skips ORDER BY stream, from_seq`),
  ]);
  const group = <R extends { stream: string; f: string; t: string }>(rows: R[]) => {
    const by = new Map<string, Range[]>();
    for (const r of rows) {
      let list = by.get(r.stream);
      if (!list) by.set(r.stream, (list = []));
      list.push({ from: Number(r.f), to: Number(r.t) });
    }
    return by;
  };
  const holesBy = group(holes.rows);
  const skipsBy = group(skips.rows);
  const assigned = new Map(trackers.rows.map((r) => [r.stream, Number(r.last_assigned)]));
  const rangesOf = (stream: string, max: number | null) => {
    const list = [...(holesBy.get(stream) ?? [])];
    // Numbers stamped after the last stored kline have no row either.
    const last = assigned.get(stream) ?? 0;
    if (max !== null && last > max) list.push({ from: max + 1, to: last });
    const { skipped, missing } = splitBySkips(list, skipsBy.get(stream) ?? []);
    return {
      missingCount: count(missing),
      skippedCount: count(skipped),
      missing: missing.slice(0, MAX_RANGES),
      skipped: skipped.slice(0, MAX_RANGES),
      truncated: missing.length > MAX_RANGES || skipped.length > MAX_RANGES || holes.rows.length >= MAX_RANGES * 100,
    };
  };
  const symbols = summary.rows.map((r) => {
    const min = r.min === null ? null : Number(r.min);
    const max = r.max === null ? null : Number(r.max);
    const base = { symbol: r.symbol, records: Number(r.records), withSequence: Number(r.with_sequence), withoutSequence: Number(r.records) - Number(r.with_sequence), minSeq: min, maxSeq: max };
    return mode === 'symbol' && max !== null ? { ...base, ...rangesOf(r.symbol, max) } : base;
  });
  if (mode === 'symbol') return { mode, symbols };
  const mins = summary.rows.filter((r) => r.min !== null);
  const gmin = mins.length ? Math.min(...mins.map((r) => Number(r.min))) : null;
  const gmax = mins.length ? Math.max(...mins.map((r) => Number(r.max))) : null;
  return { mode, symbols, global: { stream: GLOBAL_STREAM, minSeq: gmin, maxSeq: gmax, ...(gmax === null ? {} : rangesOf(GLOBAL_STREAM, gmax)) } };
}
