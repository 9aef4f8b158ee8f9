/** Workload pieces of the CDC benchmark (scripts/bench/cdc.ts); not a benchmark of its own. */
import type pg from 'pg';

export const BENCH_TABLE = 'bench_cdc';

export async function createBenchTable(db: pg.Pool): Promise<void> {
  await db.query(`CREATE TABLE IF NOT EXISTS ${BENCH_TABLE} (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), at timestamptz NOT NULL, flag boolean)`);
}

/**
 * Transactions of 1..1000 row changes over a contiguous live key range [lo, hi):
 * inserts append at hi, deletes take from lo, updates hit keys inside the range, so
 * every statement touches exactly the rows it is asked to (a known change count).
 */
export class Workload {
  private lo = 1;
  private hi = 1;
  changes = 0;
  transactions = 0;

  /**
   * One transaction of `n` changes; returns the WAL insert position just before its
   * commit: its commit LSN is at or after it, every earlier commit before it.
   */
  async transaction(client: pg.PoolClient, n: number, rand: () => number): Promise<string> {
    const live = this.hi - this.lo;
    const r = rand();
    const op = live < 2 * n || r < 0.5 ? 'insert' : r < 0.8 ? 'update' : 'delete';
    await client.query('BEGIN');
    if (op === 'insert') {
      await client.query(
        `INSERT INTO ${BENCH_TABLE} SELECT g, 'name ' || g, g * 0.01, now(), g % 2 = 0 FROM generate_series($1::bigint, $2::bigint) g`,
        [this.hi, this.hi + n - 1],
      );
      this.hi += n;
    } else if (op === 'update') {
      const from = this.lo + Math.floor(rand() * (live - n));
      await client.query(`UPDATE ${BENCH_TABLE} SET amount = amount + 1, name = name || '+', at = now() WHERE id BETWEEN $1 AND $2`, [from, from + n - 1]);
    } else {
      await client.query(`DELETE FROM ${BENCH_TABLE} WHERE id BETWEEN $1 AND $2`, [this.lo, this.lo + n - 1]);
      this.lo += n;
    }
    const { rows } = await client.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await client.query('COMMIT');
    this.changes += n;
    this.transactions++;
    return rows[0]!.lsn;
  }
}

/** A seeded PRNG (mulberry32), so runs offer the same workload. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
