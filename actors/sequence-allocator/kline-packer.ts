import { ingestLaneOf, klineOf, type Kline } from '../../queues/index.js';
import { KLINE_FIELDS, MAX_KLINES_PER_JOB, parseKline, type PackedKlines } from '../../queues/klines.js';
import { zodIssues } from '../../runtime/validation.js';

/*
 * Kafka messages to packed ingest jobs (see PackedKlines) without building a kline per message.
 * The slow path, parseKlineMessage, costs per message a string of the bytes, a JSON.parse
 * (an object, its strings), the checks, then String() of seven numbers for the packed text:
 * the worker's largest cost per kline after the job format changed. Producers send one shape,
 * `{"t":...,"T":...,"s":"...","o":"100.1",...}`, so scanKline reads that shape straight from
 * the message's bytes and copies each field's text into the job, and every message it does not
 * take (other shapes, envelopes, text that is not in canonical form, bad klines) goes the slow
 * way. It takes a message only when the slow path would give the same kline with the same text
 * (a unit test compares the two on generated messages).
 */

const FIELD_OF = new Int8Array(128).fill(-1);
KLINE_FIELDS.forEach((f, i) => (FIELD_OF[f.charCodeAt(0)] = i));
const T_OPEN = 0;
const T_CLOSE = 1;
const SYMBOL = 2;
const HIGH = 4;
const LOW = 5;
const MAX_EPOCH_MS = 8.64e15;
/** Digits of a number whose text is its String() for sure: doubles keep 15 significant digits. */
const MAX_DIGITS = 15;

const isSpace = (b: number | undefined) => b === 32 || b === 10 || b === 13 || b === 9;
const isDigit = (b: number | undefined) => b !== undefined && b >= 48 && b <= 57;
const isAlnum = (b: number | undefined) => b !== undefined && ((b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122));

/** End of an epoch-ms integer in canonical form at `i` (no sign, no leading zero, at most 16 digits), or -1. */
function timeEnd(m: Uint8Array, i: number): number {
  if (m[i] === 48) return i + 1;
  if (!isDigit(m[i])) return -1;
  let j = i + 1;
  while (j - i < 16 && isDigit(m[j])) j++;
  return j;
}

/**
 * End of an amount in canonical form at `i`, or -1: what String() writes for the number, with
 * no exponent: `0` or digits without a leading zero, then optionally `.` and digits not ending
 * in 0, at most 15 significant digits, and at least 1e-6 (String() writes smaller numbers with
 * an exponent). Such text is String(Number(text)): a double tells apart all decimals of 15
 * significant digits, so the shortest text that reads back as the same double is this one.
 */
function amountEnd(m: Uint8Array, i: number): number {
  let j = i;
  let significant = 0;
  if (m[j] === 48) j++;
  else {
    while (isDigit(m[j])) j++;
    significant = j - i;
    if (significant === 0) return -1;
  }
  if (m[j] !== 46) return significant <= MAX_DIGITS ? j : -1;
  const frac = ++j;
  while (isDigit(m[j])) j++;
  if (j === frac || m[j - 1] === 48) return -1;
  if (significant === 0) {
    let zeros = 0;
    while (m[frac + zeros] === 48) zeros++;
    if (zeros > 5) return -1; // below 1e-6
    significant = j - frac - zeros;
  } else significant += j - frac;
  return significant <= MAX_DIGITS ? j : -1;
}

/** End of a symbol (SYMBOL: 1-20 of letters, digits, . _ -, the first a letter or digit) at `i`, or -1. */
function symbolEnd(m: Uint8Array, i: number): number {
  if (!isAlnum(m[i])) return -1;
  let j = i + 1;
  for (; j - i < 20; j++) {
    const b = m[j];
    if (!(isAlnum(b) || b === 46 || b === 95 || b === 45)) break;
  }
  return j;
}

function intValue(m: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + (m[i]! - 48);
  return n;
}

/** Where the decimal point of an amount is (its end if none). */
function pointOf(m: Uint8Array, from: number, to: number): number {
  let j = from;
  while (j < to && m[j] !== 46) j++;
  return j;
}

