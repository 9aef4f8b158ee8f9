import { Counter, Gauge, type Registry } from 'prom-client';
import type pg from 'pg';

export interface OutboxMetrics {
  published: Counter;
  failures: Counter<'kind'>;
  deadLettered: Counter;
}

/**
 * Outbox metrics in the process registry, made once per process (an actor may
 * be restarted). Pending count, oldest pending age and dead events are read from
 * PostgreSQL at scrape time.
 */
export function outboxMetrics(registry: Registry, pool: () => pg.Pool): OutboxMetrics {
  const existing = registry.getSingleMetric('concord_outbox_published_total');
  if (existing) {
    return {
      published: existing as Counter,
      failures: registry.getSingleMetric('concord_outbox_failures_total') as Counter<'kind'>,
      deadLettered: registry.getSingleMetric('concord_outbox_dead_lettered_total') as Counter,
    };
  }
  const registers = [registry];
  const state: Gauge<'status'> = new Gauge({
    name: 'concord_outbox_events',
    help: 'Outbox events by status, read at scrape time',
    labelNames: ['status'],
    registers,
    collect: async () => {
      // A scrape must not fail because PostgreSQL is down or not migrated yet.
      const res = await pool()
        .query<{ pending: string; dead: string; oldest: string | null }>(
        `SELECT count(*) FILTER (WHERE status = 'pending') AS pending, count(*) FILTER (WHERE status = 'dead') AS dead,
                extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending'))::text AS oldest
           FROM concord_outbox WHERE status <> 'published'`,
        )
        .catch(() => undefined);
      if (!res) return;
      const rows = res.rows;
      state.set({ status: 'pending' }, Number(rows[0]?.pending ?? 0));
      state.set({ status: 'dead' }, Number(rows[0]?.dead ?? 0));
      lag.set(Number(rows[0]?.oldest ?? 0));
    },
  });
  // Set by the collect above, which the registry runs first (registration order).
  const lag = new Gauge({ name: 'concord_outbox_oldest_pending_seconds', help: 'Age of the oldest pending event (processing lag), read at scrape time', registers });
  return {
    published: new Counter({ name: 'concord_outbox_published_total', help: 'Outbox events the broker acknowledged', registers }),
    failures: new Counter({ name: 'concord_outbox_failures_total', help: 'Failed deliveries: per event, or the whole broker unavailable', labelNames: ['kind'], registers }),
    deadLettered: new Counter({ name: 'concord_outbox_dead_lettered_total', help: 'Events moved to the dead-letter topic', registers }),
  };
}
