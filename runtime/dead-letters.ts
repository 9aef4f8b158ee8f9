import type { Job, JobsOptions } from 'bullmq';
import { dlqEntrySchema, dlqName, type DlqEntry } from '../queues/index.js';
import { NotFoundError } from './errors.js';
import type { QueueSet } from './queue-set.js';

export interface DlqListing {
  queue: string;
  dlq: string;
  total: number;
  offset: number;
  limit: number;
  entries: Array<DlqEntry & { id: string }>;
}

const RETRY_SUFFIX = /-r(\d+)$/;
const MAX_STACK_LINES = 20;

/**
 * Dead-letter queues: `<queue>.dlq` holds a job after its last attempt, with its
 * payload, reason, attempts and time. The hand-off goes through the source queue's
 * failed set, which BullMQ writes atomically when the last attempt fails: a sweep
 * copies each failed job into the DLQ under an id derived from the job id (so a
 * repeated sweep adds nothing) and only then removes it from the failed set. A
 * worker dying at any point leaves the job in one of the two places, never none.
 */
export class DeadLetters {
  constructor(private readonly queues: QueueSet) {}

  static entryId(sourceJobId: string): string {
    // BullMQ refuses integer custom ids, and source ids are integers.
    return `dead-${sourceJobId}`;
  }

  /** Copy a failed job into its DLQ. Idempotent: the entry id is fixed by the job id. */
  async put(queue: string, job: Job): Promise<string> {
    const sourceId = String(job.id);
    const entry: DlqEntry = {
      queue,
      jobId: sourceId,
      name: job.name,
      data: job.data,
      failedReason: job.failedReason || 'unknown failure',
      attemptsMade: job.attemptsMade,
      failedAt: job.finishedOn ?? Date.now(),
      enqueuedAt: job.timestamp,
      stacktrace: (job.stacktrace ?? []).slice(-MAX_STACK_LINES),
      options: pickRetryOptions(job.opts),
      retries: Number(RETRY_SUFFIX.exec(sourceId)?.[1] ?? 0),
    };
    const id = DeadLetters.entryId(sourceId);
    await this.queues.queue(queue, { dlq: true }).add(job.name, entry, { jobId: id });
    return id;
  }

  /**
   * Move every job in `queue`'s failed set into its DLQ. Safe to run from many
   * processes at once. Returns how many jobs this call moved.
   */
  async sweep(queue: string, batch = 200): Promise<number> {
    const source = this.queues.queue(queue);
    let moved = 0;
    for (;;) {
      const failed = (await source.getFailed(0, batch - 1)).filter((j): j is Job => j !== undefined && j !== null);
      if (failed.length === 0) return moved;
      for (const job of failed) {
        await this.put(queue, job);
        moved += await source.remove(String(job.id));
      }
      if (failed.length < batch) return moved;
    }
  }

  async list(queue: string, offset = 0, limit = 50): Promise<DlqListing> {
    const dlq = this.queues.queue(queue, { dlq: true });
    const [total, jobs] = await Promise.all([dlq.getWaitingCount(), dlq.getWaiting(offset, offset + limit - 1)]);
    const entries = jobs
      .filter((j): j is Job => Boolean(j))
      .map((j) => ({ id: String(j.id), ...dlqEntrySchema.parse(j.data) }));
    return { queue, dlq: dlqName(queue), total, offset, limit, entries };
  }

  async get(queue: string, id: string): Promise<DlqEntry & { id: string }> {
    const job = await this.queues.queue(queue, { dlq: true }).getJob(id);
    if (!job) throw new NotFoundError(`no entry ${JSON.stringify(id)} in ${dlqName(queue)}`, { queue, id });
    return { id, ...dlqEntrySchema.parse(job.data) };
  }

  /**
   * Enqueue the entry's job again, then drop the entry. The new job's id is fixed
   * by the entry and its retry count, so a retry repeated after a crash between
   * the two steps does not enqueue the job twice while the first copy exists.
   */
  async retry(queue: string, id: string): Promise<{ jobId: string }> {
    const entry = await this.get(queue, id);
    const baseId = entry.jobId.replace(RETRY_SUFFIX, '');
    const jobId = `${baseId}-r${entry.retries + 1}`;
    const job = await this.queues.queue(queue).add(entry.name, entry.data, { ...entry.options, jobId });
    await this.queues.queue(queue, { dlq: true }).remove(id);
    return { jobId: String(job.id) };
  }

  async discard(queue: string, id: string): Promise<void> {
    const dlq = this.queues.queue(queue, { dlq: true });
    if (!(await dlq.getJob(id))) throw new NotFoundError(`no entry ${JSON.stringify(id)} in ${dlqName(queue)}`, { queue, id });
    await dlq.remove(id);
  }

  async counts(): Promise<Array<{ queue: string; dlq: string; count: number }>> {
    return Promise.all(
      this.queues.registry.list().map(async (def) => ({
        queue: def.name,
        dlq: dlqName(def.name),
        count: await this.queues.queue(def.name, { dlq: true }).getWaitingCount(),
      })),
    );
  }
}

function pickRetryOptions(opts: JobsOptions): DlqEntry['options'] {
  const picked: DlqEntry['options'] = {};
  if (opts.attempts !== undefined) picked.attempts = opts.attempts;
  if (opts.priority !== undefined) picked.priority = opts.priority;
  if (typeof opts.backoff === 'number') picked.backoff = opts.backoff;
  else if (opts.backoff && typeof opts.backoff.type === 'string') {
    picked.backoff = { type: opts.backoff.type, delay: opts.backoff.delay, jitter: opts.backoff.jitter };
  }
  return picked;
}
