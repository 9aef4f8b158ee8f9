import { QueueEvents } from 'bullmq';
import type pg from 'pg';
import { klinesIngestQueue, type KlinesIngestJob } from '../../queues/index.js';
import { createPgPool, queueActor, type Actor, type ActorContext } from '../../runtime/index.js';
import { SequenceAllocator } from './allocator.js';
import type { SequenceConfig } from './config.js';
import { ingestBatch } from './ingest.js';
import { startKafkaSource } from './kafka-source.js';
import { sequenceMetrics } from './metrics.js';

export const SEQUENCE_ALLOCATOR = 'sequence-allocator';

/**
 * Stamps klines with sequence numbers, stores them in market_klines and publishes them.
 * Every worker process consumes klines.ingest, one batch at a time across all of them
 * (global concurrency 1: per stream, numbers are stamped, stored and published in one
 * order); with Kafka configured, every worker also joins the market_data consumer group.
 */
export function sequenceAllocatorActor(config: SequenceConfig): Actor {
  let pool: pg.Pool | undefined;
  let allocator: SequenceAllocator | undefined;
  let source: { stop(): Promise<void> } | undefined;
  let queueEvents: QueueEvents | undefined;
  let recoveriesSeen = 0;
  let current: ActorContext | undefined;
  const inner = queueActor<KlinesIngestJob>({
    name: SEQUENCE_ALLOCATOR,
    queue: klinesIngestQueue,
    // A killed worker's batch blocks the queue until stall detection: keep the lock short.
    mailbox: { concurrency: 1, lockDurationMs: 10_000, stalledIntervalMs: 5_000 },
    handler: async (data, _job, log) => {
      const ctx = current!;
      const metrics = sequenceMetrics(ctx.services.metrics.registry);
      const result = await ingestBatch({ pool: pool!, redis: ctx.services.redis, allocator: allocator!, channelPrefix: config.channelPrefix }, data.klines);
      metrics.klines.inc({ outcome: 'stored' }, result.stored);
      metrics.klines.inc({ outcome: 'duplicate' }, result.duplicates);
      metrics.klines.inc({ outcome: 'unpublished' }, result.unpublished);
      metrics.skipped.inc(result.skipped);
      metrics.recoveries.inc(allocator!.counts.recoveries - recoveriesSeen);
      recoveriesSeen = allocator!.counts.recoveries;
      if (result.unpublished > 0) log.warn({ unpublished: result.unpublished }, 'klines stored but not published; clients recover them through the missed API');
      return result;
    },
  });
  return {
    name: SEQUENCE_ALLOCATOR,
    spec: { restart: 'permanent', shutdownMs: 15_000 },
    async start(ctx) {
      current = ctx;
      const { services } = ctx;
      pool = createPgPool(services.config.databaseUrl!, 4);
      allocator = new SequenceAllocator(services.redis, pool, { prefix: services.config.queuePrefix, mode: config.mode, reserveSize: config.reserveSize, blockSize: config.blockSize });
      recoveriesSeen = 0;
      services.registry.register(klinesIngestQueue);
      const queue = services.queues.queue(klinesIngestQueue.name);
      await queue.setGlobalConcurrency(1);
      await inner.start(ctx);
      const brokers = services.config.kafkaBrokers;
      if (config.kafkaEnabled && brokers && brokers.length > 0) {
        // Blocking reads: a connection of its own.
        queueEvents = new QueueEvents(klinesIngestQueue.name, { connection: services.workerConnection.duplicate(), prefix: services.config.queuePrefix });
        queueEvents.on('error', (err) => ctx.log.warn({ err: String(err) }, 'queue events connection error'));
        await queueEvents.waitUntilReady();
        const metrics = sequenceMetrics(services.metrics.registry);
        source = startKafkaSource({
          brokers,
          topic: config.topic,
          groupId: config.groupId,
          queue,
          dlq: services.queues.queue(klinesIngestQueue.name, { dlq: true }),
          queueEvents,
          waitMs: config.ingestWaitMs,
          log: ctx.log,
          onRejected: (n) => metrics.klines.inc({ outcome: 'rejected' }, n),
        });
      }
      ctx.log.info({ mode: config.mode, kafka: Boolean(source), topic: config.topic }, 'sequence allocator running');
    },
    async stop(timeoutMs) {
      await source?.stop();
      source = undefined;
      await queueEvents?.close().catch(() => undefined);
      queueEvents = undefined;
      await inner.stop(timeoutMs);
      allocator?.close();
      await pool?.end().catch(() => undefined);
      pool = undefined;
    },
    describe: () => ({ ...(inner.describe?.() ?? {}), mode: config.mode, kafka: Boolean(source) }),
  };
}
