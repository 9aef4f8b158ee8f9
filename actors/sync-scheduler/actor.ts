import type pg from 'pg';
import { reconcileQueue, type ReconcileJob } from '../../queues/index.js';
import { createPgPool, errorMessage, queueActor, type Actor, type ActorContext } from '../../runtime/index.js';
import type { SyncConfig } from './config.js';
import { scanOrphans } from './orphans.js';
import { runSync } from './run.js';
import { recordFailure, recordOrphans, recordPage, recordRun } from './stats.js';

export const SYNC_SCHEDULER = 'sync-scheduler';

/**
 * Keeps portfolio transactions in step with the investment and withdrawal queues.
 * Runs come from BullMQ job schedulers (one per interval, whatever the number of
 * workers) and from POST /api/v1/sync; the queue's global concurrency of 1 means
 * two runs never overlap. A failed run is retried with backoff; its cursor only
 * ever covers pages that committed.
 */
export function syncSchedulerActor(sync: SyncConfig): Actor {
  let pools: { queueDb: pg.Pool; portfolioDb: pg.Pool } | undefined;
  let context: ActorContext | undefined;

  const inner = queueActor<ReconcileJob>({
    name: SYNC_SCHEDULER,
    queue: reconcileQueue,
    // Global concurrency 1: a dead worker's run blocks the queue until stall
    // detection, so the lock is short (renewed every 5 s while a run is alive).
    mailbox: { concurrency: 1, lockDurationMs: 10_000, stalledIntervalMs: 5_000 },
    handler: async (data, job, log) => {
      const ctx = context!;
      const { queueDb, portfolioDb } = pools!;
      const { redis, config } = ctx.services;
      if (data.kind === 'orphans') {
        const report = await scanOrphans(queueDb, portfolioDb);
        await recordOrphans(redis, config.queuePrefix, report);
        if (report.orphans > 0) log.warn({ orphans: report.orphans, sample: report.sample.slice(0, 10) }, 'portfolio transactions with no queue entry');
        return report;
      }
      try {
        const onPage = (counts: Parameters<typeof recordPage>[2]) => recordPage(redis, config.queuePrefix, counts);
        const report = await runSync({ queueDb, portfolioDb, batchSize: sync.batchSize, log, onPage }, String(job.id), data.trigger);
        await recordRun(redis, config.queuePrefix, report);
        log.info({ runId: report.runId, trigger: report.trigger, scanned: report.scanned, created: report.created, updated: report.updated, unchanged: report.unchanged, conflicts: report.conflicts, ms: report.durationMs }, 'sync run finished');
        return { scanned: report.scanned, created: report.created, updated: report.updated, conflicts: report.conflicts };
      } catch (err) {
        await recordFailure(redis, config.queuePrefix, errorMessage(err)).catch(() => undefined);
        throw err;
      }
    },
  });

  return {
    name: SYNC_SCHEDULER,
    spec: { restart: 'permanent', shutdownMs: 30_000 },
    async start(ctx) {
      context = ctx;
      pools = { queueDb: createPgPool(sync.queueDbUri!, 4), portfolioDb: createPgPool(sync.portfolioDbUri!, 4) };
      const { services } = ctx;
      services.registry.register(reconcileQueue);
      const queue = services.queues.queue(reconcileQueue.name);
      await queue.setGlobalConcurrency(1);
      // Upserts are idempotent: every worker may declare the same schedulers.
      await queue.upsertJobScheduler('sync-every-interval', { every: sync.intervalSeconds * 1000 }, { name: 'sync', data: { trigger: 'schedule', kind: 'sync' } });
      await queue.upsertJobScheduler('orphans-every-interval', { every: sync.orphanScanSeconds * 1000 }, { name: 'orphans', data: { trigger: 'schedule', kind: 'orphans' } });
      await inner.start(ctx);
    },
    async stop(timeoutMs) {
      await inner.stop(timeoutMs);
      const current = pools;
      pools = undefined;
      await Promise.allSettled([current?.queueDb.end(), current?.portfolioDb.end()]);
    },
    describe: () => ({ ...inner.describe?.(), intervalSeconds: sync.intervalSeconds, batchSize: sync.batchSize }),
  };
}
