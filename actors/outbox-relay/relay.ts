import type pg from 'pg';
import type { Logger } from '../../runtime/index.js';
import { errorMessage } from '../../runtime/index.js';
import { BrokerUnavailableError, type Broker, type OutboundMessage } from './broker.js';
import { toMessage, type PendingEvent } from './batch.js';
import { sendable } from './candidates.js';
import { retryDelayMs, type OutboxConfig } from './config.js';
import type { OutboxMetrics } from './metrics.js';

const PARTITIONS = 64;
/** Partitions one batch locks: with a few relay loops every partition is being served. */
const PARTITIONS_PER_BATCH = 16;
/** Advisory lock class of outbox partitions (arbitrary, fixed: "obox"). */
const LOCK_CLASS = 0x6f626f78;

export interface BatchResult {
  published: number;
  failed: number;
  dead: number;
  /** The broker could not be reached: nothing was counted against the events. */
  unavailable: boolean;
}

/**
 * One relay batch in one transaction: lock a set of partitions (advisory locks,
 * so other relays skip them and an aggregate is worked by one relay at a time),
 * read their due events below the snapshot fence, publish the eligible ones, and
 * mark them published only after the broker acknowledged them. Rolled back, or
 * killed, the transaction leaves everything pending: at most one batch repeats.
 */
export async function relayBatch(client: pg.ClientBase, broker: Broker, config: OutboxConfig, metrics: OutboxMetrics, log: Logger, startPart: number): Promise<BatchResult> {
  const result: BatchResult = { published: 0, failed: 0, dead: 0, unavailable: false };
  await client.query('BEGIN');
  try {
    // The bounded plans below are index scans; without fresh statistics (a burst into the table
    // outruns autovacuum's ANALYZE) the planner picks bitmap scans that read every pending row.
    await client.query('SET LOCAL enable_bitmapscan = off');
    // The fence first, before this transaction takes an xid of its own.
    const fence = (await client.query<{ fence: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS fence')).rows[0]!.fence;
    const parts = (
      await client.query<{ part: number }>(
        `SELECT part FROM (SELECT (g + $1) % ${PARTITIONS} AS part FROM generate_series(0, ${PARTITIONS - 1}) AS g) p
          WHERE pg_try_advisory_xact_lock($2, part) LIMIT ${PARTITIONS_PER_BATCH}`,
        [startPart, LOCK_CLASS],
      )
    ).rows.map((r) => r.part);
    if (parts.length === 0) {
      await client.query('COMMIT');
      return result;
    }
    const batch = await sendable(client, parts, fence, config.batchSize);
    if (batch.length === 0) {
      await client.query('COMMIT');
      return result;
    }

    let outcomes;
    try {
      outcomes = await broker.send(batch.map(toMessage));
    } catch (err) {
      if (!(err instanceof BrokerUnavailableError)) throw err;
      await client.query('ROLLBACK');
      metrics.failures.inc({ kind: 'broker_unavailable' });
      log.warn({ err: errorMessage(err), events: batch.length }, 'broker unavailable; events stay pending');
      return { ...result, unavailable: true };
    }

    const published: string[] = [];
    const failed: Array<{ e: PendingEvent; error: string }> = [];
    batch.forEach((e, i) => {
      const o = outcomes[i]!;
      if (o.ok) published.push(e.id);
      else if (!o.retriable) failed.push({ e, error: o.error });
      // retriable (held back behind a failed event of its aggregate): untouched, stays due
    });
    if (published.length > 0) {
      await client.query(`UPDATE concord_outbox SET status = 'published', published_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = ANY($1::uuid[])`, [published]);
    }
    const dead = failed.filter(({ e }) => e.attempts + 1 >= (e.max_attempts ?? config.deadLetterThreshold));
    if (dead.length > 0) {
      const dlq = await broker.send(dead.map(({ e, error }) => deadLetter(e, error, config.deadLetterTopic)));
      const notParked = dlq.filter((o) => !o.ok);
      if (notParked.length > 0) throw new Error(`dead-letter topic refused ${notParked.length} event(s): ${notParked.map((o) => (o.ok ? '' : o.error)).join('; ')}`);
    }
    for (const { e, error } of failed) {
      const isDead = dead.some((d) => d.e.id === e.id);
      await client.query(
        `UPDATE concord_outbox SET attempts = attempts + 1, last_error = $2, status = $3, next_attempt_at = now() + ($4::int * interval '1 millisecond') WHERE id = $1`,
        [e.id, error, isDead ? 'dead' : 'pending', retryDelayMs(config, e.attempts + 1)],
      );
      log.warn({ eventId: e.id, aggregateId: e.aggregate_id, attempts: e.attempts + 1, dead: isDead, err: error }, isDead ? 'event dead-lettered' : 'event delivery failed; will retry');
    }
    await client.query('COMMIT');
    result.published = published.length;
    result.failed = failed.length;
    result.dead = dead.length;
    metrics.published.inc(published.length);
    if (failed.length > 0) metrics.failures.inc({ kind: 'event' }, failed.length);
    if (dead.length > 0) metrics.deadLettered.inc(dead.length);
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The dead-letter record: the event and why it died; a payload too large to park is left in the table. */
function deadLetter(e: PendingEvent, error: string, topic: string): OutboundMessage {
  const keep = Buffer.byteLength(e.payload_json) <= 512 * 1024;
  return {
    eventId: e.id,
    topic,
    key: e.aggregate_id,
    eventType: e.event_type,
    aggregateType: e.aggregate_type,
    payload: { event_id: e.id, topic: e.topic, event_type: e.event_type, aggregate_id: e.aggregate_id, aggregate_type: e.aggregate_type, attempts: e.attempts + 1, reason: error, payload: keep ? (JSON.parse(e.payload_json) as unknown) : null, payload_omitted: !keep },
    headers: { ...e.headers, original_topic: e.topic, dead_reason: error.slice(0, 500) },
  };
}

export { PARTITIONS, PARTITIONS_PER_BATCH };
