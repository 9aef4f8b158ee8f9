import type { SideColumn, SideWork } from '../../queues/validate.js';
import { isIntegerKey, keyColumnsOf, parseKey, sortKeys } from './key-hash.js';
import type { SideResult } from './side-work.js';

/** Runs one piece of side work where that side lives (through the queues, or inline in unit tests). */
export interface Sides {
  pg(work: SideWork): Promise<SideResult>;
  duck(work: SideWork): Promise<SideResult>;
}

export type DiffKind = 'missing_in_copy' | 'extra_in_copy' | 'changed';
export interface DiffKey {
  key: string;
  kind: DiffKind;
}

export interface HashOutcome {
  sourceCount: number;
  copyCount: number;
  diffs: DiffKey[];
  /** Rows read from both sides to find the differing keys (segment downloads and rechecks). */
  rowsDownloaded: number;
  /** Segments compared by checksum, and bisection depth reached. */
  segmentsChecked: number;
  levels: number;
  /** Keys that differed at first but agreed when read again (in flight through CDC). */
  settledOnRecheck: number;
  /** Wall-clock milliseconds of each phase: bounds, each bisection level, the recheck. */
  phaseMs: { bounds: number; levels: number[]; recheck: number };
}

export interface BisectOptions {
  factor: number;
  threshold: number;
  /** Delay before differing rows are read again; 0 reads them again at once. */
  recheckDelayMs: number;
  /** Rows one checksum job scans at most (bigger segments are cut into several jobs). @defaultValue 1000000 */
  maxRowsPerJob?: number;
}

interface Segment {
  lo: bigint;
  hi: bigint;
  /** Most rows either side holds in it. */
  n: number;
}

/** Compares two `[key, md5]` lists; returns the keys that differ. */
export function compareRows(source: ReadonlyArray<[string, string]>, copy: ReadonlyArray<[string, string]>): DiffKey[] {
  const theirs = new Map(copy);
  const out: DiffKey[] = [];
  for (const [key, h] of source) {
    const other = theirs.get(key);
    if (other === undefined) out.push({ key, kind: 'missing_in_copy' });
    else if (other !== h) out.push({ key, kind: 'changed' });
    theirs.delete(key);
  }
  for (const key of theirs.keys()) out.push({ key, kind: 'extra_in_copy' });
  return out;
}

/**
 * data_hash, the data-diff/reladiff way: count and checksum the whole key range in
 * sub-segments on both sides, bisect only the sub-segments whose count or checksum
 * differ, and download `[key, md5]` only for segments of at most `threshold` rows. The
 * fan-out is `factor` (32), or rows / threshold when that is larger (up to 65,536): the
 * scan costs the same either way, and 100 scattered differences in 10M rows then need
 * one full scan instead of two (with a fixed 32, every top segment differs). Each level's segments run concurrently (each side job may land on another
 * worker). Differing keys are then read again after `recheckDelayMs`: rows changed in
 * that window were in flight through CDC, and only keys that still differ are reported.
 *
 * A key that is not one integer column is bisected the same way over its hash kh in
 * `[0, 2^62)` (key-hash.ts; the side's `bounds` answer that space). There every scan is a
 * full scan, so the small differing sub-segments of one checksum are downloaded together.
 */
