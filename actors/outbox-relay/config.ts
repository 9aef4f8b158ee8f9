import { EnvReader } from '../../runtime/env-reader.js';

/** The seed's OutboxConfig, as environment variables. */
export interface OutboxConfig {
  enabled: boolean;
  /** Events per relay batch. @defaultValue 500 */
  batchSize: number;
  /** Idle poll when no NOTIFY arrives. @defaultValue 1000 (ms) */
  pollingIntervalMs: number;
  /** The backoff doubles for this many failures, then stays. @defaultValue 5 */
  maxRetryAttempts: number;
  /** First retry delay. @defaultValue 1000 (ms) */
  retryBackoffMs: number;
  /** Failures after which an event is dead-lettered (per-event maxDeliveryAttempts wins). @defaultValue 10 */
  deadLetterThreshold: number;
  /** @defaultValue 'concord.outbox.dlq' */
  deadLetterTopic: string;
  /** Published events older than this are deleted. @defaultValue 24 (hours) */
  retentionHours: number;
  /** Relay loops per process, each working its own partitions. @defaultValue 2 */
  concurrency: number;
}

export function loadOutboxConfig(env: NodeJS.ProcessEnv = process.env): OutboxConfig {
  const read = new EnvReader(env);
  const deadLetterTopic = read.raw('OUTBOX_DEAD_LETTER_TOPIC') ?? 'concord.outbox.dlq';
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(deadLetterTopic)) {
    read.problem('OUTBOX_DEAD_LETTER_TOPIC', deadLetterTopic, 'a Kafka topic name (letters, digits, . _ -)');
  }
  const config: OutboxConfig = {
    // On wherever PostgreSQL is configured, unless turned off.
    enabled: read.bool('OUTBOX_ENABLED', Boolean(read.raw('DATABASE_URL'))),
    batchSize: read.int('OUTBOX_BATCH_SIZE', 2000, 1, 10_000),
    pollingIntervalMs: read.int('OUTBOX_POLLING_INTERVAL_MS', 1000, 10, 600_000),
    maxRetryAttempts: read.int('OUTBOX_MAX_RETRY_ATTEMPTS', 5, 0, 30),
    retryBackoffMs: read.int('OUTBOX_RETRY_BACKOFF_MS', 1000, 1, 3_600_000),
    deadLetterThreshold: read.int('OUTBOX_DEAD_LETTER_THRESHOLD', 10, 1, 1000),
    deadLetterTopic,
    retentionHours: read.int('OUTBOX_RETENTION_HOURS', 24, 0, 24 * 365),
    concurrency: read.int('OUTBOX_RELAY_CONCURRENCY', 2, 1, 32),
  };
  if (config.enabled && !read.raw('DATABASE_URL')) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: the outbox table lives there');
  read.done();
  return config;
}

/** Delay before the next attempt after `attempts` failures. */
export function retryDelayMs(config: OutboxConfig, attempts: number): number {
  return config.retryBackoffMs * 2 ** Math.min(Math.max(0, attempts - 1), config.maxRetryAttempts);
}
