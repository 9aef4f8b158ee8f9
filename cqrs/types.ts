/** JSON as stored in jsonb. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/**
 * Optimistic concurrency for an append:
 * - a number: the stream must be at exactly this version (0 = no events yet);
 * - `no_stream`: the stream must have no events;
 * - `stream_exists`: the stream must have at least one event;
 * - `any`: no check.
 */
export type ExpectedVersion = number | 'no_stream' | 'stream_exists' | 'any';

/** An event to append. `id` defaults to a random UUID; give one to make retries idempotent. */
export interface NewEvent<T = unknown> {
  id?: string;
  type: string;
  /** The shape of `data`. @defaultValue 1 */
  schemaVersion?: number;
  data: T;
  metadata?: Record<string, unknown>;
}

/** An event as read back, after upcasting. */
export interface StoredEvent<T = unknown> {
  id: string;
  streamId: string;
  /** 1 for the stream's first event. */
  version: number;
  /** Global position in the log. */
  position: number;
  type: string;
  schemaVersion: number;
  data: T;
  metadata: Record<string, unknown>;
  time: Date;
}

export interface AppendResult {
  streamId: string;
  /** The stream's version after the append. */
  version: number;
  /** The events this call stored, in order (duplicates of stored ids are left out). */
  events: StoredEvent[];
  /** True when every event id was already stored in this stream: nothing was written. */
  idempotent: boolean;
}