export async function dataHash(sides: Sides, table: string, columns: SideColumn[], opts: BisectOptions): Promise<HashOutcome> {
  const base = { table, columns };
  let t0 = Date.now();
  // PostgreSQL may answer with its row estimate: the first level below covers every row of
  // both sides, so its counts replace the bounds' counts (exact either way).
  const [pb, db] = await Promise.all([sides.pg({ ...base, op: 'bounds', estimate: true }), sides.duck({ ...base, op: 'bounds' })]);
  const out: HashOutcome = { sourceCount: Number(pb.bounds!.n), copyCount: Number(db.bounds!.n), diffs: [], rowsDownloaded: 0, segmentsChecked: 0, levels: 0, settledOnRecheck: 0, phaseMs: { bounds: Date.now() - t0, levels: [], recheck: 0 } };
  const mins = [pb.bounds!.min, db.bounds!.min].filter((v): v is string => v !== null).map(BigInt);
  const maxs = [pb.bounds!.max, db.bounds!.max].filter((v): v is string => v !== null).map(BigInt);
  if (mins.length === 0) return out;
  const lo = mins.reduce((a, b) => (a < b ? a : b));
  const hi = maxs.reduce((a, b) => (a > b ? a : b)) + 1n;
  let level: Segment[] = [{ lo, hi, n: Math.max(out.sourceCount, out.copyCount) }];
  const maxRowsPerJob = opts.maxRowsPerJob ?? 1_000_000;
  const hashed = !isIntegerKey(columns);
  while (level.length > 0) {
    out.levels++;
    t0 = Date.now();
    const top = out.levels === 1;
    const next: Segment[] = [];
    await Promise.all(
      level.map(async (s) => {
        const range = { lo: s.lo.toString(), hi: s.hi.toString() };
        if (s.n <= opts.threshold) {
          const [p, d] = await Promise.all([sides.pg({ ...base, op: 'rows', ...range }), sides.duck({ ...base, op: 'rows', ...range })]);
          if (top) [out.sourceCount, out.copyCount] = [p.rows!.length, d.rows!.length];
          out.rowsDownloaded += p.rows!.length + d.rows!.length;
          out.diffs.push(...compareRows(p.rows!, d.rows!));
          return;
        }
        // Fan-out: at least `factor`, more when the segment holds many threshold-sized pieces,
        // so one scan of a big table already narrows each difference to a downloadable piece.
        // In hash space rows fall into sub-segments at random (about Poisson): with twice the
        // pieces (half a threshold each on average) nearly every differing one is small enough
        // to download at once, instead of half of them needing another scan.
        const fanout = BigInt(Math.min(MAX_FANOUT, Math.max(opts.factor, Math.ceil(((hashed ? 2 : 1) * s.n) / opts.threshold))));
        const width = (s.hi - s.lo + fanout - 1n) / fanout;
        // Hashed keys: one job per side. Every job of a split would scan the whole table (kh
        // has no index) and compute kh for every row; measured 1.6-2.2x the CPU with 2 jobs.
        const { source, copy } = await checksums(sides, base, s, width, hashed ? Infinity : maxRowsPerJob);
        out.segmentsChecked++;
        if (top) [out.sourceCount, out.copyCount] = [rowsIn(source), rowsIn(copy)];
        // Small differing sub-segments are downloaded together: one job per side instead of one per
        // sub-segment (100 scattered differences were 200 queue round trips, longer than the scan).
        const small: Array<{ b: bigint; n: number }> = [];
        const differs = (b: bigint, n: number) => (n <= opts.threshold ? small.push({ b, n }) : next.push(child(s, width, b, n)));
        for (const [b, mine] of source) {
          const o = copy.get(b);
          if (!o || o.n !== mine.n || o.h !== mine.h) differs(b, Math.max(Number(mine.n), Number(o?.n ?? 0)));
        }
        for (const [b, o] of copy) if (!source.has(b)) differs(b, Number(o.n));
        if (small.length > 0) await downloadBuckets(sides, base, s, width, small, out);
      }),
    );
    out.phaseMs.levels.push(Date.now() - t0);
    level = next;
  }
  t0 = Date.now();
  if (out.diffs.length > 0) await recheck(sides, base, out, opts.recheckDelayMs);
  out.phaseMs.recheck = Date.now() - t0;
  out.diffs = sortKeys(columns, out.diffs);
  return out;
}

/** Rows one batched download of sub-segments reads at most (its result crosses Redis). */
const DOWNLOAD_ROWS_PER_JOB = 65_536;

/**
 * `[key, md5]` of many small sub-segments of `s`, compared: one query per side for up to
 * DOWNLOAD_ROWS_PER_JOB rows (index range scans for an integer key, one scan for hashed keys).
 */
