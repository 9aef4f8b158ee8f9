import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ValidatorMetrics {
  runSeconds: Histogram<'trigger'>;
  checkSeconds: Histogram<'check_type'>;
  checks: Counter<'check_type' | 'status'>;
  score: Gauge<'table'>;
  sideRows: Counter<'side'>;
}

const RUN_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];

/** Made once per process registry (actors restart; the API and the actor share them). */
export function validatorMetrics(registry: Registry): ValidatorMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const registers = [registry];
  return {
    runSeconds: get('concord_validator_run_seconds', () => new Histogram({ name: 'concord_validator_run_seconds', help: 'Duration of a consistency run (every table and check type of it)', labelNames: ['trigger'], buckets: RUN_BUCKETS, registers })),
    checkSeconds: get('concord_validator_check_seconds', () => new Histogram({ name: 'concord_validator_check_seconds', help: 'Duration of one check type on one table', labelNames: ['check_type'], buckets: RUN_BUCKETS, registers })),
    checks: get('concord_validator_checks_total', () => new Counter({ name: 'concord_validator_checks_total', help: 'Check verdicts by type and status (passed, failed, error, skipped)', labelNames: ['check_type', 'status'], registers })),
    score: get('concord_consistency_score', () => new Gauge({ name: 'concord_consistency_score', help: 'Consistency score (percent, weighted) of the latest run per table, as this process saw it', labelNames: ['table'], registers })),
    sideRows: get('concord_validator_rows_downloaded_total', () => new Counter({ name: 'concord_validator_rows_downloaded_total', help: 'Rows (key + row hash) read by the validator to find differing keys, per side', labelNames: ['side'], registers })),
  };
}
