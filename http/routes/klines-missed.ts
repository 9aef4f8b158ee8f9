import type pg from 'pg';
import { classifyHoles, MAX_RANGES, type Range } from './klines-read.js';
import type { StreamMode } from '../../queues/index.js';

export interface MissedQuery {
  symbol: string;
  fromSeq: number;
  toSeq: number;
  limit: number;
}

/**
 * The page's rows, limit + 1 of them to tell `hasMore`: an index range scan on
 * (symbol, sequence) (`sequence > $2` implies the index's `sequence IS NOT NULL`). The
 * stream's last stamped number rides along as an InitPlan (computed once, a few bytes a row),
 * so the common page takes one round trip; the skips are read only when the page has holes.
 * Times come as epoch-ms text, computed exactly as before (numeric, not float).
 */
const ROWS_SQL = `
SELECT k.sequence, (extract(epoch FROM k.time) * 1000)::bigint AS t, (extract(epoch FROM k.close_time) * 1000)::bigint AS ct,
       k.open, k.high, k.low, k.close, k.volume,
       CASE WHEN $5 THEN (SELECT last_assigned FROM sequence_tracker WHERE stream = $1) END AS assigned
  FROM market_klines k WHERE k.symbol = $1 AND k.sequence > $2 AND k.sequence <= $3
 ORDER BY k.sequence LIMIT $4::int + 1`;

/** Every value as PostgreSQL's text: numbers are pasted into the JSON, never parsed. */
const RAW_TEXT = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/**
 * A float8's text as a JSON number. float8 output is the shortest exact form, so the client
 * reads the same number it did when rows were parsed and re-serialised; NULL, NaN and
 * ±Infinity (only writers outside the ingest path can store them) become null, as
 * JSON.stringify made them.
 */
const num = (v: string | null) => (v === null || v === 'NaN' || v === 'Infinity' || v === '-Infinity' ? 'null' : v);

type Row = [seq: string, t: string, ct: string | null, o: string | null, h: string | null, l: string | null, c: string | null, v: string | null, assigned: string | null];

/**
 * The missed-data response as JSON text, ordered by sequence: `fromSeq` exclusive, `toSeq`
 * inclusive, `limit` rows per page with `hasMore`. The same body as JSON.stringify of
 * `{symbol, fromSeq, toSeq, count, data: [{seq, symbol, timestamp, kline: {t, T, s, o, h, l, c, v}}], hasMore}`
 * plus, in per-symbol mode, which numbers of the page's span have no kline, told apart as
 * `skipped` or `missing`. Written from the rows' text (rowMode array, no type parsing): no
 * 1,000 row objects, no 9,000 parsed values, no JSON.stringify of the page; that work and its
 * garbage were most of the request's CPU.
 */
export async function missedKlinesJson(db: pg.Pool, mode: StreamMode, q: MissedQuery): Promise<string> {
  const perSymbol = mode === 'symbol';
  const { rows } = await db.query<Row>({
    name: 'concord-klines-missed-rows',
    text: ROWS_SQL,
    values: [q.symbol, q.fromSeq, q.toSeq, q.limit, perSymbol],
    rowMode: 'array',
    types: RAW_TEXT,
  });
  const hasMore = rows.length > q.limit;
  const count = hasMore ? q.limit : rows.length;
  // Every row's symbol is the one asked for (symbol = $1): its JSON is written once.
  const sym = JSON.stringify(q.symbol);
  const items: string[] = new Array<string>(count);
  const present: number[] = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const [seq, t, ct, o, h, l, c, v] = rows[i]!;
    present[i] = Number(seq);
    items[i] = `{"seq":${seq},"symbol":${sym},"timestamp":${t},"kline":{"t":${t},"T":${ct ?? 'null'},"s":${sym},"o":${num(o)},"h":${num(h)},"l":${num(l)},"c":${num(c)},"v":${num(v)}}}`;
  }
  const head = `{"symbol":${sym},"fromSeq":${q.fromSeq},"toSeq":${q.toSeq},"count":${count},"data":[${items.join(',')}],"hasMore":${hasMore}`;
  if (!perSymbol) return `${head}}`;
  // The span this page speaks for: up to its last row when more follow, else up to toSeq
  // but not past the last number stamped (later numbers are not issued yet).
  const assigned = rows.length > 0 ? rows[0]![8] : await lastAssigned(db, q.symbol);
  const upTo = hasMore ? present[count - 1]! : Math.min(q.toSeq, Number(assigned ?? 0));
  let ranges = classifyHoles(q.fromSeq, upTo, present, []);
  if (ranges.missing.length > 0) ranges = classifyHoles(q.fromSeq, upTo, present, await skipsOf(db, q));
  return `${head},"skipped":${JSON.stringify(ranges.skipped.slice(0, MAX_RANGES))},"missing":${JSON.stringify(ranges.missing.slice(0, MAX_RANGES))}}`;
}

async function lastAssigned(db: pg.Pool, stream: string): Promise<string | null> {
  const { rows } = await db.query<{ last_assigned: string }>(`SELECT last_assigned FROM sequence_tracker WHERE stream = $1`, [stream]);
  return rows[0]?.last_assigned ?? null;
}

/** The recorded skips of the stream that touch (fromSeq, toSeq], by `from`. */
async function skipsOf(db: pg.Pool, q: MissedQuery): Promise<Range[]> {
  const { rows } = await db.query<{ f: string; t: string }>(
    `SELECT from_seq AS f, to_seq AS t FROM sequence_skips WHERE stream = $1 AND to_seq > $2 AND from_seq <= $3 ORDER BY from_seq`,
    [q.symbol, q.fromSeq, q.toSeq],
  );
  return rows.map((r) => ({ from: Number(r.f), to: Number(r.t) }));
}
