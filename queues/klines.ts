import type { Redis } from 'ioredis';
import type pg from 'pg';
import { z } from 'zod';
import { defineQueue } from './definition.js';

/**
 * The market-data contract: klines (candlesticks) enter from Kafka (`market_data`) or
 * `POST /api/v1/klines`, travel to the sequence-allocator through `klines.ingest` in
 * batches, and leave stamped with a sequence on Redis pub/sub and in `market_klines`.
 */

/** Symbols as exchanges spell them (BTCUSDT, ETH-USD); case is kept, market_klines.symbol is varchar(20). */
export const SYMBOL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,19}$/;

const DECIMAL = /^\d+(\.\d+)?([eE][-+]?\d+)?$/;
/**
 * A price or volume: a JSON number or the decimal string exchanges send ("50000.01").
 * A preprocess rather than a union: this runs five times per kline on the hot path.
 */
const amount = z.preprocess(
  (v) => (typeof v === 'string' && DECIMAL.test(v) ? Number(v) : v),
  z.number({ error: 'a number or a decimal string' }).min(0, 'must be >= 0').refine(Number.isFinite, 'must be finite'),
);
const epochMs = z.number().int('an integer (epoch milliseconds)').min(0, 'must be >= 0').max(8.64e15, 'out of range');

/** One kline as producers send it: `{t, T, s, o, h, l, c, v}` (Binance field names; t/T in epoch ms). */
export const klineSchema = z
  .object({
    t: epochMs,
    T: epochMs,
    s: z.string().regex(SYMBOL, 'a symbol of 1-20 letters, digits, . _ -'),
    o: amount,
    h: amount,
    l: amount,
    c: amount,
    v: amount,
  })
  .superRefine((k, ctx) => {
    if (k.T < k.t) ctx.addIssue({ code: 'custom', path: ['T'], message: 'close time T must be >= open time t' });
    if (k.h < k.l) ctx.addIssue({ code: 'custom', path: ['h'], message: 'high must be >= low' });
  });

export type Kline = z.infer<typeof klineSchema>;

/*
 * The same checks as klineSchema, written out for the ingest hot path (every Kafka message,
 * every kline of a job): zod's object parsing was about a tenth of a worker's CPU. They accept
 * nothing the schema refuses (a unit test holds them to it); anything they refuse goes through
 * the schema, which gives the reason or, should the two ever differ, the kline.
 */
const amountOf = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' && DECIMAL.test(v) ? Number(v) : Number.NaN;
  return Number.isFinite(n) && n >= 0 ? n : undefined;
};
const epochOf = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 8.64e15 ? v : undefined);

/** A kline as klineSchema would parse it (a new object with only its 8 fields), or undefined if it is not obviously one. */
function fastKline(value: unknown): Kline | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const r = value as Record<string, unknown>;
  const t = epochOf(r.t);
  const T = epochOf(r.T);
  const o = amountOf(r.o);
  const h = amountOf(r.h);
  const l = amountOf(r.l);
  const c = amountOf(r.c);
  const v = amountOf(r.v);
  const s = r.s;
  if (t === undefined || T === undefined || o === undefined || h === undefined || l === undefined || c === undefined || v === undefined) return undefined;
  if (typeof s !== 'string' || !SYMBOL.test(s) || T < t || h < l) return undefined;
  return { t, T, s, o, h, l, c, v };
}

/** klineSchema.safeParse, with the hand-written checks first (see fastKline). */
export function parseKline(value: unknown): ReturnType<typeof klineSchema.safeParse> {
  const fast = fastKline(value);
  return fast ? { success: true, data: fast } : klineSchema.safeParse(value);
}

/**
 * A message of the market_data topic: a bare kline, or an exchange event carrying it
 * under `k` (Binance `{e: "kline", s, k: {...}}`). Any `seq`/`sequence` a producer put
 * there is ignored: the allocator is the one authority for sequence numbers.
 */
export function klineOf(message: unknown): unknown {
  if (message !== null && typeof message === 'object' && 'k' in message && typeof message.k === 'object') return message.k;
  return message;
}

/**
 * Klines per ingest job at most (a Kafka fetch is split to fit). 20,000 with 3 MB fetches was
 * measured slower than this with kafkajs's default 1 MB fetches (about 7,000 klines).
 */
export const MAX_KLINES_PER_JOB = 10_000;

const storedKline = z.object({ t: z.number(), T: z.number(), s: z.string().regex(SYMBOL), o: z.number(), h: z.number(), l: z.number(), c: z.number(), v: z.number() });
const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
const isStoredKline = (k: unknown): k is Kline => {
  if (k === null || typeof k !== 'object' || Array.isArray(k)) return false;
  const r = k as Record<string, unknown>;
  return finite(r.t) && finite(r.T) && finite(r.o) && finite(r.h) && finite(r.l) && finite(r.c) && finite(r.v) && typeof r.s === 'string' && SYMBOL.test(r.s);
};
/**
 * The klines of a job (checked by every worker before the handler runs): storedKline's checks,
 * written out, for up to 10,000 klines a job. An element that fails them is run through
 * storedKline for the issues, so errors still name the field (`klines.3.h`). The klines pass
 * through as they are (not copied): the ingest path reads only their eight fields.
 */
const storedKlines = z
  .array(z.unknown())
  .min(1)
  .max(MAX_KLINES_PER_JOB)
  .superRefine((list, ctx) => {
    for (let i = 0; i < list.length; i++) {
      if (isStoredKline(list[i])) continue;
      const r = storedKline.safeParse(list[i]);
      for (const issue of r.success ? [] : r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: [i, ...issue.path] });
    }
  })
  .transform((list) => list as Kline[]);