async function downloadBuckets(sides: Sides, base: { table: string; columns: SideColumn[] }, s: Segment, width: bigint, small: Array<{ b: bigint; n: number }>, out: HashOutcome): Promise<void> {
  const batches: bigint[][] = [];
  let rows = Infinity;
  for (const { b, n } of small) {
    if (rows + n > DOWNLOAD_ROWS_PER_JOB) {
      batches.push([]);
      rows = 0;
    }
    batches.at(-1)!.push(b);
    rows += n;
  }
  await Promise.all(
    batches.map(async (bs) => {
      const work = { ...base, op: 'rows' as const, lo: s.lo.toString(), hi: s.hi.toString(), width: width.toString(), buckets: bs.map(String) };
      const [p, d] = await Promise.all([sides.pg(work), sides.duck(work)]);
      out.rowsDownloaded += p.rows!.length + d.rows!.length;
      out.diffs.push(...compareRows(p.rows!, d.rows!));
    }),
  );
}

type Buckets = Map<bigint, { n: string; h: string }>;
const rowsIn = (b: Buckets) => [...b.values()].reduce((n, v) => n + Number(v.n), 0);

/**
 * Count + checksum of each `width`-wide sub-segment of `s`, on both sides. A segment of
 * more than `maxRowsPerJob` rows is cut into several side jobs (aligned on sub-segment
 * boundaries), so one big scan spreads over workers and cores instead of one query.
 */
async function checksums(sides: Sides, base: { table: string; columns: SideColumn[] }, s: Segment, width: bigint, maxRowsPerJob: number): Promise<{ source: Buckets; copy: Buckets }> {
  const buckets = Number((s.hi - s.lo + width - 1n) / width);
  const jobs = Math.min(buckets, Math.max(1, Math.ceil(s.n / maxRowsPerJob)));
  const per = BigInt(Math.ceil(buckets / jobs));
  const source: Buckets = new Map();
  const copy: Buckets = new Map();
  const parts: Array<Promise<void>> = [];
  for (let first = 0n; s.lo + first * width < s.hi; first += per) {
    const lo = s.lo + first * width;
    const hi = lo + per * width < s.hi ? lo + per * width : s.hi;
    const work = { ...base, op: 'checksum' as const, lo: lo.toString(), hi: hi.toString(), width: width.toString() };
    parts.push(
      Promise.all([sides.pg(work), sides.duck(work)]).then(([p, d]) => {
        for (const b of p.buckets!) source.set(first + BigInt(b.b), { n: b.n, h: b.h });
        for (const b of d.buckets!) copy.set(first + BigInt(b.b), { n: b.n, h: b.h });
      }),
    );
  }
  await Promise.all(parts);
  return { source, copy };
}

function child(parent: Segment, width: bigint, bucket: bigint, n: number): Segment {
  const lo = parent.lo + bucket * width;
  const hi = lo + width < parent.hi ? lo + width : parent.hi;
  return { lo, hi, n };
}

const LOOKUP_CHUNK = 10_000;
/** Most sub-segments one segment is cut into (bucket results travel through Redis). */
const MAX_FANOUT = 65_536;

/** Reads the differing keys again on both sides and keeps only those that still differ. */
async function recheck(sides: Sides, base: { table: string; columns: SideColumn[] }, out: HashOutcome, delayMs: number): Promise<void> {
  if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
  const still: DiffKey[] = [];
  for (let i = 0; i < out.diffs.length; i += LOOKUP_CHUNK) {
    const keys = out.diffs.slice(i, i + LOOKUP_CHUNK).map((d) => d.key);
    const work: SideWork = isIntegerKey(base.columns) ? { ...base, op: 'lookup', keys } : { ...base, op: 'lookup', keyTuples: keys.map((k) => parseKey(keyColumnsOf(base.columns), k)) };
    const [p, d] = await Promise.all([sides.pg(work), sides.duck(work)]);
    out.rowsDownloaded += p.rows!.length + d.rows!.length;
    still.push(...compareRows(p.rows!, d.rows!));
  }
  out.settledOnRecheck = out.diffs.length - still.length;
  out.diffs = still;
}
