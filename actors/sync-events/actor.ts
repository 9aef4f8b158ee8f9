import type pg from 'pg';
import { syncEventsQueue } from '../../queues/index.js';
import { createPgPool, queueActor, type Actor, type ActorContext } from '../../runtime/index.js';
import type { SyncEventsConfig } from './config.js';
import { processBatch } from './process.js';

export const SYNC_EVENTS = 'sync-events';

/**
 * Processes recorded sync events. Woken by the API on insert and swept every
 * SYNC_EVENT_PROCESS_INTERVAL seconds; the queue's global concurrency of 1 keeps
 * one processor at a time, so per-file order holds across worker processes.
 */
export function syncEventsActor(config: SyncEventsConfig): Actor {
  let pool: pg.Pool | undefined;
  const inner = queueActor({
    name: SYNC_EVENTS,
    queue: syncEventsQueue,
    // One processor at a time (global concurrency 1): a dead worker's job blocks the
    // queue until stall detection, so keep the lock short (renewed every 5 s).
    mailbox: { concurrency: 1, lockDurationMs: 10_000, stalledIntervalMs: 5_000 },
    handler: async (_data, job, log) => {
      // Release the wake-up key before reading: an insert arriving during this drain
      // then queues exactly one follow-up wake instead of being deduplicated away.
      await job.removeDeduplicationKey().catch(() => false);
      let processed = 0;
      let anomalies = 0;
      // Drain: keep going while full batches come back.
      for (;;) {
        const r = await processBatch(pool!, { batchSize: config.batchSize, outboxTopic: config.outboxTopic });
        processed += r.processed;
        anomalies += r.anomalies;
        if (r.processed < config.batchSize) break;
      }
      if (processed > 0) log.info({ processed, anomalies }, 'sync events processed');
      return { processed, anomalies };
    },
  });
  return {
    name: SYNC_EVENTS,
    spec: { restart: 'permanent', shutdownMs: 15_000 },
    async start(ctx: ActorContext) {
      const { services } = ctx;
      pool = createPgPool(services.config.databaseUrl!, 2);
      services.registry.register(syncEventsQueue);
      const queue = services.queues.queue(syncEventsQueue.name);
      await queue.setGlobalConcurrency(1);
      await queue.upsertJobScheduler('sync-events-sweep', { every: config.processIntervalSeconds * 1000 }, { name: 'sweep', data: { trigger: 'sweep' } });
      await inner.start(ctx);
    },
    async stop(timeoutMs) {
      await inner.stop(timeoutMs);
      await pool?.end().catch(() => undefined);
      pool = undefined;
    },
    describe: () => inner.describe?.() ?? {},
  };
}

