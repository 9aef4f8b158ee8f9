import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Counts of one queue's jobs by state, as BullMQ reports them. */
export type QueueCounts = Record<string, number>;

export interface QueueDepthSource {
  /** Called at scrape time: depth is never cached between scrapes. */
  queueDepths(): Promise<Array<{ queue: string; counts: QueueCounts; dlq: number }>>;
}

const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The process's metrics, in their own registry so that several runtimes in one
 * process (tests, the demo) do not collide. Names follow Prometheus conventions:
 * `concord_` prefix, base units, `_total` counters, no ids in labels.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly jobsProcessed: Counter<'queue'>;
  readonly jobsFailed: Counter<'queue'>;
  readonly jobsRetried: Counter<'queue'>;
  readonly jobsDeadLettered: Counter<'queue'>;
  readonly jobDuration: Histogram<'queue'>;
  readonly jobWait: Histogram<'queue'>;
  readonly actorRestarts: Counter<'actor'>;
  readonly actorState: Gauge<'actor' | 'state'>;
  readonly bridgeItems: Counter<'bridge'>;
  readonly bridgeItemErrors: Counter<'bridge'>;
  readonly bridgeBuffered: Gauge<'bridge'>;
  readonly bridgePaused: Gauge<'bridge'>;
  readonly leaseHeld: Gauge<'lease'>;
  private depthSource: QueueDepthSource | undefined;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'concord_' });
    const registers = [this.registry];
    this.jobsProcessed = new Counter({ name: 'concord_jobs_processed_total', help: 'Jobs completed by an actor mailbox', labelNames: ['queue'], registers });
    this.jobsFailed = new Counter({ name: 'concord_jobs_failed_total', help: 'Jobs that failed for good (no attempts left or bad input)', labelNames: ['queue'], registers });
    this.jobsRetried = new Counter({ name: 'concord_jobs_retried_total', help: 'Job attempts that failed and will be retried', labelNames: ['queue'], registers });
    this.jobsDeadLettered = new Counter({ name: 'concord_jobs_dead_lettered_total', help: 'Jobs moved into their queue\'s DLQ', labelNames: ['queue'], registers });
    this.jobDuration = new Histogram({ name: 'concord_job_duration_seconds', help: 'Processing time of one job attempt', labelNames: ['queue'], buckets: DURATION_BUCKETS, registers });
    this.jobWait = new Histogram({ name: 'concord_job_wait_seconds', help: 'Time from enqueue to the start of processing', labelNames: ['queue'], buckets: DURATION_BUCKETS, registers });
    this.actorRestarts = new Counter({ name: 'concord_actor_restarts_total', help: 'Actor restarts by the supervisor', labelNames: ['actor'], registers });
    this.actorState = new Gauge({ name: 'concord_actor_state', help: '1 for the state each actor is in', labelNames: ['actor', 'state'], registers });
    this.bridgeItems = new Counter({ name: 'concord_rx_bridge_items_total', help: 'Items an rx bridge enqueued', labelNames: ['bridge'], registers });
    this.bridgeItemErrors = new Counter({ name: 'concord_rx_bridge_item_errors_total', help: 'Items an rx bridge could not map to a job', labelNames: ['bridge'], registers });
    this.bridgeBuffered = new Gauge({ name: 'concord_rx_bridge_buffered_items', help: 'Items held by an rx bridge and not yet in Redis', labelNames: ['bridge'], registers });
    this.bridgePaused = new Gauge({ name: 'concord_rx_bridge_paused', help: '1 while a bridge holds its source paused (queue above high-water mark)', labelNames: ['bridge'], registers });
    this.leaseHeld = new Gauge({ name: 'concord_lease_held', help: '1 while this process holds the lease', labelNames: ['lease'], registers });

    // Depth is read from Redis when Prometheus scrapes, so it is never stale.
    const depths = async () => (await this.depthSource?.queueDepths()) ?? [];
    const queueJobs: Gauge<'queue' | 'state'> = new Gauge({
      name: 'concord_queue_jobs',
      help: 'Jobs in a queue by state, read at scrape time',
      labelNames: ['queue', 'state'],
      registers,
      collect: async () => {
        queueJobs.reset();
        for (const { queue, counts } of await depths()) {
          for (const [state, n] of Object.entries(counts)) queueJobs.set({ queue, state }, n);
        }
      },
    });
    const dlqJobs: Gauge<'queue'> = new Gauge({
      name: 'concord_dlq_jobs',
      help: 'Entries waiting in a queue\'s dead-letter queue, read at scrape time',
      labelNames: ['queue'],
      registers,
      collect: async () => {
        dlqJobs.reset();
        for (const { queue, dlq } of await depths()) dlqJobs.set({ queue }, dlq);
      },
    });
  }

  setDepthSource(source: QueueDepthSource): void {
    this.depthSource = source;
  }
}
