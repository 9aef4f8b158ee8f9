-- Dual-write operation log (actors/dual-writer). Written in the SAME transaction as the
-- PostgreSQL leg of a dual write, so the DuckDB leg of every committed write has a durable
-- record: the lease holder re-enqueues `pending` operations whose job was lost (Redis down
-- at the call, process killed between commit and enqueue).
CREATE TABLE IF NOT EXISTS concord_dual_write_ops (
  id            uuid PRIMARY KEY,
  table_name    text NOT NULL,
  operation     text NOT NULL CHECK (operation IN ('create', 'update', 'delete', 'recovery')),
  -- Text values of the primary-key columns, in key-column order (JSON array).
  primary_key   jsonb NOT NULL,
  consistency   text NOT NULL CHECK (consistency IN ('strong', 'eventual', 'weak')),
  strategy      text NOT NULL CHECK (strategy IN ('real_time', 'near_real_time', 'batch', 'recovery', 'hybrid')),
  -- pending: DuckDB leg not done yet; applied: done; failed: dead-lettered after its retries;
  -- skipped: a weak write whose best-effort leg failed (not retried).
  status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'failed', 'skipped')),
  last_error    text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  applied_at    timestamptz
);

CREATE INDEX IF NOT EXISTS concord_dual_write_ops_pending ON concord_dual_write_ops (created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS concord_dual_write_ops_applied ON concord_dual_write_ops (applied_at) WHERE status = 'applied';
