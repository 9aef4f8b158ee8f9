-- Sequence numbers for market data (actors/sequence-allocator). Written to be safe on a
-- database that already has the seed's tables: market_klines with rows and no sequences,
-- and the single-row sequence_tracker. Every statement is idempotent.

-- Created here only if missing; the comment marks it as ours, so the down file drops only
-- what this migration created.
DO $$
BEGIN
  IF to_regclass('market_klines') IS NULL THEN
    CREATE TABLE market_klines (
      time    timestamptz NOT NULL,
      symbol  varchar(20) NOT NULL,
      open    double precision,
      high    double precision,
      low     double precision,
      close   double precision,
      volume  double precision,
      PRIMARY KEY (time, symbol)
    );
    COMMENT ON TABLE market_klines IS 'concord:0003_sequences';
  END IF;
END $$;
-- NULL for rows stored before sequences existed: the missed API and gap report skip them.
ALTER TABLE market_klines ADD COLUMN IF NOT EXISTS sequence bigint;
-- The kline's close time (`T`); NULL for rows written before this migration.
ALTER TABLE market_klines ADD COLUMN IF NOT EXISTS close_time timestamptz;
CREATE INDEX IF NOT EXISTS idx_market_klines_symbol_sequence ON market_klines (symbol, sequence) WHERE sequence IS NOT NULL;

-- One row per stream (a symbol, or 'global'). last_sequence: every number ever handed out
-- (by Redis blocks, by get_next_sequence()) is <= it, so recovery after a Redis flush
-- resumes above it. last_assigned: the highest number the ingest path stamped on a kline.
DO $$
BEGIN
  IF to_regclass('sequence_tracker') IS NULL THEN
    CREATE TABLE sequence_tracker (
      id             serial PRIMARY KEY,
      last_sequence  bigint NOT NULL DEFAULT 0,
      updated_at     timestamp DEFAULT CURRENT_TIMESTAMP
    );
    COMMENT ON TABLE sequence_tracker IS 'concord:0003_sequences';
  END IF;
END $$;
ALTER TABLE sequence_tracker ADD COLUMN IF NOT EXISTS stream text;
-- The seed's tracker had one global row (no stream column): it becomes the 'global' stream.
UPDATE sequence_tracker SET stream = 'global'
 WHERE stream IS NULL AND id = (SELECT min(id) FROM sequence_tracker WHERE stream IS NULL)
   AND NOT EXISTS (SELECT 1 FROM sequence_tracker WHERE stream = 'global');
UPDATE sequence_tracker SET stream = 'legacy-' || id WHERE stream IS NULL;
ALTER TABLE sequence_tracker ALTER COLUMN stream SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS sequence_tracker_stream ON sequence_tracker (stream);
ALTER TABLE sequence_tracker ADD COLUMN IF NOT EXISTS last_assigned bigint;
-- Numbers issued before this migration count as assigned (their klines, if any, are old data).
UPDATE sequence_tracker SET last_assigned = last_sequence WHERE last_assigned IS NULL;
ALTER TABLE sequence_tracker ALTER COLUMN last_assigned SET DEFAULT 0;
ALTER TABLE sequence_tracker ALTER COLUMN last_assigned SET NOT NULL;

-- Numbers of a stream that were reserved but never stamped on a kline (a crashed block,
-- a Redis flush, numbers taken by other callers of the stream): not lost data.
CREATE TABLE IF NOT EXISTS sequence_skips (
  stream       text NOT NULL,
  from_seq     bigint NOT NULL,
  to_seq       bigint NOT NULL,
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (stream, from_seq),
  CHECK (to_seq >= from_seq)
);

-- For SQL callers: reserves p_count numbers of a stream and returns the first. A new stream
-- starts above any sequence already stored in market_klines for it.
CREATE OR REPLACE FUNCTION get_next_sequence(p_stream text DEFAULT 'global', p_count integer DEFAULT 1)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_last bigint;
  v_floor bigint;
BEGIN
  IF p_count IS NULL OR p_count < 1 THEN
    RAISE EXCEPTION 'get_next_sequence: p_count must be >= 1, got %', p_count USING ERRCODE = '22023';
  END IF;
  UPDATE sequence_tracker SET last_sequence = last_sequence + p_count, updated_at = CURRENT_TIMESTAMP
   WHERE stream = p_stream RETURNING last_sequence INTO v_last;
  IF v_last IS NULL THEN
    IF p_stream = 'global' THEN
      SELECT coalesce(max(sequence), 0) INTO v_floor FROM market_klines;
    ELSE
      SELECT coalesce(max(sequence), 0) INTO v_floor FROM market_klines WHERE symbol = p_stream;
    END IF;
    INSERT INTO sequence_tracker (stream, last_sequence, last_assigned) VALUES (p_stream, v_floor + p_count, v_floor)
    ON CONFLICT (stream) DO UPDATE SET last_sequence = sequence_tracker.last_sequence + p_count, updated_at = CURRENT_TIMESTAMP
    RETURNING last_sequence INTO v_last;
  END IF;
  RETURN v_last - p_count + 1;
END $$;
