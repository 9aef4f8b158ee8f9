-- CDC reader state (actors/cdc-reader), in the database the reader streams from.

-- Per slot and table: where its copy stands. `snapshot` = initial copy not finished
-- (a crash there redoes the slot), `backfill` = a table added later being copied in
-- primary-key chunks (last_key = the last key copied, so it resumes), `streaming`,
-- `quarantined` = schema drift the copy cannot follow (reason says which).
CREATE TABLE IF NOT EXISTS concord_cdc_tables (
  slot        text        NOT NULL,
  table_name  text        NOT NULL,
  state       text        NOT NULL CHECK (state IN ('snapshot', 'backfill', 'streaming', 'quarantined')),
  last_key    text[],
  rows_copied bigint      NOT NULL DEFAULT 0,
  reason      text,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (slot, table_name)
);

-- DBLog watermarks: the reader updates its slot's row before and after selecting a
-- backfill chunk; the table is in the publication, so the updates show where in
-- the stream the chunk was read. Never holds more than one row per slot.
CREATE TABLE IF NOT EXISTS concord_cdc_watermark (
  slot text PRIMARY KEY,
  mark text NOT NULL,
  at   timestamptz NOT NULL DEFAULT now()
);
