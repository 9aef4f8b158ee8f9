-- Portfolio transactions carry the UUID of the queue entry they come from.
CREATE TABLE IF NOT EXISTS portfolio_transactions (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL,
  type        text NOT NULL CHECK (type IN ('investment', 'withdrawal')),
  amount      numeric(20, 8) NOT NULL,
  currency    char(3) NOT NULL,
  status      text NOT NULL,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  synced_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS portfolio_transactions_user ON portfolio_transactions (user_id);

-- Where each queue table's sync stands: the last (updated_at, id) applied. Moved in
-- the same transaction as the page it covers, so a crash never skips or repeats one.
CREATE TABLE IF NOT EXISTS concord_sync_cursors (
  source      text PRIMARY KEY,
  updated_at  timestamptz NOT NULL,
  id          uuid NOT NULL,
  moved_at    timestamptz NOT NULL DEFAULT now()
);

-- Entries that could not be applied without overwriting something: both sides kept.
CREATE TABLE IF NOT EXISTS concord_sync_conflicts (
  id                bigserial PRIMARY KEY,
  transaction_id    uuid NOT NULL,
  source            text NOT NULL,
  kind              text NOT NULL CHECK (kind IN ('immutable_mismatch', 'backward_transition', 'unknown_status')),
  fields            text[] NOT NULL,
  queue_side        jsonb NOT NULL,
  portfolio_side    jsonb,
  source_updated_at timestamptz NOT NULL,
  detected_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (transaction_id, kind, source_updated_at)
);
CREATE INDEX IF NOT EXISTS concord_sync_conflicts_detected ON concord_sync_conflicts (detected_at DESC);
