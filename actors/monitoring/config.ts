import { EnvReader } from '../../runtime/env-reader.js';

/** The seed's monitoring settings, plus the monitoring actor's own knobs. */
export interface MonitoringConfig {
  /** ENABLE_SYNC_MONITORING: the monitoring actor and the /monitoring routes. @defaultValue true when DATABASE_URL is set */
  enabled: boolean;
  /** Alert when the oldest unapplied sync job is older than this. @defaultValue 15 (minutes) */
  syncLagThresholdMinutes: number;
  /** Alert when a table's consistency score is below this. @defaultValue 90.0 (percent) */
  scoreThreshold: number;
  /** Alert when the dead-letter queues hold more than this many entries in total. @defaultValue 100 */
  dlqThreshold: number;
  /** Where alert notifications are POSTed (JSON); unset: no delivery. */
  webhookUrl: string | undefined;
  /** Delivery attempts per notification (exponential backoff between them). @defaultValue 6 */
  webhookAttempts: number;
  /** First retry delay; it doubles each attempt. @defaultValue 1000 (ms) */
  webhookRetryDelayMs: number;
  /** One delivery attempt's timeout. @defaultValue 5000 (ms) */
  webhookTimeoutMs: number;
  /** How often metrics are collected and alert rules evaluated. @defaultValue 15 (s) */
  intervalSeconds: number;
  /** Tables whose consistency score is watched. @defaultValue VALIDATOR_TABLES, else DATA_SYNC_TABLES, else CDC_MONITORED_TABLES minus CDC_EXCLUDED_TABLES */
  tables: string[];
}

export function loadMonitoringConfig(env: NodeJS.ProcessEnv = process.env): MonitoringConfig {
  const read = new EnvReader(env);
  const hasDb = Boolean(read.raw('DATABASE_URL'));
  const enabled = read.bool('ENABLE_SYNC_MONITORING', hasDb);
  if (enabled && !hasDb) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: alerts and consistency reports live there');
  const scoreRaw = read.raw('CONSISTENCY_SCORE_ALERT_THRESHOLD');
  const score = scoreRaw === undefined ? 90 : Number(scoreRaw);
  if (!(score >= 0 && score <= 100)) read.problem('CONSISTENCY_SCORE_ALERT_THRESHOLD', scoreRaw, 'a percentage between 0 and 100, e.g. 90.0');
  const excluded = read.tables('CDC_EXCLUDED_TABLES') ?? [];
  const tables = read.tables('VALIDATOR_TABLES') ?? read.tables('DATA_SYNC_TABLES') ?? (read.tables('CDC_MONITORED_TABLES') ?? []).filter((t) => !excluded.includes(t));
  const config: MonitoringConfig = {
    enabled,
    syncLagThresholdMinutes: read.int('SYNC_LAG_ALERT_THRESHOLD_MINUTES', 15, 1, 7 * 24 * 60),
    scoreThreshold: score,
    dlqThreshold: read.int('DEAD_LETTER_QUEUE_ALERT_THRESHOLD', 100, 0, 100_000_000),
    webhookUrl: read.url('ALERT_WEBHOOK_URL', ['http:', 'https:']),
    webhookAttempts: read.int('ALERT_WEBHOOK_ATTEMPTS', 6, 1, 50),
    webhookRetryDelayMs: read.int('ALERT_WEBHOOK_RETRY_DELAY_MS', 1000, 10, 3_600_000),
    webhookTimeoutMs: read.int('ALERT_WEBHOOK_TIMEOUT_MS', 5000, 100, 120_000),
    intervalSeconds: read.int('MONITORING_INTERVAL_SECONDS', 15, 1, 3600),
    tables,
  };
  read.done();
  return config;
}
