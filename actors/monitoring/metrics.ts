import { Gauge, type Registry } from 'prom-client';

export interface MonitoringMetrics {
  syncLag: Gauge;
  successRatio: Gauge;
  queueDepth: Gauge<'queue'>;
  dlqTotal: Gauge;
  score: Gauge<'table'>;
  validatorSeconds: Gauge;
  alertsFiring: Gauge<'rule'>;
}

/** Made once per process registry; set at each evaluation of the monitoring actor. */
export function monitoringMetrics(registry: Registry): MonitoringMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const registers = [registry];
  return {
    syncLag: get('concord_sync_lag_seconds', () => new Gauge({ name: 'concord_sync_lag_seconds', help: 'Age of the oldest sync job (cdc.apply, dualwrite, datasync.table) not yet applied to DuckDB', registers })),
    successRatio: get('concord_sync_success_ratio', () => new Gauge({ name: 'concord_sync_success_ratio', help: 'Applied share of the dual-write legs finished in the last hour', registers })),
    queueDepth: get('concord_queue_depth', () => new Gauge({ name: 'concord_queue_depth', help: 'Jobs waiting, delayed or active per queue, at the last monitoring evaluation', labelNames: ['queue'], registers })),
    dlqTotal: get('concord_dlq_size', () => new Gauge({ name: 'concord_dlq_size', help: 'Entries in all dead-letter queues, at the last monitoring evaluation', registers })),
    // Same series the validator sets when it finishes a run; here from the stored reports.
    score: get('concord_consistency_score', () => new Gauge({ name: 'concord_consistency_score', help: 'Consistency score (percent, weighted) of the latest run per table', labelNames: ['table'], registers })),
    validatorSeconds: get('concord_validator_last_runs_seconds', () => new Gauge({ name: 'concord_validator_last_runs_seconds', help: 'Mean duration of the last 10 completed consistency runs', registers })),
    alertsFiring: get('concord_alerts_firing', () => new Gauge({ name: 'concord_alerts_firing', help: 'Alerts firing, by rule', labelNames: ['rule'], registers })),
  };
}
