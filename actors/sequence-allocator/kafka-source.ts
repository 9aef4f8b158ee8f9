import type { Job, Queue, QueueEvents } from 'bullmq';
import { Kafka, logLevel, type Consumer, type KafkaMessage } from 'kafkajs';
import type { KlinesIngestJob } from '../../queues/index.js';
import { backoffDelay, errorMessage, type Logger } from '../../runtime/index.js';
import { packMessages } from './kline-packer.js';

export { parseKlineMessage } from './kline-packer.js';

export interface KafkaSourceOptions {
  brokers: string[];
  topic: string;
  groupId: string;
  /** The ingest lanes, lane 0 first: a kline goes to the lane of its symbol (ingestLaneOf). */
  lanes: ReadonlyArray<{ queue: Queue; events: QueueEvents }>;
  /** The DLQ of klines.ingest: where messages that are not klines go, with the reason. */
  dlq: Queue;
  waitMs: number;
  log: Logger;
  onRejected(count: number): void;
}

/** Batches of one partition enqueued and not yet committed, at most. */
const IN_FLIGHT = 3;

export interface Rejected {
  offset: string;
  reason: string;
  value: string;
}

/**
 * Consumes the market_data topic in batches: each Kafka batch becomes one or a few
 * ingest jobs (per lane of its symbols), and the batch's offset is committed only once those jobs finished,
 * i.e. their klines are in PostgreSQL (DESIGN rule 3). A crash anywhere before that means
 * redelivery, which the ingest path ignores (idempotent on symbol and time). Up to IN_FLIGHT
 * batches of a partition are enqueued ahead, so parsing overlaps with storing.
 */
