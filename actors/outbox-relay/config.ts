import { ConfigError } from '../../runtime/index.js';

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
  const problems: Array<{ variable: string; value: string | undefined; expected: string }> = [];
  const int = (name: string, fallback: number, min: number, max: number) => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push({ variable: name, value: raw, expected: `an integer from ${min} to ${max}` });
      return fallback;
    }
    return n;
  };
  const enabledRaw = env.OUTBOX_ENABLED?.trim().toLowerCase();
  if (enabledRaw && !['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'].includes(enabledRaw)) {
    problems.push({ variable: 'OUTBOX_ENABLED', value: env.OUTBOX_ENABLED, expected: 'true or false' });
  }
  const deadLetterTopic = env.OUTBOX_DEAD_LETTER_TOPIC?.trim() || 'concord.outbox.dlq';
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(deadLetterTopic)) {
    problems.push({ variable: 'OUTBOX_DEAD_LETTER_TOPIC', value: deadLetterTopic, expected: 'a Kafka topic name (letters, digits, . _ -)' });
  }
  const config: OutboxConfig = {
    // On wherever PostgreSQL is configured, unless turned off.
    enabled: enabledRaw ? ['1', 'true', 'yes', 'on'].includes(enabledRaw) : Boolean(env.DATABASE_URL),
    batchSize: int('OUTBOX_BATCH_SIZE', 500, 1, 10_000),
    pollingIntervalMs: int('OUTBOX_POLLING_INTERVAL_MS', 1000, 10, 600_000),
    maxRetryAttempts: int('OUTBOX_MAX_RETRY_ATTEMPTS', 5, 0, 30),
    retryBackoffMs: int('OUTBOX_RETRY_BACKOFF_MS', 1000, 1, 3_600_000),
    deadLetterThreshold: int('OUTBOX_DEAD_LETTER_THRESHOLD', 10, 1, 1000),
    deadLetterTopic,
    retentionHours: int('OUTBOX_RETENTION_HOURS', 24, 0, 24 * 365),
    concurrency: int('OUTBOX_RELAY_CONCURRENCY', 2, 1, 32),
  };
  if (config.enabled && !env.DATABASE_URL) problems.push({ variable: 'DATABASE_URL', value: undefined, expected: 'a postgres:// URL: the outbox table lives there' });
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Delay before the next attempt after `attempts` failures. */
export function retryDelayMs(config: OutboxConfig, attempts: number): number {
  return config.retryBackoffMs * 2 ** Math.min(Math.max(0, attempts - 1), config.maxRetryAttempts);
}