export interface KlinesIngestJob {
  source: 'kafka' | 'http';
  /** Validated klines in arrival order: per symbol, sequence order follows this order. */
  klines: Kline[];
}

export const klinesIngestQueue = defineQueue<KlinesIngestJob>({
  name: 'klines.ingest',
  description: 'batches of validated klines to stamp with sequences, store in market_klines and publish',
  schema: z.object({ source: z.enum(['kafka', 'http']), klines: storedKlines }),
  // A job holds up to 10,000 klines (about 1.5 MB): keep few completed ones. The consumer learns
  // of completion from the events stream, so it does not need the job kept.
  jobOptions: { attempts: 10, backoff: { type: 'exponential', delay: 500, jitter: 0.5 }, removeOnComplete: { count: 10, age: 300 } },
});

/** Most ingest lanes (KLINES_INGEST_LANES). */
export const MAX_INGEST_LANES = 32;
const laneQueues = new Map<number, typeof klinesIngestQueue>([[0, klinesIngestQueue]]);

/**
 * The queue of ingest lane `lane`: lane 0 is `klines.ingest` itself (so a single-lane setup,
 * older producers and the DLQ of rejected messages keep their queue), lane i is `klines.ingest.<i>`.
 * Each lane is stored one batch at a time; a symbol always goes to the same lane.
 */
export function klinesIngestLane(lane: number): typeof klinesIngestQueue {
  let def = laneQueues.get(lane);
  if (!def) laneQueues.set(lane, (def = defineQueue<KlinesIngestJob>({ ...klinesIngestQueue, name: `${klinesIngestQueue.name}.${lane}` })));
  return def;
}

/** The queues of `lanes` ingest lanes, lane 0 first. */
export function klinesIngestLanes(lanes: number): Array<typeof klinesIngestQueue> {
  return Array.from({ length: lanes }, (_, i) => klinesIngestLane(i));
}

/** The lane of a symbol: FNV-1a of its name modulo the lane count (stable across processes). */
export function ingestLaneOf(symbol: string, lanes: number): number {
  if (lanes <= 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < symbol.length; i++) h = Math.imul(h ^ symbol.charCodeAt(i), 0x01000193);
  return (h >>> 0) % lanes;
}

/** Klines split by lane, each list in arrival order (so per symbol, order is kept). */
export function splitByLane<K extends { s: string }>(klines: readonly K[], lanes: number): Map<number, K[]> {
  const out = new Map<number, K[]>();
  for (const k of klines) {
    const lane = ingestLaneOf(k.s, lanes);
    let list = out.get(lane);
    if (!list) out.set(lane, (list = []));
    list.push(k);
  }
  return out;
}

/** What subscribers receive on pub/sub, and what the missed API returns per kline. */
export interface SequencedKline {
  seq: number;
  symbol: string;
  /** The kline's open time, epoch ms. */
  timestamp: number;
  kline: Kline;
}

/** The pub/sub channel of a symbol's klines. */
export function klineChannel(prefix: string, symbol: string): string {
  return `${prefix}${symbol}`;
}

/** Redis hash of a stream's allocator state (`last` handed out, `ceil` durably reserved). */
export function sequenceKey(queuePrefix: string, stream: string): string {
  return `${queuePrefix}:seq:{${stream}}`;
}

export const GLOBAL_STREAM = 'global';
export type StreamMode = 'symbol' | 'global';

/** The stream a symbol's klines take their numbers from. */
export function streamOf(mode: StreamMode, symbol: string): string {
  return mode === 'global' ? GLOBAL_STREAM : symbol;
}

export interface StreamPosition {
  stream: string;
  /** Last number Redis handed out; null when Redis holds no state for the stream (fresh, or flushed). */
  last: number | null;
  /** Redis may hand out numbers up to this one without asking PostgreSQL. */
  reserved: number | null;
  /** sequence_tracker.last_sequence: every number ever handed out is <= this. */
  durable: number;
  /** sequence_tracker.last_assigned: the highest number stamped on a kline. */
  assigned: number;
  /** Highest sequence stored in market_klines for the stream. */
  stored: number | null;
}

/** Highest stored sequence of a stream's klines (per symbol: by the index on symbol, sequence). */
export async function storedMax(db: pg.Pool, mode: StreamMode, stream: string): Promise<number | null> {
  const { rows } =
    mode === 'global' && stream === GLOBAL_STREAM
      ? await db.query<{ m: string | null }>(`SELECT max(sequence) AS m FROM market_klines`)
      : await db.query<{ m: string | null }>(`SELECT max(sequence) AS m FROM market_klines WHERE symbol = $1 AND sequence IS NOT NULL`, [stream]);
  return rows[0]?.m == null ? null : Number(rows[0].m);
}

/** Where a stream stands, in Redis and in PostgreSQL. */
export async function streamPosition(redis: Redis, db: pg.Pool, prefix: string, mode: StreamMode, stream: string): Promise<StreamPosition> {
  const [state, tracker, stored] = await Promise.all([
    redis.hmget(sequenceKey(prefix, stream), 'last', 'ceil'),
    db.query<{ last_sequence: string; last_assigned: string }>(`SELECT last_sequence, last_assigned FROM sequence_tracker WHERE stream = $1`, [stream]),
    storedMax(db, mode, stream),
  ]);
  const num = (v: string | null | undefined) => (v == null ? null : Number(v));
  return {
    stream,
    last: num(state[0]),
    reserved: num(state[1]),
    durable: Number(tracker.rows[0]?.last_sequence ?? 0),
    assigned: Number(tracker.rows[0]?.last_assigned ?? 0),
    stored,
  };
}