export function startKafkaSource(opts: KafkaSourceOptions): { stop(): Promise<void> } {
  const kafka = new Kafka({ clientId: 'concord-sequence-allocator', brokers: opts.brokers, logLevel: logLevel.NOTHING, retry: { retries: 8 } });
  let consumer: Consumer | undefined;
  let stopped = false;
  let failures = 0;
  let wakeUp: (() => void) | undefined;
  /** Per partition: the promise of its last batch's commit, and its uncommitted batches. */
  const chains = new Map<string, Promise<void>>();
  const inFlight = new Map<string, Array<Promise<void>>>();

  /** Parses a Kafka batch, dead-letters what is not a kline, enqueues the rest; returns the jobs. */
  async function enqueueBatch(topic: string, partition: number, messages: KafkaMessage[]): Promise<Array<{ job: Job; events: QueueEvents }>> {
    const batch = packMessages(messages.map((m) => m.value), opts.lanes.length);
    const rejected: Rejected[] = batch.rejected.map(({ index, reason }) => {
      const m = messages[index]!;
      return { offset: m.offset, reason, value: (m.value?.toString() ?? '').slice(0, 4096) };
    });
    if (rejected.length > 0) await deadLetter(topic, partition, rejected);
    const first = messages[0]!.offset;
    const last = messages[messages.length - 1]!.offset;
    const jobs: Array<{ job: Job; events: QueueEvents }> = [];
    // Per lane in arrival order: per symbol the order is kept, and lanes store side by side.
    for (const [lane, parts] of batch.lanes) {
      const { queue, events } = opts.lanes[lane]!;
      for (const [i, part] of parts.entries()) {
        const data: KlinesIngestJob = { source: 'kafka', count: part.count, packed: part.packed };
        // Same messages, same id: a batch re-read before its job was removed is not added twice.
        const job = await queue.add('kafka', data, { jobId: `kafka-${topic}-${partition}-${first}-${last}-${i}` });
        jobs.push({ job, events });
      }
    }
    return jobs;
  }

  /** Resolves once the job finished; rejects only when it may not have (Kafka must deliver again). */
  async function finished({ job, events }: { job: Job; events: QueueEvents }): Promise<void> {
    try {
      await job.waitUntilFinished(events, opts.waitMs);
    } catch (err) {
      const msg = errorMessage(err);
      // Not finished in time (Redis lost it, workers down): let Kafka deliver the batch again.
      if (/timed out/i.test(msg)) throw err;
      // Failed for good: the job and its klines are in the DLQ, where they can be retried.
      opts.log.error({ jobId: job.id, err: msg }, 'kline batch failed for good; it is in the klines.ingest DLQ');
    }
  }

  async function deadLetter(topic: string, partition: number, rejected: Rejected[]): Promise<void> {
    opts.onRejected(rejected.length);
    const now = Date.now();
    await opts.dlq.addBulk(
      rejected.map((r) => ({
        name: 'rejected',
        data: {
          queue: opts.lanes[0]!.queue.name,
          jobId: `kafka-${topic}-${partition}-${r.offset}`,
          name: 'rejected',
          data: { source: 'kafka', topic, partition, offset: r.offset, value: r.value },
          failedReason: `invalid kline: ${r.reason}`,
          attemptsMade: 0,
          failedAt: now,
          enqueuedAt: now,
          stacktrace: [],
          options: {},
          retries: 0,
        },
        opts: { jobId: `rejected-${topic}-${partition}-${r.offset}` },
      })),
    );
    opts.log.warn({ topic, partition, count: rejected.length, first: rejected[0] }, 'messages that are not klines moved to the DLQ');
  }

  async function run(): Promise<void> {
    while (!stopped) {
      try {
        consumer = kafka.consumer({ groupId: opts.groupId, sessionTimeout: 30_000, heartbeatInterval: 3_000 });
        const current = consumer;
        // A crash kafkajs does not restart by itself: start over with a new consumer.
        current.on(current.events.CRASH, ({ payload }) => {
          // Whatever restarts reads again from the committed offsets: forget the old pipeline.
          chains.clear();
          inFlight.clear();
          if (payload.restart || stopped) return;
          opts.log.warn({ err: errorMessage(payload.error) }, 'Kafka consumer crashed; restarting');
          void current.disconnect().catch(() => undefined).then(() => (running = run()));
        });
        await consumer.connect();
        await consumer.subscribe({ topics: [opts.topic], fromBeginning: true });
        await consumer.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          // Partitions in parallel: their jobs queue up while each lane stores one batch at a time.
          partitionsConsumedConcurrently: 4,
          eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
            if (batch.messages.length === 0 || !isRunning() || isStale()) return;
            const key = `${batch.topic}:${batch.partition}`;
            const jobs = await enqueueBatch(batch.topic, batch.partition, batch.messages);
            const offset = (BigInt(batch.lastOffset()) + 1n).toString();
            // Commits follow the partition's order: each waits for the batches before it.
            const previous = chains.get(key) ?? Promise.resolve();
            const committed = previous
              .then(() => Promise.all(jobs.map(finished)))
              .then(() => current.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset }]));
            committed.catch(() => undefined);
            chains.set(key, committed);
            const window = inFlight.get(key) ?? [];
            inFlight.set(key, window);
            window.push(committed);
            resolveOffset(batch.lastOffset());
            // Bounded pipelining: parse and enqueue the next batch while this one is stored, but
            // never hold more than IN_FLIGHT batches of a partition uncommitted.
            while (window.length >= IN_FLIGHT) {
              const oldest = window.shift()!;
              const beat = setInterval(() => void heartbeat().catch(() => undefined), 3_000);
              try {
                // A batch that may not be stored fails this one (and every later one of the
                // partition, chained on it): kafkajs retries, then restarts from the committed offset.
                await oldest;
              } finally {
                clearInterval(beat);
              }
            }
            failures = 0;
          },
        });
        opts.log.info({ topic: opts.topic, groupId: opts.groupId }, 'consuming klines from Kafka');
        return;
      } catch (err) {
        await consumer?.disconnect().catch(() => undefined);
        const delay = backoffDelay(failures++, { minMs: 500, maxMs: 30_000, jitter: 0.3 });
        opts.log.warn({ err: errorMessage(err), retryInMs: delay }, 'Kafka consumer could not start; retrying');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          wakeUp = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  }

  let running = run();
  return {
    async stop() {
      stopped = true;
      wakeUp?.();
      await running;
      // Let the batches already queued be stored and committed (bounded by waitMs each).
      await Promise.allSettled([...chains.values()]);
      await consumer?.disconnect().catch(() => undefined);
    },
  };
}