/** Sign of a - b for two amounts in canonical form (exact: compares the decimals, not doubles). */
function compareAmounts(m: Uint8Array, a: number, aEnd: number, b: number, bEnd: number): number {
  // (No closures on this path: tsx wraps each one created in a naming call.)
  const ap = pointOf(m, a, aEnd);
  const bp = pointOf(m, b, bEnd);
  // No leading zeros: a longer integer part is a larger number, an equal one compares by digits.
  if (ap - a !== bp - b) return ap - a - (bp - b);
  for (let k = 0; k < ap - a; k++) if (m[a + k] !== m[b + k]) return m[a + k]! - m[b + k]!;
  // Then the fractions, the shorter read as if padded with zeros.
  const aLength = Math.max(0, aEnd - ap - 1);
  const bLength = Math.max(0, bEnd - bp - 1);
  for (let k = 0; k < Math.max(aLength, bLength); k++) {
    const x = k < aLength ? m[ap + 1 + k]! : 48;
    const y = k < bLength ? m[bp + 1 + k]! : 48;
    if (x !== y) return x - y;
  }
  return 0;
}

/**
 * Reads a message of exactly this shape: an object of the eight kline fields, each once, in
 * any order, with JSON whitespace anywhere; t and T integers, s a plain string, o/h/l/c/v
 * numbers or strings, all in canonical form (see timeEnd, amountEnd), T >= t and h >= l. Fills
 * `at` with each field's text as [start, end) pairs in KLINE_FIELDS order and returns true, or
 * returns false for anything else (which may still be a kline: the slow path decides).
 */
export function scanKline(m: Uint8Array, at: Int32Array): boolean {
  const n = m.length;
  let i = 0;
  while (isSpace(m[i])) i++;
  if (m[i++] !== 123) return false; // {
  let seen = 0;
  for (let member = 0; member < 8; member++) {
    while (isSpace(m[i])) i++;
    const key = m[i + 1]!;
    const f = key < 128 ? FIELD_OF[key]! : -1;
    if (m[i] !== 34 || m[i + 2] !== 34 || f < 0 || seen & (1 << f)) return false;
    seen |= 1 << f;
    i += 3;
    while (isSpace(m[i])) i++;
    if (m[i++] !== 58) return false; // :
    while (isSpace(m[i])) i++;
    // s is a string, t and T are numbers (the slow path refuses anything else), amounts either.
    const quoted = m[i] === 34;
    if (f === SYMBOL ? !quoted : quoted && f <= T_CLOSE) return false;
    if (quoted) i++;
    const end = f <= T_CLOSE ? timeEnd(m, i) : f === SYMBOL ? symbolEnd(m, i) : amountEnd(m, i);
    if (end < 0) return false;
    at[2 * f] = i;
    at[2 * f + 1] = end;
    i = end;
    if (quoted && m[i++] !== 34) return false;
    while (isSpace(m[i])) i++;
    if (m[i++] !== (member < 7 ? 44 : 125)) return false; // , or }
  }
  while (isSpace(m[i])) i++;
  if (i !== n) return false;
  const t = intValue(m, at[2 * T_OPEN]!, at[2 * T_OPEN + 1]!);
  const T = intValue(m, at[2 * T_CLOSE]!, at[2 * T_CLOSE + 1]!);
  if (t > MAX_EPOCH_MS || T > MAX_EPOCH_MS || T < t) return false;
  return compareAmounts(m, at[2 * HIGH]!, at[2 * HIGH + 1]!, at[2 * LOW]!, at[2 * LOW + 1]!) >= 0;
}

