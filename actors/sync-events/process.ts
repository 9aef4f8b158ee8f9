import type pg from 'pg';
import { enqueueMany, type OutboxEvent } from '../../queues/index.js';
import { applyEvent, type FileState } from './rules.js';

interface Pending {
  id: string;
  file_id: string;
  event_type: 'upload' | 'update' | 'delete';
}

export interface ProcessOptions {
  batchSize: number;
  /** Topic for the domain events written to the outbox, or undefined when the outbox is off. */
  outboxTopic: string | undefined;
}

/**
 * Processes the oldest pending events in one transaction: per file in recording
 * order, through the rules, then marks them processed, records each file's state
 * and writes the domain events to the outbox. A worker dying half-way rolls all
 * of it back, so each event is processed exactly once.
 */
export async function processBatch(db: pg.Pool, opts: ProcessOptions): Promise<{ processed: number; anomalies: number }> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const { rows: events } = await client.query<Pending>(
      `SELECT id, file_id, event_type FROM sync_events WHERE NOT processed ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [opts.batchSize],
    );
    if (events.length === 0) {
      await client.query('COMMIT');
      return { processed: 0, anomalies: 0 };
    }
    const files = [...new Set(events.map((e) => e.file_id))];
    const { rows: known } = await client.query<{ file_id: string; state: 'present' | 'deleted' }>(
      'SELECT file_id, state FROM sync_files WHERE file_id = ANY($1::uuid[]) FOR UPDATE',
      [files],
    );
    const state = new Map<string, FileState>(known.map((k) => [k.file_id, k.state]));
    const last = new Map<string, string>();
    const extras: string[] = [];
    let anomalies = 0;
    for (const e of events) {
      const before = state.get(e.file_id) ?? 'unknown';
      const { next, anomaly } = applyEvent(before, e.event_type);
      state.set(e.file_id, next);
      last.set(e.file_id, e.id);
      if (anomaly) anomalies++;
      extras.push(JSON.stringify(anomaly ? { anomaly, file_state_before: before } : {}));
    }
    await client.query(
      `UPDATE sync_events s SET processed = true, processed_at = now(), metadata = s.metadata || u.extra::jsonb
         FROM unnest($1::uuid[], $2::text[]) AS u(id, extra) WHERE s.id = u.id`,
      [events.map((e) => e.id), extras],
    );
    const changed = [...last.keys()].filter((f) => state.get(f) !== 'unknown');
    if (changed.length > 0) {
      await client.query(
        `INSERT INTO sync_files (file_id, state, last_event_id)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[])
         ON CONFLICT (file_id) DO UPDATE SET state = excluded.state, last_event_id = excluded.last_event_id, updated_at = now()`,
        [changed, changed.map((f) => state.get(f)), changed.map((f) => last.get(f))],
      );
    }
    if (opts.outboxTopic) {
      const topic = opts.outboxTopic;
      const domainEvents: OutboxEvent[] = events.map((e, i) => ({
        topic,
        eventType: `file.${e.event_type}`,
        aggregateId: e.file_id,
        aggregateType: 'file',
        payload: { event_id: e.id, file_id: e.file_id, event_type: e.event_type, ...(JSON.parse(extras[i]!) as object) },
      }));
      await enqueueMany(client, domainEvents);
    }
    await client.query('COMMIT');
    return { processed: events.length, anomalies };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
