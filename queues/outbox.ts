import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import { ValidationError } from '../runtime/errors.js';
import { zodIssues } from '../runtime/validation.js';

/** Anything that runs a query inside the caller's transaction: a pg Client or PoolClient. */
export type Queryable = Pick<pg.ClientBase, 'query'>;

export const NOTIFY_CHANNEL = 'concord_outbox';

const TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;

export const outboxEventSchema = z.object({
  topic: z.string().regex(TOPIC, 'letters, digits, . _ - (at most 249), as Kafka topics'),
  eventType: z.string().min(1).max(200),
  payload: z.unknown().refine((v) => v !== undefined, 'required'),
  aggregateId: z.string().min(1).max(500),
  aggregateType: z.string().min(1).max(200),
  /** Higher goes first across aggregates; never reorders one aggregate. @defaultValue 0 */
  priority: z.number().int().min(-100).max(100).default(0),
  /** Failures before this event is dead-lettered; defaults to the relay's threshold. */
  maxDeliveryAttempts: z.number().int().positive().max(1000).optional(),
  headers: z.record(z.string(), z.string()).default({}),
});

export type OutboxEvent = z.input<typeof outboxEventSchema>;

/**
 * Records events in the caller's open transaction, so they commit or roll back
 * with the business data. Returns the event ids (UUIDs), in order. The relay
 * is woken by NOTIFY at commit.
 *
 * The transaction id is taken first, in its own statement, so it is assigned
 * before the events' sequence numbers: the relay's snapshot fence relies on it.
 */
export async function enqueueMany(client: Queryable, events: readonly OutboxEvent[]): Promise<string[]> {
  if (events.length === 0) return [];
  const parsed = events.map((e, i) => {
    const r = outboxEventSchema.safeParse(e);
    if (!r.success) throw new ValidationError(`outbox event ${i} is invalid`, zodIssues(r.error, events.length > 1 ? `events.${i}` : undefined));
    return r.data;
  });
  const ids = parsed.map(() => randomUUID());
  await client.query('SELECT pg_current_xact_id()');
  await client.query(
    `INSERT INTO concord_outbox (id, xid, aggregate_type, aggregate_id, topic, event_type, payload, headers, priority, max_attempts)
     SELECT u.id, pg_current_xact_id(), u.aggregate_type, u.aggregate_id, u.topic, u.event_type, u.payload::jsonb, u.headers::jsonb, u.priority, u.max_attempts
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::smallint[], $9::int[])
            WITH ORDINALITY AS u(id, aggregate_type, aggregate_id, topic, event_type, payload, headers, priority, max_attempts, n)
      ORDER BY u.n`,
    [
      ids,
      parsed.map((e) => e.aggregateType),
      parsed.map((e) => e.aggregateId),
      parsed.map((e) => e.topic),
      parsed.map((e) => e.eventType),
      parsed.map((e) => JSON.stringify(e.payload)),
      parsed.map((e) => JSON.stringify(e.headers)),
      parsed.map((e) => e.priority),
      parsed.map((e) => e.maxDeliveryAttempts ?? null),
    ],
  );
  await client.query(`SELECT pg_notify('${NOTIFY_CHANNEL}', '')`);
  return ids;
}

/** One event; see enqueueMany. */
export async function enqueue(client: Queryable, event: OutboxEvent): Promise<string> {
  const [id] = await enqueueMany(client, [event]);
  return id!;
}

export const outbox = { enqueue, enqueueMany };
