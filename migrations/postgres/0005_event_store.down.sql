DROP TABLE IF EXISTS concord_projection_dead_letters;
DROP TABLE IF EXISTS concord_projections;
DROP TABLE IF EXISTS concord_snapshots;
DROP TABLE IF EXISTS concord_events;
DROP TABLE IF EXISTS concord_streams;
