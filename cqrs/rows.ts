import type { StoredEvent } from './types.js';

export interface EventRow {
  position: string;
  stream_id: string;
  version: string;
  event_id: string;
  event_type: string;
  schema_version: number;
  data: unknown;
  metadata: Record<string, unknown>;
  created_at: Date;
}
export const EVENT_COLUMNS = 'position::text AS position, stream_id, version::text AS version, event_id, event_type, schema_version, data, metadata, created_at';

export function rowToEvent(r: EventRow): StoredEvent {
  return {
    id: r.event_id,
    streamId: r.stream_id,
    version: Number(r.version),
    position: Number(r.position),
    type: r.event_type,
    schemaVersion: r.schema_version,
    data: r.data,
    metadata: r.metadata,
    time: r.created_at,
  };
}


/** An event as one JSON array (LogReader.read): the fields of BATCH_FIELDS, in order. */
export type BatchRow = [position: number, streamId: string, version: number, eventId: string, type: string, schemaVersion: number, data: unknown, metadata: Record<string, unknown>, timeMs: number];
export const BATCH_FIELDS = 'e.position, e.stream_id, e.version, e.event_id, e.event_type, e.schema_version, e.data, e.metadata, floor(extract(epoch FROM e.created_at) * 1000)';

export function batchRowToEvent(r: BatchRow): StoredEvent {
  return { id: r[3], streamId: r[1], version: r[2], position: r[0], type: r[4], schemaVersion: r[5], data: r[6], metadata: r[7], time: new Date(r[8]) };
}
