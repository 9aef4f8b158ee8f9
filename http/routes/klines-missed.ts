import pg from 'pg';
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

/** Grows by doubling; holds the page's items as latin1 bytes (the text is ASCII: see the route). */
class ItemBuffer {
  private buf = Buffer.allocUnsafe(256 * 1024);
  length = 0;

  add(text: string): void {
    const need = this.length + text.length + 1;
    if (need > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, 2 * this.buf.length));
      this.buf.copy(bigger, 0, 0, this.length);
      this.buf = bigger;
    }
    if (this.length > 0) this.buf[this.length++] = 0x2c; // ','
    this.length += this.buf.write(text, this.length, 'latin1');
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

/**
 * The missed-data response as JSON bytes, ordered by sequence: `fromSeq` exclusive, `toSeq`
 * inclusive, `limit` rows per page with `hasMore`. The same body as JSON.stringify of
 * `{symbol, fromSeq, toSeq, count, data: [{seq, symbol, timestamp, kline: {t, T, s, o, h, l, c, v}}], hasMore}`
 * plus, in per-symbol mode, which numbers of the page's span have no kline, told apart as
 * `skipped` or `missing`. Written from the rows' text (rowMode array, no type parsing): no
 * 1,000 row objects, no 9,000 parsed values, no JSON.stringify of the page. Each row is written
 * as it arrives and not kept (node-postgres accumulates no rows when the query has a `row`
 * listener): the young-generation collections that land in a request then find one row's
 * strings alive, not the page's 9,000, and those pauses were the tail of the latency.
 */
export async function missedKlinesJson(db: pg.Pool, mode: StreamMode, q: MissedQuery): Promise<Buffer> {
  const perSymbol = mode === 'symbol';
  // Every row's symbol is the one asked for (symbol = $1): its JSON is written once.
  const sym = JSON.stringify(q.symbol);
  const items = new ItemBuffer();
  const present: number[] = [];
  let rows = 0;
  let assigned: string | null = null;
  const client = await db.connect();
  let failed: Error | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      // rowMode is a Query option @types/pg leaves out of QueryConfig.
      const config = { name: 'concord-klines-missed-rows', text: ROWS_SQL, values: [q.symbol, q.fromSeq, q.toSeq, q.limit, perSymbol], rowMode: 'array', types: RAW_TEXT };
      const query = client.query(new pg.Query<Row>(config as pg.QueryConfig));
      query.on('row', (row: Row) => {
        if (rows++ === 0) assigned = row[8];
        if (rows > q.limit) return; // the limit + 1st row only tells `hasMore`
        const [seq, t, ct, o, h, l, c, v] = row;
        present.push(Number(seq));
        items.add(`{"seq":${seq},"symbol":${sym},"timestamp":${t},"kline":{"t":${t},"T":${ct ?? 'null'},"s":${sym},"o":${num(o)},"h":${num(h)},"l":${num(l)},"c":${num(c)},"v":${num(v)}}}`);
      });
      query.on('end', () => resolve());
      query.on('error', reject);
    });
  } catch (err) {
    failed = err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    client.release(failed); // a client whose query failed is closed, not reused (its connection may be the cause)
  }
  const hasMore = rows > q.limit;
  const head = `{"symbol":${sym},"fromSeq":${q.fromSeq},"toSeq":${q.toSeq},"count":${present.length},"data":[`;
  let tail = `],"hasMore":${hasMore}`;
  if (perSymbol) {
    // The span this page speaks for: up to its last row when more follow, else up to toSeq
    // but not past the last number stamped (later numbers are not issued yet).
    const last = rows > 0 ? assigned : await lastAssigned(db, q.symbol);
    const upTo = hasMore ? present[present.length - 1]! : Math.min(q.toSeq, Number(last ?? 0));
    let ranges = classifyHoles(q.fromSeq, upTo, present, []);
    if (ranges.missing.length > 0) ranges = classifyHoles(q.fromSeq, upTo, present, await skipsOf(db, q));
    tail += `,"skipped":${JSON.stringify(ranges.skipped.slice(0, MAX_RANGES))},"missing":${JSON.stringify(ranges.missing.slice(0, MAX_RANGES))}`;
  }
  return Buffer.concat([Buffer.from(head, 'latin1'), items.bytes(), Buffer.from(`${tail}}`, 'latin1')]);
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
