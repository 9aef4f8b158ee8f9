import { QueueEvents } from 'bullmq';
import type pg from 'pg';
import { klinesIngestLanes, klinesIngestQueue, type KlinesIngestJob } from '../../queues/index.js';
import { createPgPool, queueActor, type Actor, type ActorContext, type Logger } from '../../runtime/index.js';
import { SequenceAllocator } from './allocator.js';
import type { SequenceConfig } from './config.js';
import { ingestBatch } from './ingest.js';
import { startKafkaSource } from './kafka-source.js';
import { sequenceMetrics } from './metrics.js';

export const SEQUENCE_ALLOCATOR = 'sequence-allocator';

/**
 * Stamps klines with sequence numbers, stores them in market_klines and publishes them.
 * Klines travel in lanes (klines.ingest and klines.ingest.<i>), a symbol always in the same
 * lane. Every worker process consumes every lane, each lane one batch at a time across all
 * of them (global concurrency 1: per stream, numbers are stamped, stored and published in
 * one order), while different lanes store side by side. With Kafka configured, every
 * worker also joins the market_data consumer group.
 */
export function sequenceAllocatorActor(config: SequenceConfig): Actor {
  let pool: pg.Pool | undefined;
  let allocator: SequenceAllocator | undefined;
  let source: { stop(): Promise<void> } | undefined;
  let queueEvents: QueueEvents[] = [];
  let recoveriesSeen = 0;
  let current: ActorContext | undefined;
  const laneQueues = klinesIngestLanes(config.lanes);
  const handler = async (data: KlinesIngestJob, _job: unknown, log: Logger) => {
    const ctx = current!;
    const metrics = sequenceMetrics(ctx.services.metrics.registry);
    const result = await ingestBatch({ pool: pool!, redis: ctx.services.redis, allocator: allocator!, channelPrefix: config.channelPrefix }, 'packed' in data ? data.packed : data.klines);
    metrics.klines.inc({ outcome: 'stored' }, result.stored);
    metrics.klines.inc({ outcome: 'duplicate' }, result.duplicates);
    metrics.klines.inc({ outcome: 'unpublished' }, result.unpublished);
    metrics.skipped.inc(result.skipped);
    metrics.recoveries.inc(allocator!.counts.recoveries - recoveriesSeen);
    recoveriesSeen = allocator!.counts.recoveries;
    if (result.unpublished > 0) log.warn({ unpublished: result.unpublished }, 'klines stored but not published; clients recover them through the missed API');
    return result;
  };
  // One worker per lane; each lane's queue has global concurrency 1 (see start).
  const inners = laneQueues.map((queue) =>
    queueActor<KlinesIngestJob>({
      name: SEQUENCE_ALLOCATOR,
      queue,
      // A killed worker's batch blocks its lane until stall detection: keep the lock short.
      mailbox: { concurrency: 1, lockDurationMs: 10_000, stalledIntervalMs: 5_000 },
      handler,
    }),
  );
  return {
    name: SEQUENCE_ALLOCATOR,
    spec: { restart: 'permanent', shutdownMs: 15_000 },
    async start(ctx) {
      current = ctx;
      const { services } = ctx;
      // A connection per lane storing at once, plus allocator reservations.
      pool = createPgPool(services.config.databaseUrl!, config.lanes + 3);
      allocator = new SequenceAllocator(services.redis, pool, { prefix: services.config.queuePrefix, mode: config.mode, reserveSize: config.reserveSize, blockSize: config.blockSize });
      recoveriesSeen = 0;
      const queues = laneQueues.map((def) => {
        services.registry.register(def);
        return services.queues.queue(def.name);
      });
      for (const queue of queues) await queue.setGlobalConcurrency(1);
      for (const inner of inners) await inner.start(ctx);
      const brokers = services.config.kafkaBrokers;
      if (config.kafkaEnabled && brokers && brokers.length > 0) {
        // Blocking reads: a connection of its own per lane.
        queueEvents = laneQueues.map((def) => {
          const events = new QueueEvents(def.name, { connection: services.workerConnection.duplicate(), prefix: services.config.queuePrefix });
          events.on('error', (err) => ctx.log.warn({ err: String(err) }, 'queue events connection error'));
          return events;
        });
        await Promise.all(queueEvents.map((e) => e.waitUntilReady()));
        const metrics = sequenceMetrics(services.metrics.registry);
        source = startKafkaSource({
          brokers,
          topic: config.topic,
          groupId: config.groupId,
          lanes: queues.map((queue, i) => ({ queue, events: queueEvents[i]! })),
          dlq: services.queues.queue(klinesIngestQueue.name, { dlq: true }),
          waitMs: config.ingestWaitMs,
          log: ctx.log,
          onRejected: (n) => metrics.klines.inc({ outcome: 'rejected' }, n),
        });
      }
      ctx.log.info({ mode: config.mode, lanes: config.lanes, kafka: Boolean(source), topic: config.topic }, 'sequence allocator running');
    },
    async stop(timeoutMs) {
      await source?.stop();
      source = undefined;
      await Promise.all(queueEvents.map((e) => e.close().catch(() => undefined)));
      queueEvents = [];
      await Promise.all(inners.map((inner) => inner.stop(timeoutMs)));
      allocator?.close();
      await pool?.end().catch(() => undefined);
      pool = undefined;
    },
    describe: () => ({ ...(inners[0]!.describe?.() ?? {}), mode: config.mode, lanes: config.lanes, kafka: Boolean(source) }),
  };
}
