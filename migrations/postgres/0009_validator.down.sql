DROP TABLE IF EXISTS concord_alerts;
DROP TABLE IF EXISTS concord_validation_results;
DROP TABLE IF EXISTS concord_validation_runs;
