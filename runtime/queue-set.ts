import { Queue, type JobsOptions, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { dlqName, type QueueDefinition, type QueueRegistry } from '../queues/index.js';
import { NotFoundError, ValidationError } from './errors.js';
import { zodIssues } from './validation.js';
import type { QueueCounts, QueueDepthSource } from './metrics.js';

const COUNT_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed', 'paused'] as const;

/**
 * BullMQ Queue handles for every registered queue and its DLQ, sharing one Redis
 * connection. Producers (the API, rx bridges) and the DLQ store go through here,
 * so payloads are validated at the edge before they reach Redis.
 */
export class QueueSet implements QueueDepthSource {
  private readonly queues = new Map<string, Queue>();
  private inflightDepths: Promise<Array<{ queue: string; counts: QueueCounts; dlq: number }>> | undefined;

  constructor(
    readonly registry: QueueRegistry,
    private readonly connection: Redis,
    readonly prefix: string,
  ) {}

  definition(name: string): QueueDefinition<unknown> {
    const def = this.registry.get(name);
    if (!def) throw new NotFoundError(`unknown queue ${JSON.stringify(name)}`, { queue: name, known: this.registry.list().map((q) => q.name) });
    return def;
  }

  /** The BullMQ Queue of a registered queue (or of its DLQ with `{ dlq: true }`). */
  queue(name: string, opts: { dlq?: boolean } = {}): Queue {
    const def = this.definition(name);
    const key = opts.dlq ? dlqName(def.name) : def.name;
    let q = this.queues.get(key);
    if (!q) {
      // DLQ entries stay until an operator retries or discards them: no retention there.
      q = new Queue(key, { connection: this.connection, prefix: this.prefix, defaultJobOptions: opts.dlq ? {} : { ...def.jobOptions } });
      q.on('error', () => undefined); // connection errors surface on the calls that need Redis
      this.queues.set(key, q);
    }
    return q;
  }

  /** Validates `data` against the queue's schema, then enqueues it. */
  async add(name: string, jobName: string, data: unknown, opts?: JobsOptions): Promise<Job> {
    const def = this.definition(name);
    const parsed = def.schema.safeParse(data);
    if (!parsed.success) {
      throw new ValidationError(`job data for queue ${name} is invalid`, zodIssues(parsed.error, 'data'));
    }
    return this.queue(name).add(jobName, parsed.data, opts);
  }

  /** Counts by state for each queue, plus its DLQ size. Concurrent callers share one read. */
  queueDepths(): Promise<Array<{ queue: string; counts: QueueCounts; dlq: number }>> {
    this.inflightDepths ??= this.readDepths().finally(() => {
      this.inflightDepths = undefined;
    });
    return this.inflightDepths;
  }

  private async readDepths(): Promise<Array<{ queue: string; counts: QueueCounts; dlq: number }>> {
    return Promise.all(
      this.registry.list().map(async (def) => {
        const [counts, dlq] = await Promise.all([
          this.queue(def.name).getJobCounts(...COUNT_STATES),
          this.queue(def.name, { dlq: true }).getWaitingCount(),
        ]);
        return { queue: def.name, counts, dlq };
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
  }
}
