-- Reverts 0003_sequences. market_klines and sequence_tracker are dropped only when this
-- migration created them (marked by their comment): seed deployments that had them before
-- keep them, with their data; only what this migration added to them is removed.
DROP FUNCTION IF EXISTS get_next_sequence(text, integer);
DROP TABLE IF EXISTS sequence_skips;
DO $$
BEGIN
  IF obj_description('market_klines'::regclass, 'pg_class') = 'concord:0003_sequences' THEN
    DROP TABLE market_klines;
  ELSE
    DROP INDEX IF EXISTS idx_market_klines_symbol_sequence;
    ALTER TABLE market_klines DROP COLUMN IF EXISTS close_time;
  END IF;
  IF obj_description('sequence_tracker'::regclass, 'pg_class') = 'concord:0003_sequences' THEN
    DROP TABLE sequence_tracker;
  END IF;
END $$;
