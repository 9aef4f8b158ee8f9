-- Undoes 0001_outbox.sql: the consumer inbox, the relay's partition leases and the
-- outbox itself (its indexes go with it). Every undelivered event is lost.
DROP TABLE IF EXISTS concord_inbox;
DROP TABLE IF EXISTS concord_outbox_partitions;
DROP TABLE IF EXISTS concord_outbox;
