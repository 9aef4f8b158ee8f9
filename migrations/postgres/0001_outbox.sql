-- Transactional outbox: services insert events in the same transaction as their
-- business data (outbox.enqueue); the outbox relay delivers them to the broker.
CREATE TABLE IF NOT EXISTS concord_outbox (
  id              uuid PRIMARY KEY,
  -- The writing transaction's id, taken before seq (see outbox.enqueue): the relay
  -- only reads rows whose xid is below the oldest running transaction, so a slow
  -- transaction's earlier events are never overtaken by later ones (DESIGN rule 4).
  xid             xid8 NOT NULL,
  seq             bigint GENERATED ALWAYS AS IDENTITY,
  aggregate_type  text NOT NULL,
  aggregate_id    text NOT NULL,
  -- One relay at a time works a partition: an aggregate's events stay in order.
  part            smallint GENERATED ALWAYS AS ((abs(hashtext(aggregate_id)) % 64)::smallint) STORED,
  topic           text NOT NULL,
  event_type      text NOT NULL,
  payload         jsonb NOT NULL,
  headers         jsonb NOT NULL DEFAULT '{}'::jsonb,
  priority        smallint NOT NULL DEFAULT 0,
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'published', 'dead')),
  attempts        integer NOT NULL DEFAULT 0,
  max_attempts    integer CHECK (max_attempts IS NULL OR max_attempts > 0),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  published_at    timestamptz
);

CREATE INDEX IF NOT EXISTS concord_outbox_pending ON concord_outbox (part, priority DESC, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS concord_outbox_unpublished_by_aggregate ON concord_outbox (aggregate_id, seq) WHERE status <> 'published';
CREATE INDEX IF NOT EXISTS concord_outbox_published_at ON concord_outbox (published_at) WHERE status = 'published';
CREATE INDEX IF NOT EXISTS concord_outbox_dead ON concord_outbox (created_at) WHERE status = 'dead';

-- Relays lock partitions with FOR UPDATE SKIP LOCKED for the span of one batch.
CREATE TABLE IF NOT EXISTS concord_outbox_partitions (
  part smallint PRIMARY KEY,
  last_polled_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO concord_outbox_partitions (part) SELECT g FROM generate_series(0, 63) AS g ON CONFLICT DO NOTHING;

-- Consumer side: events already handled, so a redelivered event is skipped.
CREATE TABLE IF NOT EXISTS concord_inbox (
  consumer      text NOT NULL,
  event_id      uuid NOT NULL,
  processed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);
