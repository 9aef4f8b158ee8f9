import type { Redis } from 'ioredis';
import type pg from 'pg';
import { syncStatsKeys } from '../../queues/index.js';
import type { OrphanReport } from './orphans.js';
import type { RunReport } from './run.js';

const TOTAL_FIELDS = ['runs', 'failedRuns', 'scanned', 'created', 'updated', 'unchanged', 'conflicts', 'errors'] as const;

/** Run results live in Redis so that any api process can report them. */
export async function recordRun(redis: Redis, prefix: string, report: RunReport): Promise<void> {
  const keys = syncStatsKeys(prefix);
  const m = redis.multi();
  m.set(keys.lastRun, JSON.stringify(report));
  m.setnx(keys.startedAt, new Date().toISOString());
  m.hincrby(keys.totals, 'runs', 1);
  for (const f of ['scanned', 'created', 'updated', 'unchanged', 'conflicts'] as const) m.hincrby(keys.totals, f, report[f]);
  await m.exec();
}

export async function recordFailure(redis: Redis, prefix: string, error: string): Promise<void> {
  const keys = syncStatsKeys(prefix);
  await redis.multi().hincrby(keys.totals, 'failedRuns', 1).hincrby(keys.totals, 'errors', 1).hset(keys.totals, 'lastError', error).exec();
}

export async function recordOrphans(redis: Redis, prefix: string, report: OrphanReport): Promise<void> {
  await redis.set(syncStatsKeys(prefix).orphans, JSON.stringify(report));
}

/**
 * The `sync` section of /api/v1/stats: the last run, totals since the first run,
 * the cursors and conflicts as the portfolio database has them, the last orphan scan.
 */
export async function collectSyncStats(redis: Redis, prefix: string, portfolioDb: pg.Pool): Promise<Record<string, unknown>> {
  const keys = syncStatsKeys(prefix);
  const [lastRun, totals, orphans, since, cursors, conflicts] = await Promise.all([
    redis.get(keys.lastRun),
    redis.hgetall(keys.totals),
    redis.get(keys.orphans),
    redis.get(keys.startedAt),
    portfolioDb.query<{ source: string; updated_at: string; id: string; moved_at: string }>(
      'SELECT source, updated_at::text AS updated_at, id, moved_at::text AS moved_at FROM concord_sync_cursors ORDER BY source',
    ),
    portfolioDb.query<{ kind: string; n: string }>('SELECT kind, count(*) AS n FROM concord_sync_conflicts GROUP BY kind ORDER BY kind'),
  ]);
  const totalNumbers = Object.fromEntries(TOTAL_FIELDS.map((f) => [f, Number(totals[f] ?? 0)]));
  return {
    lastRun: lastRun ? (JSON.parse(lastRun) as RunReport) : null,
    totals: { ...totalNumbers, since, lastError: totals.lastError ?? null },
    cursors: Object.fromEntries(cursors.rows.map((r) => [r.source, { updatedAt: r.updated_at, id: r.id, movedAt: r.moved_at }])),
    conflicts: {
      total: conflicts.rows.reduce((n, r) => n + Number(r.n), 0),
      byKind: Object.fromEntries(conflicts.rows.map((r) => [r.kind, Number(r.n)])),
    },
    orphans: orphans ? (JSON.parse(orphans) as OrphanReport) : null,
  };
}
