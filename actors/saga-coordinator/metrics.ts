import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface SagaMetrics {
  started: Counter<'saga_type'>;
  finished: Counter<'saga_type' | 'status'>;
  duration: Histogram<'saga_type' | 'status'>;
  stepRetries: Counter<'service' | 'phase'>;
  versionMismatches: Counter<'saga_type'>;
  circuitOpen: Gauge<'service'>;
}

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];
const cache = new WeakMap<Registry, SagaMetrics>();

/**
 * The coordinator's metrics, once per registry. Active sagas are read from
 * PostgreSQL at scrape time (`activeSagas`), so every process reports the same truth.
 */
export function sagaMetrics(registry: Registry, activeSagas: () => Promise<Record<string, number>>): SagaMetrics {
  const known = cache.get(registry);
  if (known) return known;
  const registers = [registry];
  const m: SagaMetrics = {
    started: new Counter({ name: 'concord_sagas_started_total', help: 'Sagas started (idempotent replays excluded)', labelNames: ['saga_type'], registers }),
    finished: new Counter({ name: 'concord_sagas_finished_total', help: 'Sagas ended, by final status: completed, compensated or failed', labelNames: ['saga_type', 'status'], registers }),
    duration: new Histogram({ name: 'concord_saga_duration_seconds', help: 'From start to completed, compensated or failed', labelNames: ['saga_type', 'status'], buckets: BUCKETS, registers }),
    stepRetries: new Counter({ name: 'concord_saga_step_retries_total', help: 'Step and compensation attempts that failed and will be retried', labelNames: ['service', 'phase'], registers }),
    versionMismatches: new Counter({ name: 'concord_saga_version_mismatches_total', help: 'Sagas reported instead of resumed: started under another definition version', labelNames: ['saga_type'], registers }),
    circuitOpen: new Gauge({ name: 'concord_saga_circuit_open', help: '1 while the circuit of a service is open in this process', labelNames: ['service'], registers }),
  };
  const active: Gauge<'status'> = new Gauge({
    name: 'concord_sagas_active',
    help: 'Sagas pending, running or compensating, read from PostgreSQL at scrape time',
    labelNames: ['status'],
    registers,
    collect: async () => {
      active.reset();
      for (const [status, n] of Object.entries(await activeSagas())) active.set({ status }, n);
    },
  });
  cache.set(registry, m);
  return m;
}
