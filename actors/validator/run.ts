import type { Job, Queue } from 'bullmq';
import type pg from 'pg';
import type { Redis } from 'ioredis';
import { createValidationRun, enqueueRepair, CHECK_TYPES, type ValidateRunJob } from '../../queues/validate.js';
import { errorMessage, type Logger } from '../../runtime/index.js';
import type { Sides } from './bisect.js';
import { consistencyScore, readTableShape, runCheck, type CheckResult, type TableShape } from './checks.js';
import type { ValidatorConfig } from './config.js';
import { repairKeys } from './key-hash.js';
import type { ValidatorMetrics } from './metrics.js';
import { finishRun, markRunning, saveResult } from './store.js';

export function tableLockKey(prefix: string, table: string): string {
  return `${prefix}:validator:lock:${table}`;
}

const LOCK_TTL_MS = 30_000;

/**
 * One run at a time per table, across processes: a Redis key held (and renewed) while
 * a run checks the table. A run that finds it taken waits for it, up to `waitMs`.
 */
export async function withTableLock<T>(redis: Redis, key: string, owner: string, waitMs: number, work: () => Promise<T>): Promise<T | 'busy'> {
  const deadline = Date.now() + waitMs;
  while ((await redis.set(key, owner, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') {
    if ((await redis.get(key)) === owner) break; // our own earlier attempt (a retried run)
    const left = deadline - Date.now();
    if (left <= 0) return 'busy';
    await new Promise((r) => setTimeout(r, Math.min(500, left)));
  }
  const renew = setInterval(() => void redis.pexpire(key, LOCK_TTL_MS).catch(() => undefined), LOCK_TTL_MS / 3);
  try {
    return await work();
  } finally {
    clearInterval(renew);
    // Only our own lock is released.
    await redis.eval(`if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`, 1, key, owner).catch(() => undefined);
  }
}

export interface RunDeps {
  db: pg.Pool;
  redis: Redis;
  prefix: string;
  sides: Sides;
  dualwrite: Queue;
  config: ValidatorConfig;
  metrics: ValidatorMetrics;
}

export interface RunOutcome {
  runId: string;
  score: number | null;
  results: number;
  repaired: number;
}

/** Processes one `validate` job: every table x check type, stored verdict by verdict, then the score. */
export async function processRun(data: ValidateRunJob, job: Job, log: Logger, deps: RunDeps): Promise<RunOutcome> {
  const { db, config } = deps;
  const tables = data.tables.length > 0 ? data.tables : config.tables;
  const types = data.checkTypes.length > 0 ? data.checkTypes : [...CHECK_TYPES];
  let runId = data.runId;
  if (!runId) {
    // A scheduled job: record the run once and remember its id in the job, so a retry reuses it.
    runId = await createValidationRun(db, { trigger: data.trigger, tables, checkTypes: types, repair: data.repair });
    await job.updateData({ ...data, runId });
  }
  await markRunning(db, runId);
  const started = Date.now();
  const all: CheckResult[] = [];
  let repaired = 0;
  try {
    for (const table of tables) {
      let shape: TableShape | undefined;
      const outcome = await withTableLock(deps.redis, tableLockKey(deps.prefix, table), runId, config.sideTimeoutMs, async () => {
        shape = await readTableShape(db, table);
        const results: CheckResult[] = [];
        for (const type of types) {
          const end = deps.metrics.checkSeconds.startTimer({ check_type: type });
          for (const r of await runCheck(type, table, shape, deps.sides, config)) {
            await saveResult(db, runId, r, config.diffKeysCap);
            deps.metrics.checks.inc({ check_type: type, status: r.status });
            results.push(r);
          }
          end();
        }
        return results;
      });
      if (outcome === 'busy') {
        const skipped = types.map((t): CheckResult => ({ table, checkType: t, checkName: t, status: 'skipped', weight: 0, diffTotal: 0, diffKeys: [], details: { reason: 'another run held the table' }, durationMs: 0 }));
        for (const r of skipped) await saveResult(db, runId, r, config.diffKeysCap);
        all.push(...skipped);
        continue;
      }
      all.push(...outcome);
      const tableScore = consistencyScore(outcome);
      if (tableScore !== null) deps.metrics.score.set({ table }, tableScore);
      if (data.repair && shape) {
        const keys = outcome.filter((r) => r.checkType === 'data_hash' && r.status === 'failed').flatMap((r) => r.diffKeys.map((k) => k.key));
        if (keys.length > 0) repaired += await enqueueRepair(deps.dualwrite, table, repairKeys(shape.columns, keys));
      }
    }
    const score = consistencyScore(all);
    await finishRun(db, runId, 'completed', score);
    deps.metrics.runSeconds.observe({ trigger: data.trigger }, (Date.now() - started) / 1000);
    log.info({ runId, score, checks: all.length, repaired }, 'consistency run completed');
    return { runId, score, results: all.length, repaired };
  } catch (err) {
    // The last attempt marks the run failed; earlier ones leave it running for the retry.
    if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) await finishRun(db, runId, 'failed', consistencyScore(all), errorMessage(err)).catch(() => undefined);
    throw err;
  }
}
