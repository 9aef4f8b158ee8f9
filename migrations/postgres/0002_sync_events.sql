-- File synchronisation events reported by the file service (chunker, metadata).
CREATE TABLE IF NOT EXISTS sync_events (
  id               uuid PRIMARY KEY,
  -- Recording order: per file, events are processed in this order.
  seq              bigint GENERATED ALWAYS AS IDENTITY,
  file_id          uuid NOT NULL,
  event_type       text NOT NULL CHECK (event_type IN ('upload', 'delete', 'update')),
  created_at       timestamptz NOT NULL DEFAULT now(),
  processed        boolean NOT NULL DEFAULT false,
  processed_at     timestamptz,
  metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Optional Idempotency-Key of the POST that created it, with a hash of its body.
  idempotency_key  text UNIQUE,
  request_hash     text
);
CREATE INDEX IF NOT EXISTS sync_events_created ON sync_events (created_at DESC, id);
CREATE INDEX IF NOT EXISTS sync_events_file ON sync_events (file_id, seq);
CREATE INDEX IF NOT EXISTS sync_events_type_created ON sync_events (event_type, created_at DESC);
CREATE INDEX IF NOT EXISTS sync_events_pending ON sync_events (seq) WHERE NOT processed;

-- What processing has learnt about each file, for the rules in the README.
CREATE TABLE IF NOT EXISTS sync_files (
  file_id        uuid PRIMARY KEY,
  state          text NOT NULL CHECK (state IN ('present', 'deleted')),
  last_event_id  uuid NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
