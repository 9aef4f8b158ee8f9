import { EnvReader } from '../../runtime/env-reader.js';

/** The seed's SagaConfig, as environment variables (units in the names). */
export interface SagaConfig {
  enabled: boolean;
  /** Step jobs run at once by one process (the seed's worker_count). @defaultValue 20 */
  workerCount: number;
  /** Per attempt, when a step gives no timeout_ms. @defaultValue 30000 (ms) */
  stepTimeoutMs: number;
  /** Retries after the first attempt, when a step gives no retry_attempts. @defaultValue 3 */
  stepRetryAttempts: number;
  /** First retry delay of a step or compensation; doubles per attempt, with jitter. @defaultValue 200 (ms) */
  retryDelayMs: number;
  /** Cap of that delay. @defaultValue 30000 (ms) */
  retryMaxDelayMs: number;
  /** Retries of a failing compensation before the saga is `failed`. @defaultValue 5 */
  compensationRetryAttempts: number;
  /** A saga's ownership lease; renewed at a third of it while a process works on the saga. @defaultValue 10000 (ms) */
  leaseTtlMs: number;
  /** How often each worker looks for abandoned sagas. @defaultValue 5000 (ms) */
  recoveryIntervalMs: number;
  /** An active saga unchanged this long, with no live lease, is resumed. @defaultValue 15000 (ms) */
  staleAfterMs: number;
  /** Consecutive failures of one service_name that open its circuit. @defaultValue 5 */
  breakerThreshold: number;
  /** Time an open circuit waits before letting one probe through. @defaultValue 10000 (ms) */
  breakerHalfOpenMs: number;
  /** PostgreSQL connections of the coordinator per process. @defaultValue 10 */
  pgPoolSize: number;
  /** Module whose default export (or `register`) registers handlers: `(orchestrator) => void | Promise<void>`. */
  handlersModule: string | undefined;
}

export const DEFAULT_SAGA_CONFIG: Omit<SagaConfig, 'enabled' | 'handlersModule'> = {
  workerCount: 20,
  stepTimeoutMs: 30_000,
  stepRetryAttempts: 3,
  retryDelayMs: 200,
  retryMaxDelayMs: 30_000,
  compensationRetryAttempts: 5,
  leaseTtlMs: 10_000,
  recoveryIntervalMs: 5_000,
  staleAfterMs: 15_000,
  breakerThreshold: 5,
  breakerHalfOpenMs: 10_000,
  pgPoolSize: 10,
};

export function loadSagaConfig(env: NodeJS.ProcessEnv = process.env): SagaConfig {
  const read = new EnvReader(env);
  const d = DEFAULT_SAGA_CONFIG;
  const hasDb = Boolean(read.raw('DATABASE_URL'));
  const config: SagaConfig = {
    enabled: read.bool('SAGA_ENABLED', hasDb),
    workerCount: read.int('SAGA_WORKER_COUNT', d.workerCount, 1, 1000),
    stepTimeoutMs: read.int('SAGA_STEP_TIMEOUT_MS', d.stepTimeoutMs, 1, 86_400_000),
    stepRetryAttempts: read.int('SAGA_STEP_RETRY_ATTEMPTS', d.stepRetryAttempts, 0, 100),
    retryDelayMs: read.int('SAGA_RETRY_DELAY_MS', d.retryDelayMs, 1, 3_600_000),
    retryMaxDelayMs: read.int('SAGA_RETRY_MAX_DELAY_MS', d.retryMaxDelayMs, 1, 86_400_000),
    compensationRetryAttempts: read.int('SAGA_COMPENSATION_RETRY_ATTEMPTS', d.compensationRetryAttempts, 0, 100),
    leaseTtlMs: read.int('SAGA_LEASE_TTL_MS', d.leaseTtlMs, 200, 600_000),
    recoveryIntervalMs: read.int('SAGA_RECOVERY_INTERVAL_MS', d.recoveryIntervalMs, 100, 3_600_000),
    staleAfterMs: read.int('SAGA_STALE_AFTER_MS', d.staleAfterMs, 100, 86_400_000),
    breakerThreshold: read.int('SAGA_BREAKER_THRESHOLD', d.breakerThreshold, 1, 1000),
    breakerHalfOpenMs: read.int('SAGA_BREAKER_HALF_OPEN_MS', d.breakerHalfOpenMs, 10, 3_600_000),
    pgPoolSize: read.int('SAGA_PG_POOL_SIZE', d.pgPoolSize, 1, 200),
    handlersModule: read.raw('SAGA_HANDLERS_MODULE'),
  };
  if (config.enabled && !hasDb) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: sagas live there');
  if (config.retryMaxDelayMs < config.retryDelayMs) read.problem('SAGA_RETRY_MAX_DELAY_MS', String(config.retryMaxDelayMs), `at least SAGA_RETRY_DELAY_MS (${config.retryDelayMs})`);
  read.done();
  return config;
}
