-- Undoes what 0001_queues.sql adds for the sync: the updated_at triggers, their
-- function and the (updated_at, id) indexes.
--
-- investment_queue and withdrawal_queue are NOT dropped. They belong to the queue
-- management system: 0001_queues.sql only creates them where that system has not
-- (CREATE TABLE IF NOT EXISTS), and they hold its live entries. Reverting the sync's
-- migration must never destroy the queues' data; drop them by hand if they really
-- were created only for Concord.
DROP TRIGGER IF EXISTS investment_queue_touch ON investment_queue;
DROP TRIGGER IF EXISTS withdrawal_queue_touch ON withdrawal_queue;
DROP FUNCTION IF EXISTS concord_touch_updated_at();
DROP INDEX IF EXISTS investment_queue_updated_at_id;
DROP INDEX IF EXISTS withdrawal_queue_updated_at_id;
