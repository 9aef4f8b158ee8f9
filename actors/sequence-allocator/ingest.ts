import type { Redis } from 'ioredis';
import type pg from 'pg';
import { klineChannel, type Kline, type SequencedKline } from '../../queues/index.js';
import type { PackedKlines } from '../../queues/klines.js';
import type { SequenceAllocator } from './allocator.js';

export interface IngestResult {
  received: number;
  stored: number;
  /** Klines whose (symbol, time) was already stored, or repeated in the batch: kept as first stored. */
  duplicates: number;
  /** Stored, but pub/sub did not take them (clients recover them through the missed API). */
  unpublished: number;
  /** Numbers recorded as skipped (reserved, never stamped) in this batch. */
  skipped: number;
}

export interface IngestDeps {
  pool: pg.Pool;
  redis: Redis;
  allocator: SequenceAllocator;
  channelPrefix: string;
}

const TS = `'epoch'::timestamptz + k.t * interval '1 millisecond'`;

/**
 * A batch as the text of each field (kline i is index i of every array): the form both job
 * formats are turned into, and the form PostgreSQL's array literals and the pub/sub JSON are
 * written from. The text is canonical (String() of the number), so equal values compare equal.
 */
interface Columns {
  /** The job's packed text, when it came packed: a field of the whole batch is then `{${packed.o}}` as is. */
  packed?: PackedKlines;
  t: string[];
  T: string[];
  s: string[];
  o: string[];
  h: string[];
  l: string[];
  c: string[];
  v: string[];
}

/** The columns of a batch in either job format (see KlinesIngestJob). */
function columnsOf(batch: readonly Kline[] | PackedKlines): Columns {
  if (!Array.isArray(batch)) {
    const p = batch as PackedKlines;
    return { packed: p, t: p.t.split(','), T: p.T.split(','), s: p.s.split(','), o: p.o.split(','), h: p.h.split(','), l: p.l.split(','), c: p.c.split(','), v: p.v.split(',') };
  }
  const klines = batch as readonly Kline[];
  const col = (f: Exclude<keyof Kline, 's'>) => klines.map((k) => String(k[f]));
  return { t: col('t'), T: col('T'), s: klines.map((k) => k.s), o: col('o'), h: col('h'), l: col('l'), c: col('c'), v: col('v') };
}

/**
 * Stamps, stores and publishes one batch (kline objects, or klines packed by field). Runs one
 * batch at a time per ingest lane across all workers (each lane queue's global concurrency is
 * 1) and a stream lives in one lane, so per stream the numbers are stamped, stored and
 * published in one order. Idempotent on (symbol, time): a kline already stored keeps its first
 * sequence and is neither stored nor published again, so a retried or redelivered batch
 * changes nothing. Numbers allocated for a batch that then fails are never used; the next
 * batch records them in sequence_skips.
 */
