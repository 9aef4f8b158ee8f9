import { EnvReader } from '../../runtime/env-reader.js';

export interface SyncConfig {
  enabled: boolean;
  queueDbUri: string | undefined;
  portfolioDbUri: string | undefined;
  /** Seconds between scheduled runs. @defaultValue 30 (15 in the development profile) */
  intervalSeconds: number;
  /** Queue entries read per page. @defaultValue 100 (50 in the development profile) */
  batchSize: number;
  /** Seconds between orphan scans. @defaultValue 600 */
  orphanScanSeconds: number;
  profile: 'production' | 'development';
}

const PROFILE_DEFAULTS = { production: { interval: 30, batch: 100 }, development: { interval: 15, batch: 50 } } as const;
const POSTGRES = ['postgres:', 'postgresql:'] as const;

/** Reads the consistency manager's variables (seed names) once, at start. */
export function loadSyncConfig(env: NodeJS.ProcessEnv = process.env): SyncConfig {
  const read = new EnvReader(env);
  const profile = read.oneOf('CONCORD_PROFILE', ['production', 'development'] as const, 'production');
  const queueDbUri = read.url('QUEUE_DB_URI', POSTGRES);
  const portfolioDbUri = read.url('USER_PORTFOLIO_DB_URI', POSTGRES);
  const enabled = read.bool('SYNC_ENABLED', Boolean(queueDbUri && portfolioDbUri));
  if (enabled && (!queueDbUri || !portfolioDbUri)) {
    read.problem(queueDbUri ? 'USER_PORTFOLIO_DB_URI' : 'QUEUE_DB_URI', undefined, 'a postgres:// URL when SYNC_ENABLED is true');
  }
  const config: SyncConfig = {
    enabled,
    queueDbUri,
    portfolioDbUri,
    intervalSeconds: read.int('SYNC_INTERVAL', PROFILE_DEFAULTS[profile].interval, 1, 86_400),
    batchSize: read.int('BATCH_SIZE', PROFILE_DEFAULTS[profile].batch, 1, 50_000),
    orphanScanSeconds: read.int('ORPHAN_SCAN_INTERVAL', 600, 10, 604_800),
    profile,
  };
  read.done();
  return config;
}
