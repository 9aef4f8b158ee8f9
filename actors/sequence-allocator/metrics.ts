import { Counter, type Registry } from 'prom-client';

export interface SequenceMetrics {
  /** Klines by outcome: stored, duplicate, rejected (bad input), unpublished (stored, pub/sub failed). */
  klines: Counter<'outcome'>;
  /** Numbers reserved but never stamped, recorded in sequence_skips. */
  skipped: Counter;
  /** Streams re-synced from PostgreSQL (first use in a process, Redis flush or reconnect). */
  recoveries: Counter;
}

/** Made once per process (an actor may be restarted; the registry keeps the first). */
export function sequenceMetrics(registry: Registry): SequenceMetrics {
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const registers = [registry];
  return {
    klines: get('concord_klines_total', () => new Counter({ name: 'concord_klines_total', help: 'Klines handled by the sequence allocator, by outcome', labelNames: ['outcome'], registers })),
    skipped: get('concord_sequence_numbers_skipped_total', () => new Counter({ name: 'concord_sequence_numbers_skipped_total', help: 'Sequence numbers reserved but never stamped on a kline', registers })),
    recoveries: get('concord_sequence_recoveries_total', () => new Counter({ name: 'concord_sequence_recoveries_total', help: 'Streams re-synced from PostgreSQL', registers })),
  };
}
