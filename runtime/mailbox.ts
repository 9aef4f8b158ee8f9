import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueueDefinition } from '../queues/index.js';
import type { DeadLetters } from './dead-letters.js';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { zodIssues } from './validation.js';

export interface MailboxOptions {
  /** Jobs processed at once by this process. @defaultValue 1 */
  concurrency: number;
  /** How long a job's lock lasts before it must be renewed. @defaultValue 30000 (ms) */
  lockDurationMs: number;
  /** How often stalled jobs (their worker died) are looked for. @defaultValue 30000 (ms) */
  stalledIntervalMs: number;
  /** Stalls a job may suffer before it fails. @defaultValue 1 */
  maxStalledCount: number;
  /** How often the failed set is swept into the DLQ, besides after each final failure. @defaultValue 5000 (ms) */
  sweepIntervalMs: number;
}

export const DEFAULT_MAILBOX_OPTIONS: MailboxOptions = {
  concurrency: 1,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 1,
  sweepIntervalMs: 5_000,
};

export type JobHandler<T, R = unknown> = (data: T, job: Job<T>, log: Logger) => Promise<R>;

export interface MailboxDeps {
  connection: Redis;
  prefix: string;
  metrics: Metrics;
  deadLetters: DeadLetters;
  log: Logger;
}

/**
 * An actor's inbox: a BullMQ Worker on one queue. It validates each payload
 * against the queue's schema (bad input fails at once, no retries), times the
 * work, and hands jobs whose attempts are spent to the queue's DLQ.
 */
export class Mailbox<T, R = unknown> {
  readonly options: MailboxOptions;
  private worker: Worker<T, R> | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private sweepAgain = false;
  private readonly log: Logger;

  constructor(
    private readonly queue: QueueDefinition<T>,
    private readonly handler: JobHandler<T, R>,
    private readonly deps: MailboxDeps,
    opts: Partial<MailboxOptions> = {},
  ) {
    this.options = { ...DEFAULT_MAILBOX_OPTIONS, ...opts };
    const o = this.options;
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1) throw new RangeError(`mailbox ${queue.name}: concurrency must be an integer >= 1, got ${o.concurrency}`);
    if (!(o.lockDurationMs >= 1000)) throw new RangeError(`mailbox ${queue.name}: lockDurationMs must be >= 1000, got ${o.lockDurationMs}`);
    if (!(o.stalledIntervalMs >= 500)) throw new RangeError(`mailbox ${queue.name}: stalledIntervalMs must be >= 500, got ${o.stalledIntervalMs}`);
    if (!Number.isInteger(o.maxStalledCount) || o.maxStalledCount < 0) throw new RangeError(`mailbox ${queue.name}: maxStalledCount must be an integer >= 0, got ${o.maxStalledCount}`);
    if (!(o.sweepIntervalMs >= 100)) throw new RangeError(`mailbox ${queue.name}: sweepIntervalMs must be >= 100, got ${o.sweepIntervalMs}`);
    this.log = deps.log.child({ queue: queue.name });
  }

  get queueName(): string {
    return this.queue.name;
  }

  /** Start consuming. Resolves once the worker is connected. */
  async start(onFatal: (err: Error) => void): Promise<void> {
    const { connection, prefix, metrics } = this.deps;
    const queueLabel = { queue: this.queue.name };
    const worker = new Worker<T, R>(this.queue.name, (job) => this.process(job), {
      connection,
      prefix,
      concurrency: this.options.concurrency,
      lockDuration: this.options.lockDurationMs,
      stalledInterval: this.options.stalledIntervalMs,
      maxStalledCount: this.options.maxStalledCount,
      autorun: false,
    });
    worker.on('completed', () => metrics.jobsProcessed.inc(queueLabel));
    worker.on('failed', (job, err) => {
      if (!job) return;
      const final = err instanceof UnrecoverableError || err.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1);
      if (final) {
        metrics.jobsFailed.inc(queueLabel);
        this.log.warn({ jobId: job.id, attempts: job.attemptsMade, err: err.message }, 'job failed for good; moving to DLQ');
        this.requestSweep();
      } else {
        metrics.jobsRetried.inc(queueLabel);
        this.log.info({ jobId: job.id, attempts: job.attemptsMade, err: err.message }, 'job attempt failed; will retry');
      }
    });
    // Connection errors are survivable: BullMQ reconnects. Log, do not crash the actor.
    worker.on('error', (err) => this.log.error({ err: errorMessage(err) }, 'worker error'));
    this.worker = worker;
    worker.run().catch((err: unknown) => onFatal(err instanceof Error ? err : new Error(String(err))));
    await worker.waitUntilReady();
    this.requestSweep();
    this.sweepTimer = setInterval(() => this.requestSweep(), this.options.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  private async process(job: Job<T>): Promise<R> {
    const started = Date.now();
    this.deps.metrics.jobWait.observe({ queue: this.queue.name }, Math.max(0, (job.processedOn ?? started) - job.timestamp) / 1000);
    const parsed = this.queue.schema.safeParse(job.data);
    if (!parsed.success) {
      const issues = zodIssues(parsed.error, 'data');
      throw new UnrecoverableError(`invalid payload: ${issues.map((i) => `${i.field}: ${i.reason}`).join('; ')}`);
    }
    try {
      return await this.handler(parsed.data, job, this.log.child({ jobId: job.id }));
    } finally {
      this.deps.metrics.jobDuration.observe({ queue: this.queue.name }, (Date.now() - started) / 1000);
    }
  }

  /** Coalesces sweep requests: one sweep at a time, one more if asked meanwhile. */
  private requestSweep(): void {
    if (this.sweeping) {
      this.sweepAgain = true;
      return;
    }
    this.sweeping = (async () => {
      do {
        this.sweepAgain = false;
        try {
          const moved = await this.deps.deadLetters.sweep(this.queue.name);
          if (moved > 0) this.deps.metrics.jobsDeadLettered.inc({ queue: this.queue.name }, moved);
        } catch (err) {
          this.log.error({ err: errorMessage(err) }, 'DLQ sweep failed; will try again');
        }
      } while (this.sweepAgain);
    })().finally(() => {
      this.sweeping = undefined;
    });
  }

  /**
   * Stop taking jobs and let in-flight ones finish, within `timeoutMs`. Past that
   * the worker is closed by force: its jobs stall and another worker retries them.
   * Returns whether the drain finished in time.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    clearInterval(this.sweepTimer);
    const worker = this.worker;
    if (!worker) return true;
    this.worker = undefined;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      worker.close().then(() => true),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      this.log.warn({ timeoutMs }, 'drain timed out; closing by force, in-flight jobs will be retried elsewhere');
      await worker.close(true).catch(() => undefined);
    }
    await this.sweeping;
    return drained;
  }
}
