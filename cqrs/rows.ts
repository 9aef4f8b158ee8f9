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

