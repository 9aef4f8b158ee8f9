-- The relay's fast path asks, per aggregate of a batch, for its first dead event
-- (a dead event holds back the later ones of its aggregate). Dead events are rare,
-- and an insert never matches this predicate, so the index costs enqueue nothing.
CREATE INDEX IF NOT EXISTS concord_outbox_dead_by_aggregate ON concord_outbox (aggregate_id, seq) WHERE status = 'dead';
