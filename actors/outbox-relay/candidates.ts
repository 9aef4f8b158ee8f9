import type pg from 'pg';
import { cmpSeq, eligible, sendOrder, type PendingEvent } from './batch.js';

/** A pending event of a locked partition, and whether it may be sent now. */
export interface ReadEvent extends PendingEvent {
  /**
   * Due (not in retry backoff) and below the snapshot fence. A pending event that is
   * not ready is still read: it holds back the later events of its aggregate.
   */
  ready: boolean;
}

const COLUMNS = `o.id, o.seq::text AS seq, o.seq AS seq_n, o.aggregate_id, o.aggregate_type, o.topic, o.event_type, o.payload::text AS payload_json, o.headers,
                 o.priority, o.attempts, o.max_attempts, (o.next_attempt_at <= now() AND o.xid < $2::xid8) AS ready`;

/**
 * Pending events of the locked partitions in send order (priority, then seq), at
 * most `limit`. One index-ordered branch per partition under a Merge Append that
 * stops at LIMIT: the reads follow the batch size, not the backlog. The statement
 * is prepared per partition count, so it is planned once per connection.
 */
export async function readCandidates(client: pg.ClientBase, parts: readonly number[], fence: string, limit: number, exclude: readonly string[] = []): Promise<ReadEvent[]> {
  const without = exclude.length > 0 ? ' AND o.aggregate_id <> ALL($4::text[])' : '';
  const branches = parts.map(
    (_, k) => `(SELECT ${COLUMNS} FROM concord_outbox o WHERE o.part = ($1::smallint[])[${k + 1}] AND o.status = 'pending'${without} ORDER BY o.priority DESC, o.seq)`,
  );
  const res = await client.query<ReadEvent>({
    name: `concord-outbox-candidates-${parts.length}${without ? '-excluding' : ''}`,
    text: `SELECT * FROM (${branches.join(' UNION ALL ')}) c ORDER BY c.priority DESC, c.seq_n LIMIT $3`,
    values: without ? [parts, fence, limit, exclude] : [parts, fence, limit],
  });
  return res.rows;
}

/**
 * The events to send from the locked partitions, in send order. When held-back
 * aggregates (an event in backoff, dead, or above the fence, with later events
 * behind it) filled most of the read, the read is done once more without them: a
 * stuck aggregate with a long tail of events must not starve the other aggregates
 * of its partitions.
 */
export async function sendable(client: pg.ClientBase, parts: readonly number[], fence: string, limit: number): Promise<PendingEvent[]> {
  let read = await readCandidates(client, parts, fence, limit);
  let batch = await sendableOf(client, parts, read, limit);
  if (read.length >= limit && batch.length < limit / 2) {
    const sent = new Set(batch.map((e) => e.id));
    const held = [...new Set(read.filter((e) => !sent.has(e.id)).map((e) => e.aggregate_id))];
    read = await readCandidates(client, parts, fence, limit, held);
    batch = await sendableOf(client, parts, read, limit);
  }
  return batch;
}

async function sendableOf(client: pg.ClientBase, parts: readonly number[], read: readonly ReadEvent[], limit: number): Promise<PendingEvent[]> {
  const candidates = read.filter((c) => c.ready);
  if (candidates.length === 0) return [];
  return sendOrder(eligible(candidates, await unpublishedByAggregate(client, parts, read, limit)));
}

/**
 * Each candidate aggregate's unpublished seqs, ascending, for `eligible()`: an event
 * is sent only when every earlier unpublished event of its aggregate is sent with it.
 *
 * Fast path (the usual case): every earlier pending event of an aggregate is already
 * among the rows read, because rows come in (priority, seq) order and, unless the
 * LIMIT cut the read, every pending row of the partitions was read. Rows that are not
 * ready stay in the lists as blockers. Dead events are not pending, so they come from
 * their own small partial index (an insert never touches it).
 *
 * When the LIMIT cut the read and a pending row of lower priority exists in these
 * partitions, an earlier lower-priority event may have been cut: then each
 * aggregate's unpublished seqs are read from the table instead (slow path).
 */
export async function unpublishedByAggregate(client: pg.ClientBase, parts: readonly number[], read: readonly ReadEvent[], limit: number): Promise<Map<string, string[]>> {
  const aggregates = [...new Set(read.filter((c) => c.ready).map((c) => c.aggregate_id))];
  if (read.length >= limit) {
    const maxPriority = Math.max(...read.map((c) => c.priority));
    const lower = await client.query<{ lower: boolean }>({
      name: 'concord-outbox-lower-priority',
      text: `SELECT EXISTS (SELECT 1 FROM concord_outbox WHERE part = ANY($1::smallint[]) AND status = 'pending' AND priority < $2) AS lower`,
      values: [parts, maxPriority],
    });
    if (lower.rows[0]!.lower) return unpublishedFromTable(client, aggregates, read);
  }
  const lists = new Map<string, string[]>();
  for (const c of read) (lists.get(c.aggregate_id) ?? lists.set(c.aggregate_id, []).get(c.aggregate_id)!).push(c.seq);
  for (const list of lists.values()) list.sort(cmpSeq);
  const dead = await client.query<{ aggregate_id: string; seq: string }>({
    name: 'concord-outbox-first-dead',
    text: `SELECT a.aggregate_id, d.seq::text AS seq FROM unnest($1::text[]) AS a(aggregate_id) CROSS JOIN LATERAL (
             SELECT o.seq FROM concord_outbox o WHERE o.aggregate_id = a.aggregate_id AND o.status = 'dead' ORDER BY o.seq LIMIT 1) d`,
    values: [aggregates],
  });
  for (const { aggregate_id, seq } of dead.rows) {
    // A dead event is never a candidate, so placing its seq in the list stops every later one.
    const list = lists.get(aggregate_id)!;
    list.push(seq);
    list.sort(cmpSeq);
  }
  return lists;
}

async function unpublishedFromTable(client: pg.ClientBase, aggregates: readonly string[], read: readonly ReadEvent[]): Promise<Map<string, string[]>> {
  const maxSeq = read.reduce((m, c) => (cmpSeq(c.seq, m) > 0 ? c.seq : m), '0');
  const res = await client.query<{ aggregate_id: string; seqs: string[] }>({
    name: 'concord-outbox-unpublished',
    // Per aggregate: one range of concord_outbox_unpublished_by_aggregate.
    text: `SELECT a.aggregate_id, u.seqs FROM unnest($1::text[]) AS a(aggregate_id) CROSS JOIN LATERAL (
             SELECT array_agg(o.seq::text ORDER BY o.seq) AS seqs FROM concord_outbox o
              WHERE o.aggregate_id = a.aggregate_id AND o.status <> 'published' AND o.seq <= $2::bigint) u
            WHERE u.seqs IS NOT NULL`,
    values: [aggregates, maxSeq],
  });
  return new Map(res.rows.map((r) => [r.aggregate_id, r.seqs]));
}
