import type { Redis } from 'ioredis';
import type pg from 'pg';
import { syncStatsKeys } from '../../queues/index.js';
import type { OrphanReport } from './orphans.js';
import type { PageCounts, RunReport } from './run.js';

const RECENT_RUNS = 50;
const TOTAL_FIELDS = ['runs', 'failedRuns', 'scanned', 'created', 'updated', 'unchanged', 'conflicts', 'errors'] as const;

/**
 * Totals count committed pages, as each commits: a run that fails half-way still
 * counts what it applied, so `created` equals the transactions created, once each.
 */
export async function recordPage(redis: Redis, prefix: string, counts: PageCounts): Promise<void> {
  const keys = syncStatsKeys(prefix);
  const m = redis.multi();
  for (const f of ['scanned', 'created', 'updated', 'unchanged', 'conflicts'] as const) if (counts[f] > 0) m.hincrby(keys.totals, f, counts[f]);
  await m.exec();
}

/** Run results live in Redis so that any api process can report them. */
export async function recordRun(redis: Redis, prefix: string, report: RunReport): Promise<void> {
  const keys = syncStatsKeys(prefix);
  const m = redis.multi();
  m.set(keys.lastRun, JSON.stringify(report));
  m.lpush(keys.runs, JSON.stringify({ runId: report.runId, trigger: report.trigger, startedAt: report.startedAt, finishedAt: report.finishedAt, scanned: report.scanned, created: report.created, updated: report.updated, unchanged: report.unchanged, conflicts: report.conflicts, durationMs: report.durationMs }));
  m.ltrim(keys.runs, 0, RECENT_RUNS - 1);
  m.setnx(keys.startedAt, new Date().toISOString());
  m.hincrby(keys.totals, 'runs', 1);
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
  const [lastRun, recentRuns, totals, orphans, since, cursors, conflicts] = await Promise.all([
    redis.get(keys.lastRun),
    redis.lrange(keys.runs, 0, 9),
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
    recentRuns: recentRuns.map((r) => JSON.parse(r) as Partial<RunReport>),
    totals: { ...totalNumbers, since, lastError: totals.lastError ?? null },
    cursors: Object.fromEntries(cursors.rows.map((r) => [r.source, { updatedAt: r.updated_at, id: r.id, movedAt: r.moved_at }])),
    conflicts: {
      total: conflicts.rows.reduce((n, r) => n + Number(r.n), 0),
      byKind: Object.fromEntries(conflicts.rows.map((r) => [r.kind, Number(r.n)])),
    },
    orphans: orphans ? (JSON.parse(orphans) as OrphanReport) : null,
  };
}
