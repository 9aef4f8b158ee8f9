DROP INDEX IF EXISTS concord_outbox_dead_by_aggregate;
