import type { JobsOptions } from 'bullmq';
import type { z } from 'zod';

/** Suffix of the dead-letter queue that holds a queue's jobs after their last attempt. */
export const DLQ_SUFFIX = '.dlq';

const QUEUE_NAME = /^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*$/;

/**
 * Jobs are retried with exponential backoff and jitter, then dead-lettered.
 * Completed jobs are kept only briefly and in bounded number so Redis memory
 * stays flat; failed ones are moved to the DLQ and removed by the mailbox.
 */
export const DEFAULT_JOB_OPTIONS: Readonly<JobsOptions> = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 1000, jitter: 0.5 },
  removeOnComplete: { count: 1000, age: 3600 },
  removeOnFail: { count: 10_000 },
};

export interface QueueDefinition<T = unknown> {
  /** Dotted lower-case name, e.g. `cdc.apply`. Its DLQ is `<name>.dlq`. */
  readonly name: string;
  readonly description: string;
  /** The shape of one job's data; a job that does not match fails at once, no retries. */
  readonly schema: z.ZodType<T>;
  readonly jobOptions: Readonly<JobsOptions>;
}

export function defineQueue<T>(def: {
  name: string;
  description: string;
  schema: z.ZodType<T>;
  jobOptions?: JobsOptions;
}): QueueDefinition<T> {
  if (!QUEUE_NAME.test(def.name)) {
    throw new RangeError(`queue name ${JSON.stringify(def.name)}: expected dotted lower-case words such as "cdc.apply"`);
  }
  if (def.name.endsWith(DLQ_SUFFIX)) {
    throw new RangeError(`queue name ${JSON.stringify(def.name)}: must not end with ${DLQ_SUFFIX}, which names dead-letter queues`);
  }
  const jobOptions = { ...DEFAULT_JOB_OPTIONS, ...def.jobOptions };
  if (jobOptions.attempts !== undefined && (!Number.isInteger(jobOptions.attempts) || jobOptions.attempts < 1)) {
    throw new RangeError(`queue ${def.name}: jobOptions.attempts must be an integer >= 1, got ${jobOptions.attempts}`);
  }
  return Object.freeze({ name: def.name, description: def.description, schema: def.schema, jobOptions: Object.freeze(jobOptions) });
}

export function dlqName(queue: string): string {
  return `${queue}${DLQ_SUFFIX}`;
}
