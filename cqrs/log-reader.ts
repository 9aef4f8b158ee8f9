import type pg from 'pg';
import { BATCH_FIELDS, batchRowToEvent, type BatchRow } from './rows.js';
import type { Upcasters } from './upcasters.js';
import type { StoredEvent } from './types.js';

type Queryable = Pick<pg.ClientBase, 'query'>;

/**
 * Reads the global log without gaps. Positions are drawn before commit, so a
 * reader that trusted `position > checkpoint` would skip the events of a slow
 * transaction that commits after a later position was read (DESIGN rule 4).
 *
 * The outbox relay fences rows on their transaction id; a position checkpoint
 * needs a position fence instead. Every appender takes its transaction id (by
 * locking its stream row) before drawing positions. The reader notes the head
 * H together with a fresh transaction id N of its own (pg_current_xact_id(),
 * larger than every id assigned so far): a transaction holding a position at
 * or below H had its id before H was drawn, so below N. Once
 * pg_snapshot_xmin(pg_current_snapshot()) reaches N, all of them have
 * committed or rolled back: every position up to H is final, and gaps below it
 * (rolled-back appends) are permanent. The snapshot's own xmax is no bound
 * here: it is one past the latest *completed* id, and a running transaction
 * with a higher id is in no part of the snapshot. The safe position trails the
 * head by about the longest write transaction running at the time; one
 * transaction id is spent per advance of the fence, none while the log is idle.
 */
export class LogReader {
  private safe = 0;
  private head = 0;
  private candidate: { head: number; xid: bigint } | undefined;

  /** The highest position below which the log can no longer change, and the head seen. */
  async safePosition(db: Queryable): Promise<{ safe: number; head: number }> {
    if (!this.candidate) {
      const r = (
        await db.query<{ head: string | null; xid: string | null }>(
          // The id is taken only when the head moved past the fence (CASE evaluates one branch).
          `SELECT h.head::text AS head, CASE WHEN h.head > $1 THEN pg_current_xact_id()::text END AS xid
             FROM (SELECT max(position) AS head FROM concord_events) h`,
          [this.safe],
        )
      ).rows[0]!;
      this.head = Number(r.head ?? 0);
      if (r.xid === null) return { safe: this.safe, head: this.head };
      this.candidate = { head: this.head, xid: BigInt(r.xid) };
    }
    const xmin = BigInt((await db.query<{ xmin: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin')).rows[0]!.xmin);
    if (xmin >= this.candidate.xid) {
      this.safe = Math.max(this.safe, this.candidate.head);
      this.candidate = undefined;
    }
    return { safe: this.safe, head: this.head };
  }

  /**
   * Events in (after, upTo], by position, at most `limit`, upcast.
   *
   * The bound `upTo` is applied outside the LIMIT. With both bounds inside, the
   * plan depended on statistics: on a log written faster than autovacuum
   * analyzes it, the planner estimated few rows for the two-sided range and
   * scanned and sorted the whole (after, upTo] range for every batch
   * (quadratic over a catch-up). One-sided, it walks the primary key and stops
   * after `limit` rows. The result is the same: the first `limit` events after
   * `after`, those above `upTo` dropped, so a short batch still means every
   * event up to `upTo` was read.
   *
   * The batch comes back as one JSON document parsed once, rather than as rows
   * whose columns the driver parses one by one (`created_at` travels as epoch
   * milliseconds, the precision the driver's Date had).
   */
  static async read(db: Queryable, after: number, upTo: number, limit: number, upcasters: Upcasters): Promise<StoredEvent[]> {
    const { rows } = await db.query<{ batch: string }>(
      `SELECT coalesce(json_agg(json_build_array(${BATCH_FIELDS}) ORDER BY e.position), '[]')::text AS batch
         FROM (SELECT * FROM concord_events WHERE position > $1 ORDER BY position LIMIT $3) e WHERE e.position <= $2`,
      [after, upTo, limit],
    );
    return (JSON.parse(rows[0]!.batch) as BatchRow[]).map((r) => upcasters.upcast(batchRowToEvent(r)));
  }
}
