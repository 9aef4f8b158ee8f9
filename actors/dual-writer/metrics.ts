import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface DualWriterMetrics {
  cdcChanges: Counter<'result'>;
  cdcRowsWritten: Counter;
  cdcBatches: Counter<'kind'>;
  cdcApplyFailures: Counter;
  cdcApplySeconds: Histogram;
  cdcBatchesCoalesced: Counter;
  heapCollections: Counter;
  legs: Counter<'result'>;
  operations: Counter<'consistency' | 'result'>;
  breakerState: Gauge;
  tableSyncRows: Counter<'mode'>;
}

/** Made once per process registry (actors restart; the API and the actor share them). */
export function dualWriterMetrics(registry: Registry): DualWriterMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const registers = [registry];
  return {
    cdcChanges: get('concord_dual_writer_cdc_changes_total', () => new Counter({ name: 'concord_dual_writer_cdc_changes_total', help: 'CDC row changes received by the applier: applied, or skipped as already applied (LSN)', labelNames: ['result'], registers })),
    cdcRowsWritten: get('concord_dual_writer_cdc_rows_written_total', () => new Counter({ name: 'concord_dual_writer_cdc_rows_written_total', help: 'Rows written to DuckDB after the per-key reduction', registers })),
    cdcBatches: get('concord_dual_writer_cdc_batches_total', () => new Counter({ name: 'concord_dual_writer_cdc_batches_total', help: 'cdc.apply batches committed to DuckDB', labelNames: ['kind'], registers })),
    cdcApplyFailures: get('concord_dual_writer_cdc_apply_failures_total', () => new Counter({ name: 'concord_dual_writer_cdc_apply_failures_total', help: 'Failed attempts to apply a cdc.apply batch (retried in place, in order)', registers })),
    cdcApplySeconds: get('concord_dual_writer_cdc_apply_seconds', () => new Histogram({ name: 'concord_dual_writer_cdc_apply_seconds', help: 'Time to apply one cdc.apply batch (reduction, DuckDB transaction)', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers })),
    cdcBatchesCoalesced: get('concord_dual_writer_cdc_batches_coalesced_total', () => new Counter({ name: 'concord_dual_writer_cdc_batches_coalesced_total', help: 'Waiting cdc.apply batches joined into the transaction of the batch ahead of them (their own jobs are then removed, or skipped)', registers })),
    heapCollections: get('concord_dual_writer_heap_collections_total', () => new Counter({ name: 'concord_dual_writer_heap_collections_total', help: 'Garbage collections run between CDC transactions because the V8 heap was above CDC_APPLY_HEAP_SOFT_LIMIT_MB', registers })),
    legs: get('concord_dual_writer_legs_total', () => new Counter({ name: 'concord_dual_writer_legs_total', help: 'DuckDB legs of dual writes: applied, failed (attempt), delayed (breaker open), skipped (weak)', labelNames: ['result'], registers })),
    operations: get('concord_dual_writer_operations_total', () => new Counter({ name: 'concord_dual_writer_operations_total', help: 'dualWrite calls by consistency and outcome (success = the consistency was met)', labelNames: ['consistency', 'result'], registers })),
    breakerState: get('concord_dual_writer_breaker_state', () => new Gauge({ name: 'concord_dual_writer_breaker_state', help: 'DuckDB circuit breaker in the lease holder: 0 closed, 1 open, 2 half-open', registers })),
    tableSyncRows: get('concord_dual_writer_table_sync_rows_total', () => new Counter({ name: 'concord_dual_writer_table_sync_rows_total', help: 'Rows copied by full and incremental table syncs', labelNames: ['mode'], registers })),
  };
}
