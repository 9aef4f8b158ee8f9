import type { SideWork } from '../../queues/validate.js';
import { pgTable, quoteIdent, rowHash64, type Dialect } from './normalize.js';

/** One sub-segment's count and checksum (unsigned 64-bit text), as the checksum op returns it. */
export interface Bucket {
  b: string;
  n: string;
  h: string;
}

interface Cached {
  n: string;
  /** xor of the rows' tuple fingerprints (ctid, xmin): changes whenever a row version changes. */
  fp: string;
  h: string;
}

type Query = (sql: string, params: unknown[]) => Promise<Array<Array<string | null>>>;

/**
 * PostgreSQL-side checksums remembered between runs, per sub-segment, with a fingerprint
 * that is about 8x cheaper to compute than the checksum: the xor of a hash of each row
 * version's `(ctid, xmin)`. PostgreSQL never changes a committed row version in place (an
 * UPDATE writes a new version, with the updating transaction's xmin, at a new ctid; a
 * DELETE removes it from the segment), so an equal count and fingerprint mean the same row
 * versions, hence the same checksum. A table rewrite (VACUUM FULL, CLUSTER, TRUNCATE, ALTER
 * TYPE) gets a new relfilenode and the column list is part of the key, so neither reuses
 * an entry; freezing reads xmin as 2, which only causes a recomputation. Only the sub-segments
 * whose fingerprint moved are hashed again (index range scans), so a check repeated on a
 * mostly unchanged table costs a fingerprint scan on this side. Bounded: least recently used
 * ranges are dropped past `maxBuckets` sub-segments.
 */
export class ChecksumCache {
  private readonly entries = new Map<string, Map<string, Cached>>();
  private size = 0;

  constructor(readonly maxBuckets: number) {}

  get(key: string): Map<string, Cached> | undefined {
    const e = this.entries.get(key);
    if (e) {
      this.entries.delete(key); // most recently used last
      this.entries.set(key, e);
    }
    return e;
  }

  set(key: string, e: Map<string, Cached>): void {
    const old = this.entries.get(key);
    if (old) {
      this.size -= old.size;
      this.entries.delete(key);
    }
    if (e.size > this.maxBuckets) return;
    this.entries.set(key, e);
    this.size += e.size;
    for (const [k, v] of this.entries) {
      if (this.size <= this.maxBuckets) break;
      this.entries.delete(k);
      this.size -= v.size;
    }
  }

  get buckets(): number {
    return this.size;
  }
}

const FINGERPRINT = 'hashtidextended(ctid, hashxidextended(xmin, 0))';
/** Above this share of moved sub-segments, one scan of the whole range is cheaper than range scans. */
const PARTIAL_SHARE = 0.25;

/**
 * The checksum op on the PostgreSQL side through the cache; undefined when the relation is
 * not a plain table (views and partitioned tables have no stable ctid), so the caller runs
 * the uncached query.
 */
export async function cachedChecksum(query: Query, cache: ChecksumCache, d: Dialect, w: SideWork): Promise<Bucket[] | undefined> {
  const [meta] = await query(`SELECT c.relkind::text, pg_relation_filenode(c.oid)::text FROM pg_class c WHERE c.oid = $1::regclass`, [pgTable(w.table)]);
  if (!meta || meta[0] !== 'r' || meta[1] === null) return undefined;
  const key = JSON.stringify([w.table, meta[1], w.columns, w.lo, w.hi, w.width]);
  const table = pgTable(w.table);
  const keyCol = quoteIdent(w.columns.find((c) => c.isKey)!.name);
  const hash = rowHash64(d, w.columns);
  const params = [w.lo, w.hi, w.width];
  const full = async () => {
    const rows = await query(
      `SELECT b::text, count(*)::text, bit_xor(h)::text, bit_xor(f)::text FROM (
         SELECT (${keyCol}::bigint - $1::bigint) / $3::bigint AS b, ${hash} AS h, ${FINGERPRINT} AS f
           FROM ${table} WHERE ${keyCol} >= $1::bigint AND ${keyCol} < $2::bigint) s GROUP BY b`,
      params,
    );
    return new Map(rows.map((r) => [r[0]!, { n: r[1]!, h: unsigned(r[2]!), fp: r[3]! }]));
  };
  const cached = cache.get(key);
  let fresh: Map<string, Cached>;
  if (!cached) {
    fresh = await full();
  } else {
    // First the whole range in one aggregate (xor is associative): on an unchanged range this
    // is the only scan, without grouping.
    const [whole] = await query(`SELECT count(*)::text, coalesce(bit_xor(${FINGERPRINT}), 0)::text FROM ${table} WHERE ${keyCol} >= $1::bigint AND ${keyCol} < $2::bigint`, [w.lo, w.hi]);
    let n = 0n;
    let fp = 0n;
    for (const c of cached.values()) {
      n += BigInt(c.n);
      fp ^= BigInt(c.fp);
    }
    if (whole && BigInt(whole[0]!) === n && BigInt.asUintN(64, BigInt(whole[1]!)) === BigInt.asUintN(64, fp)) return toBuckets(cached);
    const fps = await query(
      `SELECT b::text, count(*)::text, bit_xor(f)::text FROM (
         SELECT (${keyCol}::bigint - $1::bigint) / $3::bigint AS b, ${FINGERPRINT} AS f
           FROM ${table} WHERE ${keyCol} >= $1::bigint AND ${keyCol} < $2::bigint) s GROUP BY b`,
      params,
    );
    const moved = fps.filter((r) => {
      const c = cached.get(r[0]!);
      return !c || c.n !== r[1] || c.fp !== r[2];
    });
    if (moved.length === 0 && fps.length === cached.size) return toBuckets(cached); // a change came and went between the two scans
    if (moved.length > PARTIAL_SHARE * fps.length) {
      fresh = await full();
    } else {
      // Only the moved sub-segments, each by an index range scan; sub-segments now empty drop out.
      fresh = new Map(fps.map((r) => [r[0]!, cached.get(r[0]!)!]));
      const rows = await query(
        `SELECT c.b::text, count(*)::text, bit_xor(s.h)::text, bit_xor(s.f)::text
           FROM unnest($4::bigint[]) AS c(b) CROSS JOIN LATERAL (
             SELECT ${hash} AS h, ${FINGERPRINT} AS f FROM ${table}
              WHERE ${keyCol} >= $1::bigint + c.b * $3::bigint AND ${keyCol} < least($1::bigint + (c.b + 1) * $3::bigint, $2::bigint)) s
          GROUP BY c.b`,
        [...params, moved.map((r) => r[0]!)],
      );
      for (const r of moved) fresh.delete(r[0]!);
      for (const r of rows) fresh.set(r[0]!, { n: r[1]!, h: unsigned(r[2]!), fp: r[3]! });
    }
  }
  cache.set(key, fresh);
  return toBuckets(fresh);
}

const unsigned = (h: string) => BigInt.asUintN(64, BigInt(h)).toString();
const toBuckets = (m: Map<string, Cached>): Bucket[] => [...m].map(([b, c]) => ({ b, n: c.n, h: c.h }));
