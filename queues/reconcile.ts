import { z } from 'zod';
import { defineQueue } from './definition.js';

/**
 * Queue-to-portfolio sync runs. One job is one run over both queue tables (or an
 * orphan scan). The queue's global concurrency is 1, so across every worker
 * process at most one run is active at a time.
 */
export const reconcileQueue = defineQueue({
  name: 'reconcile',
  description: 'sync runs: queue entries to portfolio transactions (sync-scheduler)',
  schema: z.object({
    trigger: z.enum(['schedule', 'manual']),
    kind: z.enum(['sync', 'orphans']).default('sync'),
    requestedAt: z.number().optional(),
  }),
  jobOptions: {
    attempts: 8,
    backoff: { type: 'exponential', delay: 1_000, jitter: 0.5 },
    removeOnComplete: { count: 200 },
  },
});

export type ReconcileJob = z.infer<typeof reconcileQueue.schema>;

/** Redis keys the sync-scheduler writes and the API reads (under the queue prefix). */
export const syncStatsKeys = (prefix: string) => ({
  lastRun: `${prefix}:sync:last-run`,
  /** The most recent runs, newest first (bounded). */
  runs: `${prefix}:sync:runs`,
  totals: `${prefix}:sync:totals`,
  orphans: `${prefix}:sync:orphans`,
  startedAt: `${prefix}:sync:started-at`,
});
