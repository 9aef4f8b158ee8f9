-- The queue database's tables, as the queue management system defines them.
-- IF NOT EXISTS: where that system already created them, only the index and the
-- updated_at trigger that the sync relies on are added.
CREATE TABLE IF NOT EXISTS investment_queue (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL,
  amount      numeric(20, 8) NOT NULL CHECK (amount > 0),
  currency    char(3) NOT NULL,
  status      text NOT NULL DEFAULT 'pending',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS withdrawal_queue (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL,
  amount      numeric(20, 8) NOT NULL CHECK (amount > 0),
  currency    char(3) NOT NULL,
  status      text NOT NULL DEFAULT 'pending',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The sync reads pages in (updated_at, id) order from a durable cursor.
CREATE INDEX IF NOT EXISTS investment_queue_updated_at_id ON investment_queue (updated_at, id);
CREATE INDEX IF NOT EXISTS withdrawal_queue_updated_at_id ON withdrawal_queue (updated_at, id);

-- updated_at must be the writing transaction's start time (now()): the sync only
-- reads rows older than the oldest open transaction, so a slow transaction's rows
-- are never skipped by a cursor that has moved past them.
CREATE OR REPLACE FUNCTION concord_touch_updated_at() RETURNS trigger AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS investment_queue_touch ON investment_queue;
CREATE TRIGGER investment_queue_touch BEFORE INSERT OR UPDATE ON investment_queue
  FOR EACH ROW EXECUTE FUNCTION concord_touch_updated_at();
DROP TRIGGER IF EXISTS withdrawal_queue_touch ON withdrawal_queue;
CREATE TRIGGER withdrawal_queue_touch BEFORE INSERT OR UPDATE ON withdrawal_queue
  FOR EACH ROW EXECUTE FUNCTION concord_touch_updated_at();
