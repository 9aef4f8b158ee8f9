-- Consistency validator runs and their per-table, per-check results; monitoring alerts.
CREATE TABLE concord_validation_runs (
  id uuid PRIMARY KEY,
  -- 'manual' (POST /consistency/check) or 'schedule' (a BullMQ job scheduler)
  trigger text NOT NULL CHECK (trigger IN ('manual', 'schedule')),
  tables text[] NOT NULL,
  check_types text[] NOT NULL,
  repair boolean NOT NULL DEFAULT false,
  status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'completed', 'failed')),
  -- percentage 0..100, weighted (see README); NULL until the run completes or when no check gave a verdict
  score numeric(6, 2),
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz
);
CREATE INDEX concord_validation_runs_created ON concord_validation_runs (created_at DESC);

CREATE TABLE concord_validation_results (
  run_id uuid NOT NULL REFERENCES concord_validation_runs (id) ON DELETE CASCADE,
  table_name text NOT NULL,
  check_type text NOT NULL,
  -- one check type may hold several checks (one per business rule or foreign key)
  check_name text NOT NULL,
  status text NOT NULL CHECK (status IN ('passed', 'failed', 'error', 'skipped')),
  weight numeric(6, 2) NOT NULL,
  source_count bigint,
  copy_count bigint,
  diff_total bigint NOT NULL DEFAULT 0,
  -- differing keys (capped; diff_total is the full number), each {key, kind}
  diff_keys jsonb NOT NULL DEFAULT '[]',
  details jsonb NOT NULL DEFAULT '{}',
  duration_ms integer NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, table_name, check_type, check_name)
);
CREATE INDEX concord_validation_results_table ON concord_validation_results (table_name, finished_at DESC);

CREATE TABLE concord_alerts (
  id bigserial PRIMARY KEY,
  rule text NOT NULL,
  -- what the alert is about: a table for the score rule, 'global' otherwise
  subject text NOT NULL,
  state text NOT NULL CHECK (state IN ('firing', 'resolved')),
  message text NOT NULL,
  value double precision,
  threshold double precision,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  resolved_at timestamptz
);
-- At most one firing alert per rule and subject: it fires once while the condition holds,
-- even with several monitoring processes evaluating at once.
CREATE UNIQUE INDEX concord_alerts_one_firing ON concord_alerts (rule, subject) WHERE state = 'firing';
CREATE INDEX concord_alerts_recent ON concord_alerts (last_seen DESC);