/** Parses one message the slow way: a kline, or the reason it is not one. */
export function parseKlineMessage(value: Buffer | string | null): { ok: true; kline: Kline } | { ok: false; reason: string } {
  if (value === null) return { ok: false, reason: 'empty message' };
  let json: unknown;
  try {
    json = JSON.parse(value.toString());
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = parseKline(klineOf(json));
  if (parsed.success) return { ok: true, kline: parsed.data };
  return { ok: false, reason: zodIssues(parsed.error).map((i) => `${i.field}: ${i.reason}`).join('; ') };
}

/** The text of each field of one job, appended kline by kline, as bytes (the text is ASCII). */
class PackedBuilder {
  count = 0;
  private readonly bufs: Buffer[];
  private readonly used = new Array<number>(KLINE_FIELDS.length).fill(0);

  constructor(expected: number) {
    // Typical text lengths plus a comma (t/T 14, symbols about 8, amounts about 8); grows if short.
    this.bufs = KLINE_FIELDS.map((f) => Buffer.allocUnsafe(Math.max(64, expected * (f === 't' || f === 'T' ? 14 : 10))));
  }

  private room(f: number, bytes: number): Buffer {
    let buf = this.bufs[f]!;
    if (this.used[f]! + bytes + 1 > buf.length) {
      const bigger = Buffer.allocUnsafe(2 * buf.length + bytes + 1);
      buf.copy(bigger, 0, 0, this.used[f]);
      this.bufs[f] = buf = bigger;
    }
    return buf;
  }

  /** A kline found by scanKline: its fields' bytes, copied. */
  scanned(m: Uint8Array, at: Int32Array): void {
    for (let f = 0; f < KLINE_FIELDS.length; f++) {
      const from = at[2 * f]!;
      const to = at[2 * f + 1]!;
      const buf = this.room(f, to - from);
      let p = this.used[f]!;
      if (this.count > 0) buf[p++] = 44;
      for (let i = from; i < to; i++) buf[p++] = m[i]!;
      this.used[f] = p;
    }
    this.count++;
  }

  /** A kline from the slow path: String() of its values, as packKlines writes them. */
  parsed(k: Kline): void {
    const texts = [String(k.t), String(k.T), k.s, String(k.o), String(k.h), String(k.l), String(k.c), String(k.v)];
    for (let f = 0; f < texts.length; f++) {
      const text = texts[f]!;
      const buf = this.room(f, text.length);
      let p = this.used[f]!;
      if (this.count > 0) buf[p++] = 44;
      this.used[f] = p + buf.write(text, p, 'latin1');
    }
    this.count++;
  }

  finish(): PackedKlines {
    const text = (f: number) => this.bufs[f]!.toString('latin1', 0, this.used[f]);
    return { t: text(0), T: text(1), s: text(2), o: text(3), h: text(4), l: text(5), c: text(6), v: text(7) };
  }
}

export interface PackedBatch {
  /** Per lane (that has klines), its jobs in arrival order, each of at most MAX_KLINES_PER_JOB klines. */
  lanes: Map<number, Array<{ count: number; packed: PackedKlines }>>;
  /** Messages that are not klines: their index in the batch and the reason. */
  rejected: Array<{ index: number; reason: string }>;
}

/**
 * A Kafka batch's message values as packed jobs per ingest lane (a symbol's lane: ingestLaneOf),
 * klines in arrival order; what is not a kline is listed with the reason (parseKlineMessage's).
 */
export function packMessages(values: ReadonlyArray<Buffer | null>, lanes: number): PackedBatch {
  const at = new Int32Array(2 * KLINE_FIELDS.length);
  const expected = Math.min(values.length, MAX_KLINES_PER_JOB);
  const open = new Map<number, PackedBuilder>();
  const done = new Map<number, Array<{ count: number; packed: PackedKlines }>>();
  const rejected: PackedBatch['rejected'] = [];
  const builderOf = (lane: number) => {
    let b = open.get(lane);
    if (!b) open.set(lane, (b = new PackedBuilder(lanes > 1 ? Math.ceil(expected / lanes) : expected)));
    return b;
  };
  const full = (lane: number, b: PackedBuilder) => {
    if (b.count < MAX_KLINES_PER_JOB) return;
    close(lane, b);
    open.delete(lane);
  };
  const close = (lane: number, b: PackedBuilder) => {
    let list = done.get(lane);
    if (!list) done.set(lane, (list = []));
    list.push({ count: b.count, packed: b.finish() });
  };
  for (let index = 0; index < values.length; index++) {
    const value = values[index]!;
    if (value !== null && scanKline(value, at)) {
      const lane = lanes > 1 ? ingestLaneOf(value.toString('latin1', at[2 * SYMBOL], at[2 * SYMBOL + 1]), lanes) : 0;
      const b = builderOf(lane);
      b.scanned(value, at);
      full(lane, b);
      continue;
    }
    const r = parseKlineMessage(value);
    if (!r.ok) {
      rejected.push({ index, reason: r.reason });
      continue;
    }
    const lane = ingestLaneOf(r.kline.s, lanes);
    const b = builderOf(lane);
    b.parsed(r.kline);
    full(lane, b);
  }
  for (const [lane, b] of open) if (b.count > 0) close(lane, b);
  return { lanes: done, rejected };
}
