import { createHash, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import { defineQueue } from './definition.js';

/**
 * The sync-events capability's contract: the API records events in `sync_events`
 * and wakes the processor through this queue; the processor marks them processed.
 * A job carries no events, only "look at the table": the table is the truth.
 */
export const syncEventsQueue = defineQueue({
  name: 'sync-events.process',
  description: 'wake-ups of the sync-event processor (on insert, and a periodic sweep)',
  schema: z.object({ trigger: z.enum(['insert', 'sweep']) }),
  jobOptions: { attempts: 10, backoff: { type: 'exponential', delay: 500, jitter: 0.5 }, removeOnComplete: { count: 100 } },
});

export const SYNC_EVENT_TYPES = ['upload', 'delete', 'update'] as const;
export type SyncEventType = (typeof SYNC_EVENT_TYPES)[number];

export interface SyncEventRow {
  event_id: string;
  file_id: string;
  event_type: SyncEventType;
  created_at: string;
  processed: boolean;
  processed_at: string | null;
  metadata: Record<string, unknown>;
}

const COLUMNS = `id AS event_id, file_id, event_type, created_at, processed, processed_at, metadata`;

export interface NewSyncEvent {
  file_id: string;
  event_type: SyncEventType;
  metadata: Record<string, unknown>;
}

/**
 * Records an event. With an idempotency key, a repeat of the same request returns
 * the first event (`replayed: true`); the same key with another body is a conflict.
 */
export async function recordSyncEvent(
  db: pg.Pool,
  event: NewSyncEvent,
  idempotencyKey?: string,
): Promise<{ event: SyncEventRow; replayed: boolean } | { conflict: true }> {
  // Only a keyed request needs its body hash (to tell a replay from a conflict).
  const hash = idempotencyKey ? createHash('sha256').update(JSON.stringify([event.file_id, event.event_type, event.metadata])).digest('hex') : null;
  // A named statement: planned once per connection, not on every request.
  const inserted = await db.query<SyncEventRow>({
    name: 'concord-sync-events-insert',
    text: `INSERT INTO sync_events (id, file_id, event_type, metadata, idempotency_key, request_hash)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING ${COLUMNS}`,
    values: [randomUUID(), event.file_id, event.event_type, JSON.stringify(event.metadata), idempotencyKey ?? null, hash],
  });
  if (inserted.rows[0]) return { event: inserted.rows[0], replayed: false };
  const first = await db.query<SyncEventRow & { request_hash: string }>(`SELECT ${COLUMNS}, request_hash FROM sync_events WHERE idempotency_key = $1`, [idempotencyKey]);
  const row = first.rows[0]!;
  if (row.request_hash !== hash) return { conflict: true };
  const { request_hash: _hash, ...rest } = row;
  return { event: rest, replayed: true };
}

export async function getSyncEvent(db: pg.Pool, id: string): Promise<SyncEventRow | undefined> {
  return (await db.query<SyncEventRow>(`SELECT ${COLUMNS} FROM sync_events WHERE id = $1`, [id])).rows[0];
}

export interface SyncEventFilter {
  limit: number;
  offset: number;
  event_type?: SyncEventType | undefined;
  processed?: boolean | undefined;
  file_id?: string | undefined;
}

/** Newest first, with the total count of the filter. */
export async function listSyncEvents(db: pg.Pool, f: SyncEventFilter): Promise<{ total: number; events: SyncEventRow[] }> {
  const where = `($1::text IS NULL OR event_type = $1) AND ($2::boolean IS NULL OR processed = $2) AND ($3::uuid IS NULL OR file_id = $3)`;
  const args = [f.event_type ?? null, f.processed ?? null, f.file_id ?? null];
  const [total, events] = await Promise.all([
    db.query<{ n: string }>(`SELECT count(*) AS n FROM sync_events WHERE ${where}`, args),
    db.query<SyncEventRow>(`SELECT ${COLUMNS} FROM sync_events WHERE ${where} ORDER BY created_at DESC, seq DESC LIMIT $4 OFFSET $5`, [...args, f.limit, f.offset]),
  ]);
  return { total: Number(total.rows[0]!.n), events: events.rows };
}
