import { z } from 'zod';
import { ConfigError } from '../../runtime/index.js';

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

/** Reads the consistency manager's variables (seed names) once, at start. */
export function loadSyncConfig(env: NodeJS.ProcessEnv = process.env): SyncConfig {
  const problems: Array<{ variable: string; value: string | undefined; expected: string }> = [];
  const profileRaw = env.CONCORD_PROFILE?.trim() || 'production';
  if (profileRaw !== 'production' && profileRaw !== 'development') {
    problems.push({ variable: 'CONCORD_PROFILE', value: profileRaw, expected: 'production or development' });
  }
  const profile = profileRaw === 'development' ? 'development' : 'production';
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
  const uri = (name: string) => {
    const raw = env[name]?.trim();
    if (!raw) return undefined;
    const ok = z.url({ protocol: /^postgres(ql)?$/ }).safeParse(raw).success;
    if (!ok) problems.push({ variable: name, value: raw, expected: 'a postgres:// URL' });
    return raw;
  };
  const queueDbUri = uri('QUEUE_DB_URI');
  const portfolioDbUri = uri('USER_PORTFOLIO_DB_URI');
  const enabledRaw = env.SYNC_ENABLED?.trim().toLowerCase();
  const enabled = enabledRaw === undefined || enabledRaw === '' ? Boolean(queueDbUri && portfolioDbUri) : ['1', 'true', 'yes', 'on'].includes(enabledRaw);
  if (enabled && (!queueDbUri || !portfolioDbUri)) {
    problems.push({ variable: queueDbUri ? 'USER_PORTFOLIO_DB_URI' : 'QUEUE_DB_URI', value: undefined, expected: 'a postgres:// URL when SYNC_ENABLED is true' });
  }
  const config: SyncConfig = {
    enabled,
    queueDbUri,
    portfolioDbUri,
    intervalSeconds: int('SYNC_INTERVAL', PROFILE_DEFAULTS[profile].interval, 1, 86_400),
    batchSize: int('BATCH_SIZE', PROFILE_DEFAULTS[profile].batch, 1, 50_000),
    orphanScanSeconds: int('ORPHAN_SCAN_INTERVAL', 600, 10, 604_800),
    profile,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
