-- Saga coordinator (actors/saga-coordinator). The saga row and its step rows are the
-- truth; queue jobs only say "work on this step now".

-- Saga types registered by orchestrators (defineSaga), so POST /api/v1/sagas can start
-- them by name from any process.
CREATE TABLE IF NOT EXISTS saga_definitions (
  saga_type   text PRIMARY KEY,
  version     text NOT NULL,
  steps       jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sagas (
  id                  uuid PRIMARY KEY,
  saga_type           text NOT NULL,
  orchestrator        text NOT NULL,
  -- The definition this saga runs, fixed when it started; a worker defining the type
  -- under another version reports the saga instead of resuming it.
  definition_version  text NOT NULL,
  steps               jsonb NOT NULL,
  status              text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'compensating', 'completed', 'compensated', 'failed')),
  context             jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- step_name -> result, each merged into the context seen by later steps.
  results             jsonb NOT NULL DEFAULT '{}'::jsonb,
  idempotency_key     text UNIQUE,
  request_hash        text,
  -- Ownership lease: only the holder of the current epoch may advance the saga. Every
  -- statement that advances state carries `epoch = $held`, so a holder that lost the
  -- lease (paused, partitioned, presumed dead) changes nothing.
  owner               text,
  epoch               bigint NOT NULL DEFAULT 0,
  lease_until         timestamptz,
  -- Bumped by an operator retry, so the retried work gets fresh job ids.
  gen                 integer NOT NULL DEFAULT 0,
  current_step        text,
  failed_step         text,
  last_error          text,
  -- Why an operator must look: compensation_failed, definition_version_mismatch.
  attention           text,
  cancel_requested    boolean NOT NULL DEFAULT false,
  created_at          timestamptz NOT NULL DEFAULT now(),
  started_at          timestamptz,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  finished_at         timestamptz
-- Every step rewrites the saga row (epoch, lease, updated_at): room left in each page, and
-- no index on a column a step changes, let those be HOT updates (no index entries added).
) WITH (fillfactor = 70);
-- On created_at, not updated_at: updated_at changes with every step, and an index on it
-- would make every step's update write index entries. The recovery sweep reads the
-- (small) active set through it and sorts by updated_at.
CREATE INDEX IF NOT EXISTS sagas_active ON sagas (created_at) WHERE status IN ('pending', 'running', 'compensating');
CREATE INDEX IF NOT EXISTS sagas_status_type ON sagas (status, saga_type, created_at DESC);
CREATE INDEX IF NOT EXISTS sagas_created ON sagas (created_at DESC);
CREATE INDEX IF NOT EXISTS sagas_attention ON sagas (created_at DESC) WHERE attention IS NOT NULL;

-- One row per saga and step: the primary key makes a step's result a single record,
-- written once (state -> completed only from running).
CREATE TABLE IF NOT EXISTS saga_steps (
  saga_id                uuid NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
  step_name              text NOT NULL,
  position               integer NOT NULL,
  state                  text NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'running', 'completed', 'skipped', 'failed', 'cancelled')),
  comp_state             text CHECK (comp_state IN ('running', 'compensated', 'failed')),
  attempts               integer NOT NULL DEFAULT 0,
  compensation_attempts  integer NOT NULL DEFAULT 0,
  -- An attempt ended without a known outcome (timed out, or its worker died): the step
  -- may have acted, so it is compensated even if it never completed.
  uncertain              boolean NOT NULL DEFAULT false,
  result                 jsonb,
  last_error             text,
  started_at             timestamptz,
  completed_at           timestamptz,
  compensated_at         timestamptz,
  PRIMARY KEY (saga_id, step_name)
) WITH (fillfactor = 70);

-- The step states of a saga, read with a fresh snapshot. The claim calls it in its
-- RETURNING clause, after it has locked the saga row: being VOLATILE, it sees every
-- write the previous lease holder committed before letting go, which a plain sub-select
-- of the same statement (taken with the statement's earlier snapshot) might not.
-- enable_seqscan = off: the function's plan is cached per session; planned while the table
-- was small (or just truncated) it would scan every step row on each claim as the table grows.
CREATE OR REPLACE FUNCTION concord_saga_step_states(saga uuid) RETURNS jsonb
LANGUAGE sql VOLATILE SET enable_seqscan = off AS $$
  SELECT coalesce(jsonb_object_agg(step_name, jsonb_build_array(state, comp_state, attempts, compensation_attempts, uncertain)), '{}'::jsonb)
    FROM saga_steps WHERE saga_id = saga
$$;