export async function ingestBatch(deps: IngestDeps, batch: readonly Kline[] | PackedKlines): Promise<IngestResult> {
  const { pool, allocator } = deps;
  const cols = columnsOf(batch);
  const received = cols.t.length;
  // Klines are handled by index into the columns: `unique`, then `fresh`, then `stored`.
  const seen = new Set<string>();
  const unique: number[] = [];
  for (let i = 0; i < received; i++) {
    const id = `${cols.s[i]}\u0000${cols.t[i]}`;
    if (seen.has(id)) continue;
    seen.add(id);
    unique.push(i);
  }
  const client = await pool.connect();
  let stored: number[] = [];
  const seq: number[] = new Array<number>(received);
  // The text of each stamped number, written once for the INSERT and the pub/sub message.
  const seqText: string[] = new Array<string>(received);
  let skipped = 0;
  let failed: Error | undefined;
  try {
    const fresh = await notStored(client, cols, unique);
    if (fresh.length > 0) {
      // Per stream, arrival order is sequence order.
      const streamOf = fresh.map((i) => allocator.streamOf(cols.s[i]!));
      const counts = new Map<string, number>();
      for (const stream of streamOf) counts.set(stream, (counts.get(stream) ?? 0) + 1);
      const streams = [...counts.keys()];
      const firsts = await Promise.all(streams.map((s) => allocator.allocate(s, counts.get(s)!)));
      // Each stream's range handed out in arrival order.
      const next = new Map(streams.map((s, i) => [s, firsts[i]!]));
      for (let j = 0; j < fresh.length; j++) {
        const n = next.get(streamOf[j]!)!;
        seq[fresh[j]!] = n;
        seqText[fresh[j]!] = String(n);
        next.set(streamOf[j]!, n + 1);
      }
      const assign = () => recordAssignment(client, streams, firsts, streams.map((s) => counts.get(s)!));
      await client.query('BEGIN');
      try {
        skipped = await assign();
        let inserted: Set<string> | undefined;
        try {
          await insertKlines(client, cols, seqText, fresh, false);
        } catch (err) {
          if ((err as { code?: unknown }).code !== UNIQUE_VIOLATION) throw err;
          // Another writer stored some of these (symbol, time) since the check: the same
          // transaction again, keeping its rows (the only case that pays for ON CONFLICT).
          await client.query('ROLLBACK');
          await client.query('BEGIN');
          skipped = await assign();
          inserted = await insertKlines(client, cols, seqText, fresh, true);
        }
        stored = fresh;
        // A writer outside this path stored some (symbol, time) meanwhile: their numbers go unused.
        if (inserted) {
          const lost = fresh.filter((i) => !inserted.has(`${cols.s[i]}\u0000${cols.t[i]}`));
          skipped += await recordSkips(client, lost.map((i) => ({ stream: allocator.streamOf(cols.s[i]!), from: seq[i]!, to: seq[i]! })));
          stored = fresh.filter((i) => inserted.has(`${cols.s[i]}\u0000${cols.t[i]}`));
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    }
  } catch (err) {
    failed = err instanceof Error ? err : new Error(String(err));
    throw failed;
  } finally {
    client.release(failed && /connection|terminat/i.test(failed.message) ? failed : undefined);
  }
  const unpublished = await publish(deps, cols, seqText, stored);
  return { received, stored: stored.length, duplicates: received - stored.length, unpublished, skipped };
}

/*
 * Array parameters as PostgreSQL array literals, built here from the fields' text: node-postgres
 * quotes and regex-escapes every element (about ten per kline), work this path does not need.
 * Safe because the text is validated (the job schema): numbers as String() writes them (digits,
 * fraction, exponent: valid float8/bigint input) and symbols matching SYMBOL (no quote,
 * backslash, comma or space; quoted anyway so that a symbol spelled NULL stays a string).
 */
function textArray(cols: Columns, field: Exclude<keyof PackedKlines, 's'>, at: readonly number[]): string {
  // Every kline of a packed job (the common case): its text is the literal's inside already.
  // `at` lists indexes in increasing order, so all of them means 0..n-1.
  if (cols.packed && at.length === cols.t.length) return `{${cols.packed[field]}}`;
  const values = cols[field];
  return `{${at.map((i) => values[i]!).join(',')}}`;
}

function symbolArray(cols: Columns, at: readonly number[]): string {
  if (at.length === 0) return '{}';
  const all = cols.packed && at.length === cols.t.length ? cols.packed.s : at.map((i) => cols.s[i]!).join(',');
  // One scan instead of one per element: a quote or backslash would break out of the literal.
  if (/["\\]/.test(all)) throw new TypeError('symbol with a quote or backslash (not a validated kline)');
  return `{"${all.replaceAll(',', '","')}"}`;
}

/**
 * The klines (of `at`) whose (symbol, time) is not stored yet, in their order. One primary-key
 * probe per kline: the LATERAL ... LIMIT 1 keeps the planner on that nested loop. A plain join
 * was planned as a hash join over a sequential scan of all of market_klines once the batch was
 * large (10,000 klines against 180,000 rows: 280 ms instead of 18 ms), growing with the table.
 */
async function notStored(client: pg.PoolClient, cols: Columns, at: number[]): Promise<number[]> {
  if (at.length === 0) return [];
  const { rows } = await client.query<{ i: string }>(
    `SELECT k.i FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS k(t, s, i)
       CROSS JOIN LATERAL (SELECT 1 FROM market_klines m WHERE m.time = ${TS} AND m.symbol = k.s LIMIT 1) stored`,
    [textArray(cols, 't', at), symbolArray(cols, at)],
  );
  if (rows.length === 0) return at;
  const already = new Set(rows.map((r) => Number(r.i) - 1));
  return at.filter((_, j) => !already.has(j));
}

/** PostgreSQL's unique_violation. */
const UNIQUE_VIOLATION = '23505';

/**
 * Inserts the klines of `at` in sequence order. Plainly (`keepExisting` false): the batch was
 * just checked against the table and this lane is the only writer of its symbols, so a
 * conflict means another writer, and the INSERT fails (the caller then starts over with
 * `keepExisting`). ON CONFLICT DO NOTHING costs PostgreSQL about a third more CPU per row
 * (a speculative insertion each), measured at 10.3 against 7.9 µs per kline, 10,000 a batch.
 * With `keepExisting`, returns the (symbol, time) keys inserted, or undefined when all were.
 */
async function insertKlines(client: pg.PoolClient, cols: Columns, seqText: readonly string[], at: number[], keepExisting: boolean): Promise<Set<string> | undefined> {
  const seqs = `{${at.map((i) => seqText[i]!).join(',')}}`;
  const res = await client.query(
    `INSERT INTO market_klines (time, symbol, open, high, low, close, volume, sequence, close_time)
     SELECT ${TS}, k.s, k.o, k.h, k.l, k.c, k.v, k.seq, 'epoch'::timestamptz + k.ct * interval '1 millisecond'
       FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::bigint[], $9::bigint[])
            WITH ORDINALITY AS k(t, s, o, h, l, c, v, seq, ct, i)
      ORDER BY k.i${keepExisting ? '\n     ON CONFLICT (time, symbol) DO NOTHING' : ''}`,
    [textArray(cols, 't', at), symbolArray(cols, at), textArray(cols, 'o', at), textArray(cols, 'h', at), textArray(cols, 'l', at), textArray(cols, 'c', at), textArray(cols, 'v', at), seqs, textArray(cols, 'T', at)],
  );
  if (res.rowCount === at.length) return undefined;
  // Someone else stored some of them meanwhile: find ours by their sequence.
  const { rows } = await client.query<{ s: string; t: string }>(
    `SELECT m.symbol AS s, (extract(epoch FROM m.time) * 1000)::bigint::text AS t
       FROM unnest($1::text[], $2::bigint[]) AS k(s, seq) JOIN market_klines m ON m.symbol = k.s AND m.sequence = k.seq`,
    [symbolArray(cols, at), seqs],
  );
  return new Set(rows.map((r) => `${r.s}\u0000${r.t}`));
}

/**
 * Moves each stream's last_assigned to the end of its new range; numbers between the old
 * last_assigned and the range (reserved, never stamped) are recorded as skipped.
 */
async function recordAssignment(client: pg.PoolClient, streams: string[], firsts: number[], counts: number[]): Promise<number> {
  const lasts = firsts.map((f, i) => f + counts[i]! - 1);
  const { rows } = await client.query<{ stream: string; last_assigned: string }>(
    `SELECT stream, last_assigned FROM sequence_tracker WHERE stream = ANY($1::text[]) ORDER BY stream FOR UPDATE`,
    [streams],
  );
  const before = new Map(rows.map((r) => [r.stream, Number(r.last_assigned)]));
  const skips = streams.flatMap((stream, i) => {
    const prev = before.get(stream) ?? 0;
    return firsts[i]! > prev + 1 ? [{ stream, from: prev + 1, to: firsts[i]! - 1 }] : [];
  });
  await client.query(
    `INSERT INTO sequence_tracker (stream, last_sequence, last_assigned)
     SELECT s, l, l FROM unnest($1::text[], $2::bigint[]) AS v(s, l)
     ON CONFLICT (stream) DO UPDATE SET last_assigned = GREATEST(sequence_tracker.last_assigned, EXCLUDED.last_assigned),
       last_sequence = GREATEST(sequence_tracker.last_sequence, EXCLUDED.last_assigned), updated_at = CURRENT_TIMESTAMP`,
    [streams, lasts],
  );
  return recordSkips(client, skips);
}

async function recordSkips(client: pg.PoolClient, skips: Array<{ stream: string; from: number; to: number }>): Promise<number> {
  if (skips.length === 0) return 0;
  await client.query(
    `INSERT INTO sequence_skips (stream, from_seq, to_seq) SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) ON CONFLICT DO NOTHING`,
    [skips.map((s) => s.stream), skips.map((s) => s.from), skips.map((s) => s.to)],
  );
  return skips.reduce((n, s) => n + s.to - s.from + 1, 0);
}

/** The pub/sub message of a stored kline (the same shape the missed API returns). */
export function sequenced(k: Kline & { seq: number }): SequencedKline {
  const { seq, ...kline } = k;
  return { seq, symbol: k.s, timestamp: k.t, kline };
}

/**
 * JSON.stringify(sequenced(k)), written out from the fields' text: the same text (the text is
 * String() of finite numbers, which is their JSON; symbols match SYMBOL, so they need no
 * escaping) at a fraction of the CPU.
 */
function messageOf(cols: Columns, i: number, seq: string): string {
  const t = cols.t[i]!;
  const s = cols.s[i]!;
  return `{"seq":${seq},"symbol":"${s}","timestamp":${t},"kline":{"t":${t},"T":${cols.T[i]!},"s":"${s}","o":${cols.o[i]!},"h":${cols.h[i]!},"l":${cols.l[i]!},"c":${cols.c[i]!},"v":${cols.v[i]!}}}`;
}

/** The pub/sub message of a stamped kline, as JSON text (what subscribers receive). */
export function sequencedJson(k: Kline & { seq: number }): string {
  return messageOf(columnsOf([k]), 0, String(k.seq));
}

/** Messages per publish script call (one call holds Redis for about a millisecond per 1,000). */
const PUBLISH_CHUNK = 1000;
/**
 * Publishes many messages in one call. They travel as ONE argument, lines of
 * `<symbol> <message>`, and the script splits them: ioredis's per-argument work (a length
 * and a socket write each, 2 per message) was most of the publish CPU in the workers.
 * Safe to split on the first space and on newlines: symbols match SYMBOL (no space, no
 * newline) and the messages hold neither.
 */
const PUBLISH_LINES = `
local prefix, blob, pos = ARGV[1], ARGV[2], 1
while true do
  local eol = string.find(blob, '\\n', pos, true)
  if not eol then break end
  local sp = string.find(blob, ' ', pos, true)
  redis.call('PUBLISH', prefix .. string.sub(blob, pos, sp - 1), string.sub(blob, sp + 1, eol - 1))
  pos = eol + 1
end
return 1`;

/** Publishes the klines of `at` after the commit, in sequence order; a failure is counted, not retried (see README). */
async function publish(deps: IngestDeps, cols: Columns, seqText: readonly string[], at: readonly number[]): Promise<number> {
  let unpublished = 0;
  for (let j = 0; j < at.length; j += PUBLISH_CHUNK) {
    const end = Math.min(at.length, j + PUBLISH_CHUNK);
    // Written line by line into bytes: the text is ASCII (validated symbols, numbers), so latin1
    // is its UTF-8, and ioredis neither measures nor encodes it. Building one string first
    // (`+=` or join, then Buffer.from) took twice the CPU: flattening 1,000 lines of ~20 pieces.
    let blob = Buffer.allocUnsafe((end - j) * 256);
    let used = 0;
    for (let x = j; x < end; x++) {
      const i = at[x]!;
      const line = `${cols.s[i]!} ${messageOf(cols, i, seqText[i]!)}\n`;
      if (used + line.length > blob.length) {
        const bigger = Buffer.allocUnsafe(Math.max(2 * blob.length, used + line.length));
        blob.copy(bigger, 0, 0, used);
        blob = bigger;
      }
      used += blob.write(line, used, 'latin1');
    }
    try {
      await deps.redis.eval(PUBLISH_LINES, 0, klineChannel(deps.channelPrefix, ''), blob.subarray(0, used));
    } catch {
      unpublished += end - j;
    }
  }
  return unpublished;
}
