import { klinesIngestLanes, klinesIngestQueue } from '../../queues/index.js';
import type { CapabilityExtension } from '../../runtime/index.js';
import type { ActorFactory } from '../factory.js';
import { loadSequenceConfig, type SequenceConfig } from './config.js';
import { sequenceAllocatorActor, SEQUENCE_ALLOCATOR } from './actor.js';

export { loadSequenceConfig, type SequenceConfig } from './config.js';
export { SEQUENCE_ALLOCATOR } from './actor.js';
export { SequenceAllocator, type AllocatorOptions } from './allocator.js';
export { GapTracker, type GapTrackerOptions, type GapInfo, type MissedPage } from './gap-tracker.js';
export { parseKlineMessage } from './kafka-source.js';
export { klinesIngestQueue, klineChannel, type Kline, type SequencedKline, type StreamPosition } from '../../queues/index.js';

export function sequenceAllocatorFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory & { config(): SequenceConfig } {
  let config: SequenceConfig | undefined;
  const cfg = () => (config ??= loadSequenceConfig(env));
  return {
    name: SEQUENCE_ALLOCATOR,
    // Every lane's queue (registry, DLQ, metrics); lane 0 alone if the configuration is bad (start reports it).
    get queues() {
      try {
        return klinesIngestLanes(cfg().lanes);
      } catch {
        return [klinesIngestQueue];
      }
    },
    enabled: () => cfg().enabled,
    create: () => sequenceAllocatorActor(cfg()),
    config: cfg,
    extension: () => sequencesExtension(cfg()),
  };
}

/** The `sequences` section of /api/v1/stats: streams, numbers stamped and skipped, kline rows (estimate). */
function sequencesExtension(config: SequenceConfig): CapabilityExtension {
  return {
    stats: [
      {
        name: 'sequences',
        collect: async (services) => {
          // A stats page must not fail because this database lacks the migration or is down.
          const res = await services.pg().query<{ streams: string; assigned: string | null; skipped: string | null; klines: string | null }>(
            `SELECT (SELECT count(*) FROM sequence_tracker) AS streams, (SELECT sum(last_assigned) FROM sequence_tracker) AS assigned,
                    (SELECT sum(to_seq - from_seq + 1) FROM sequence_skips) AS skipped,
                    (SELECT reltuples::bigint FROM pg_class WHERE oid = 'market_klines'::regclass) AS klines`,
          ).catch((err: unknown) => err as Error);
          if (res instanceof Error) return { mode: config.mode, unavailable: res.message };
          const r = res.rows[0]!;
          return { mode: config.mode, kafkaTopic: config.kafkaEnabled ? config.topic : null, streams: Number(r.streams), numbersStamped: Number(r.assigned ?? 0), numbersSkipped: Number(r.skipped ?? 0), klinesEstimate: Math.max(0, Number(r.klines ?? 0)) };
        },
      },
    ],
    async close() {},
  };
}
