import { EnvReader } from '../../runtime/env-reader.js';

export interface SyncEventsConfig {
  enabled: boolean;
  /** Seconds between sweeps for pending events (inserts wake the processor at once). @defaultValue 5 */
  processIntervalSeconds: number;
  /** Largest accepted `metadata`, serialised. @defaultValue 16384 (bytes) */
  metadataMaxBytes: number;
  /** Events per processing transaction. @defaultValue 1000 */
  batchSize: number;
  /** Outbox topic for file domain events; undefined when the outbox is off. */
  outboxTopic: string | undefined;
}

export function loadSyncEventsConfig(env: NodeJS.ProcessEnv = process.env): SyncEventsConfig {
  const read = new EnvReader(env);
  const hasDb = Boolean(read.raw('DATABASE_URL'));
  const enabled = read.bool('SYNC_EVENTS_ENABLED', hasDb);
  if (enabled && !hasDb) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: sync_events lives there');
  const outboxOn = read.bool('OUTBOX_ENABLED', hasDb);
  const topic = read.raw('SYNC_EVENTS_OUTBOX_TOPIC') ?? 'sync-events.files';
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(topic)) read.problem('SYNC_EVENTS_OUTBOX_TOPIC', topic, 'a Kafka topic name');
  const config: SyncEventsConfig = {
    enabled,
    processIntervalSeconds: read.int('SYNC_EVENT_PROCESS_INTERVAL', 5, 1, 3600),
    metadataMaxBytes: read.int('SYNC_EVENT_METADATA_MAX_BYTES', 16_384, 2, 1_000_000),
    batchSize: read.int('SYNC_EVENT_BATCH_SIZE', 1000, 1, 20_000),
    outboxTopic: outboxOn ? topic : undefined,
  };
  read.done();
  return config;
}
