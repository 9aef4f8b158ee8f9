-- Event store (cqrs/): streams of events with a per-stream version and a global
-- position, snapshots, and the bookkeeping of projections.

-- One row per stream: its current version. Appenders lock it (SELECT ... FOR UPDATE),
-- so one stream's events are written one transaction at a time and their global
-- positions follow their versions.
CREATE TABLE IF NOT EXISTS concord_streams (
  stream_id   text PRIMARY KEY,
  version     bigint NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS concord_events (
  -- Assigned at insert, before commit: readers of the global log fence on the
  -- snapshot xmin (see cqrs/log-reader.ts) instead of trusting position order.
  -- The fence needs positions drawn in time order: keep the identity's CACHE at 1.
  position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream_id       text NOT NULL REFERENCES concord_streams (stream_id),
  version         bigint NOT NULL CHECK (version > 0),
  event_id        uuid NOT NULL,
  event_type      text NOT NULL,
  schema_version  integer NOT NULL DEFAULT 1 CHECK (schema_version > 0),
  data            jsonb NOT NULL,
  metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT concord_events_stream_version UNIQUE (stream_id, version),
  -- Appending the same event id twice stores it once.
  CONSTRAINT concord_events_event_id UNIQUE (event_id)
);

-- Latest snapshot per stream; older ones are overwritten.
CREATE TABLE IF NOT EXISTS concord_snapshots (
  stream_id         text PRIMARY KEY REFERENCES concord_streams (stream_id),
  aggregate_type    text NOT NULL,
  -- The aggregate's snapshot shape; a snapshot of another shape is ignored on load.
  snapshot_version  integer NOT NULL,
  version           bigint NOT NULL,
  state             jsonb NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per projection: its checkpoint (the last global position applied) and state.
CREATE TABLE IF NOT EXISTS concord_projections (
  name              text PRIMARY KEY,
  checkpoint        bigint NOT NULL DEFAULT 0,
  status            text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'rebuilding', 'stopped')),
  failure_policy    text NOT NULL DEFAULT 'stop' CHECK (failure_policy IN ('stop', 'skip')),
  -- Whether the projection can reset its read model to a position other than 0.
  partial_reset     boolean NOT NULL DEFAULT false,
  -- A requested rebuild waits here until the projection's runner takes it (HTTP or library).
  rebuild_requested_from bigint,
  -- While rebuilding: the head when the rebuild started; the rebuild ends past it.
  rebuild_target    bigint,
  rebuild_started_at timestamptz,
  last_error        text,
  events_applied    bigint NOT NULL DEFAULT 0,
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS concord_projection_dead_letters (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  projection  text NOT NULL,
  position    bigint NOT NULL,
  event_id    uuid NOT NULL,
  stream_id   text NOT NULL,
  event_type  text NOT NULL,
  reason      text NOT NULL,
  attempts    integer NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (projection, position)
);
