import { Counter, Gauge, type Registry } from 'prom-client';

/** What the slot lag gauges read at scrape time (set by the running reader). */
export interface LagSource {
  lagBytes(): Promise<number | null>;
  lagSeconds(): number;
}

export interface CdcMetrics {
  changes: Counter;
  batches: Counter<'kind'>;
  schemaErrors: Counter<'kind'>;
  quarantined: Gauge;
  paused: Gauge;
  queuedBatches: Gauge;
  setLagSource(source: LagSource | undefined): void;
}

function once<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/**
 * The reader's metrics, registered once per registry (the actor is restarted in
 * the same process by its supervisor). Lag is read when Prometheus scrapes.
 */
export function cdcMetrics(registry: Registry): CdcMetrics {
  const registers = [registry];
  const holder = registry as Registry & { concordCdcLag?: LagSource };
  once(
    registry,
    'concord_cdc_slot_lag_bytes',
    () =>
      new Gauge({
        name: 'concord_cdc_slot_lag_bytes',
        help: 'WAL bytes between the server\'s current position and what the slot has confirmed (applied to DuckDB)',
        registers,
        async collect() {
          const v = await holder.concordCdcLag?.lagBytes().catch(() => null);
          if (v !== null && v !== undefined) this.set(v);
        },
      }),
  );
  once(
    registry,
    'concord_cdc_slot_lag_seconds',
    () =>
      new Gauge({
        name: 'concord_cdc_slot_lag_seconds',
        help: 'Age of the oldest committed change not yet applied to DuckDB (0 when caught up; heartbeat delay when idle)',
        registers,
        collect() {
          const src = holder.concordCdcLag;
          if (src) this.set(src.lagSeconds());
        },
      }),
  );
  return {
    changes: once(registry, 'concord_cdc_changes_total', () => new Counter({ name: 'concord_cdc_changes_total', help: 'Row changes read from the slot and queued to cdc.apply', registers })),
    batches: once(registry, 'concord_cdc_batches_total', () => new Counter({ name: 'concord_cdc_batches_total', help: 'Batches added to cdc.apply, by kind', labelNames: ['kind'], registers })),
    schemaErrors: once(
      registry,
      'concord_cdc_schema_errors_total',
      () => new Counter({ name: 'concord_cdc_schema_errors_total', help: 'Schema changes the copy cannot follow (dropped/renamed/retyped column, no primary key): ALERT', labelNames: ['kind'], registers }),
    ),
    quarantined: once(registry, 'concord_cdc_quarantined_tables', () => new Gauge({ name: 'concord_cdc_quarantined_tables', help: 'Tables whose changes are held back because of schema drift: ALERT when > 0', registers })),
    paused: once(registry, 'concord_cdc_reader_paused', () => new Gauge({ name: 'concord_cdc_reader_paused', help: '1 while the slot reader is paused by backpressure', registers })),
    queuedBatches: once(registry, 'concord_cdc_pending_batches', () => new Gauge({ name: 'concord_cdc_pending_batches', help: 'Batches decoded and held in memory, not yet in Redis', registers })),
    setLagSource(source) {
      holder.concordCdcLag = source;
    },
  };
}
