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
 * The klines of a job in the first format (checked by every worker before the handler runs):
 * storedKline's checks, written out, for up to 10,000 klines a job. An element that fails them
 * is run through storedKline for the issues, so errors still name the field (`klines.3.h`). The
 * klines pass through as they are (not copied): the ingest path reads only their eight fields.
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

/** The fields of a kline, in the order a packed job lists them. */
export const KLINE_FIELDS = ['t', 'T', 's', 'o', 'h', 'l', 'c', 'v'] as const;

/**
 * Klines packed by field (the job format producers write since issue 7): per field, the values
 * of every kline in arrival order as ONE string, their text joined by commas
 * (`t: "1700000000000,1700000000000"`, `s: "BTCUSDT,ETHUSDT"`, `o: "100.1,2000"`). A job of
 * kline objects cost a JSON.stringify of 10,000 objects in the producer, the same JSON in
 * BullMQ's and Redis's buffers, and a JSON.parse into 10,000 objects in the worker; eight
 * strings cost a copy each. The text is what PostgreSQL's array literals and the pub/sub JSON
 * need, so the worker never turns it into numbers and back.
 *
 * The text is canonical: `String(n)` of a validated kline's numbers (so equal values have equal
 * text, which the batch's (symbol, time) dedup relies on), and symbols matching SYMBOL.
 */
export type PackedKlines = Record<(typeof KLINE_FIELDS)[number], string>;

/** Packs validated klines (see PackedKlines). */
export function packKlines(klines: readonly Kline[]): PackedKlines {
  const n = klines.length;
  const t = new Array<string>(n), T = new Array<string>(n), s = new Array<string>(n), o = new Array<string>(n);
  const h = new Array<string>(n), l = new Array<string>(n), c = new Array<string>(n), v = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const k = klines[i]!;
    t[i] = String(k.t);
    T[i] = String(k.T);
    s[i] = k.s;
    o[i] = String(k.o);
    h[i] = String(k.h);
    l[i] = String(k.l);
    c[i] = String(k.c);
    v[i] = String(k.v);
  }
  return { t: t.join(','), T: T.join(','), s: s.join(','), o: o.join(','), h: h.join(','), l: l.join(','), c: c.join(','), v: v.join(',') };
}

/*
 * What a packed field may hold, checked in one regular-expression pass over the whole string
 * (no per-kline work): the values go into PostgreSQL array literals and pub/sub JSON as they
 * are, so a comma, brace, quote or space smuggled in must be refused here. Times: integers
 * (bigint input) without leading zeros. Amounts: what String() writes for a finite number >= 0
 * (digits, fraction, exponent), which is also valid JSON and float8 input. Symbols: SYMBOL.
 */
const TIME = '(?:0|[1-9]\\d{0,15})';
const AMOUNT = '(?:0|[1-9]\\d*)(?:\\.\\d+)?(?:e[-+]?\\d{1,3})?';
const SYMBOL_TEXT = SYMBOL.source.replace(/^\^|\$$/g, '');
const listOf = (item: string) => new RegExp(`^${item}(?:,${item})*$`);
const FIELD_TEXT: PackedKlines = { t: TIME, T: TIME, s: SYMBOL_TEXT, o: AMOUNT, h: AMOUNT, l: AMOUNT, c: AMOUNT, v: AMOUNT };
const FIELD_LIST = Object.fromEntries(KLINE_FIELDS.map((f) => [f, listOf(FIELD_TEXT[f])])) as Record<keyof PackedKlines, RegExp>;
const FIELD_REASON: PackedKlines = {
  t: 'integers (epoch ms) joined by commas',
  T: 'integers (epoch ms) joined by commas',
  s: 'symbols (1-20 letters, digits, . _ -) joined by commas',
  o: 'numbers >= 0 joined by commas',
  h: 'numbers >= 0 joined by commas',
  l: 'numbers >= 0 joined by commas',
  c: 'numbers >= 0 joined by commas',
  v: 'numbers >= 0 joined by commas',
};

/** Values in a packed field: its commas plus one (no split, no allocation). */
function valuesIn(text: string): number {
  let n = 1;
  for (let i = text.indexOf(','); i !== -1; i = text.indexOf(',', i + 1)) n++;
  return n;
}

const packedKlines = z
  .object(Object.fromEntries(KLINE_FIELDS.map((f) => [f, z.string()])) as Record<keyof PackedKlines, z.ZodString>)
  .superRefine((p, ctx) => {
    for (const f of KLINE_FIELDS) if (!FIELD_LIST[f].test(p[f])) ctx.addIssue({ code: 'custom', path: [f], message: FIELD_REASON[f] });
  });

/** The job: klines in arrival order (per symbol, sequence order follows it), in one of two formats. */
export type KlinesIngestJob =
  | {
      source: 'kafka' | 'http';
      /** Klines in the job (1 to MAX_KLINES_PER_JOB); every packed field holds this many values. */
      count: number;
      packed: PackedKlines;
    }
  | {
      source: 'kafka' | 'http';
      /** The first format (kline objects), still queued by older producers: accepted, no longer written. */
      klines: Kline[];
    };

const packedJob = z
  .object({ source: z.enum(['kafka', 'http']), count: z.number().int().min(1).max(MAX_KLINES_PER_JOB), packed: packedKlines })
  .superRefine((job, ctx) => {
    for (const f of KLINE_FIELDS) {
      const n = valuesIn(job.packed[f]);
      if (n !== job.count) ctx.addIssue({ code: 'custom', path: ['packed', f], message: `${n} values; count says ${job.count}` });
    }
  });
const objectsJob = z.object({ source: z.enum(['kafka', 'http']), klines: storedKlines });
/**
 * Either format, chosen by the presence of `packed`: a zod union would report a bad job of
 * either format as "invalid input", where this names the field (`packed.o`, `klines.3.h`).
 */
const ingestJob = z.custom<KlinesIngestJob>().superRefine((data, ctx) => {
  const isPacked = data !== null && typeof data === 'object' && 'packed' in data;
  const r = (isPacked ? packedJob : objectsJob).safeParse(data);
  for (const issue of r.success ? [] : r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
});

export const klinesIngestQueue = defineQueue<KlinesIngestJob>({
  name: 'klines.ingest',
  description: 'batches of validated klines (packed by field) to stamp with sequences, store in market_klines and publish',
  schema: ingestJob,
  // A job holds up to 10,000 klines (about 0.7 MB packed): keep few completed ones. The consumer
  // learns of completion from the events stream, so it does not need the job kept.
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
