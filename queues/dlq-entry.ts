import { z } from 'zod';

/** What a dead-letter entry holds: enough to understand the failure and to run the job again. */
export const dlqEntrySchema = z.object({
  queue: z.string(),
  jobId: z.string(),
  name: z.string(),
  data: z.unknown(),
  failedReason: z.string(),
  attemptsMade: z.number().int().nonnegative(),
  /** ms since epoch */
  failedAt: z.number(),
  /** ms since epoch when the job was first enqueued */
  enqueuedAt: z.number(),
  stacktrace: z.array(z.string()).default([]),
  /** The job's own retry options, reused when the entry is retried. */
  options: z
    .object({
      attempts: z.number().int().positive().optional(),
      backoff: z.union([z.number(), z.object({ type: z.string(), delay: z.number().optional(), jitter: z.number().optional() })]).optional(),
      priority: z.number().int().optional(),
    })
    .default({}),
  /** How many times this entry's job was already retried from the DLQ. */
  retries: z.number().int().nonnegative().default(0),
});

export type DlqEntry = z.infer<typeof dlqEntrySchema>;
