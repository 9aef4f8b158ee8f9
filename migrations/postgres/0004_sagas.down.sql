DROP FUNCTION IF EXISTS concord_saga_step_states(uuid);
DROP TABLE IF EXISTS saga_steps;
DROP TABLE IF EXISTS sagas;
DROP TABLE IF EXISTS saga_definitions;
