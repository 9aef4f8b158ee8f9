import type pg from 'pg';
import { cdcApplyQueue } from '../../queues/cdc.js';
import { latestTableStates } from '../../queues/consistency-reports.js';
import { dualWriteQueue, tableSyncQueue } from '../../queues/dual-write.js';
import { errorMessage, type RuntimeServices } from '../../runtime/index.js';
import type { MonitoringConfig } from './config.js';

/** Queues whose waiting jobs are changes not yet in DuckDB: the age of the oldest is the sync lag. */
export const SYNC_QUEUES = [cdcApplyQueue.name, dualWriteQueue.name, tableSyncQueue.name];
const PENDING_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'waiting-children'];

export interface Snapshot {
  at: string;
  sync: {
    /** Age of the oldest sync job not yet applied (cdc.apply, dualwrite, datasync.table); 0 when none waits. */
    lagSeconds: number;
    /** Share of dual-write legs of the last hour that were applied (applied / (applied + failed + skipped)); null when none finished. */
    successRate: number | null;
    operationsLastHour: { applied: number; failed: number; skipped: number; pending: number };
  };
  queues: Array<{ queue: string; depth: number; dlq: number; counts: Record<string, number> }>;
  dlqTotal: number;
  consistency: {
    /** Score of the latest completed run (all its tables). */
    score: number | null;
    tables: Array<{ table: string; score: number | null; checkedAt: string | null }>;
    /** Mean duration of the last 10 completed runs. */
    validatorSeconds: number | null;
  };
  errors: string[];
}

async function oldestPendingAge(services: RuntimeServices, now: number): Promise<number> {
  let oldest = now;
  for (const name of SYNC_QUEUES) {
    if (!services.registry.get(name)) continue;
    const q = services.queues.queue(name);
    // Oldest first: BullMQ lists each state in insertion order with `asc`.
    const jobs = await q.getJobs(PENDING_STATES as never, 0, 0, true);
    for (const j of jobs) if (j?.timestamp && j.timestamp < oldest) oldest = j.timestamp;
  }
  return Math.max(0, (now - oldest) / 1000);
}

async function operations(db: pg.Pool): Promise<Snapshot['sync']['operationsLastHour']> {
  const { rows } = await db.query<{ status: string; n: string }>(
    `SELECT status, count(*) AS n FROM concord_dual_write_ops WHERE created_at > now() - interval '1 hour' GROUP BY status`,
  );
  const get = (s: string) => Number(rows.find((r) => r.status === s)?.n ?? 0);
  return { applied: get('applied'), failed: get('failed'), skipped: get('skipped'), pending: get('pending') };
}

/** Everything the dashboard shows and the alert rules read, collected once. Parts that fail are named in `errors`. */
export async function collectSnapshot(services: RuntimeServices, config: MonitoringConfig): Promise<Snapshot> {
  const now = Date.now();
  const errors: string[] = [];
  const db = services.pg();
  const attempt = async <T>(what: string, work: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      errors.push(`${what}: ${errorMessage(err)}`);
      return fallback;
    }
  };
  const [depths, lagSeconds, ops, tables, latest] = await Promise.all([
    attempt('queues', () => services.queues.queueDepths(), []),
    attempt('sync lag', () => oldestPendingAge(services, now), 0),
    attempt('dual-write operations', () => operations(db), { applied: 0, failed: 0, skipped: 0, pending: 0 }),
    attempt('consistency', () => latestTableStates(db, config.tables), []),
    attempt(
      'validator runs',
      async () =>
        (
          await db.query<{ score: string | null; seconds: string | null }>(
            `SELECT (SELECT score FROM concord_validation_runs WHERE status = 'completed' ORDER BY finished_at DESC LIMIT 1) AS score,
                    (SELECT avg(extract(epoch FROM finished_at - started_at)) FROM (SELECT finished_at, started_at FROM concord_validation_runs
                      WHERE status = 'completed' ORDER BY finished_at DESC LIMIT 10) r) AS seconds`,
          )
        ).rows[0],
      undefined,
    ),
  ]);
  const finished = ops.applied + ops.failed + ops.skipped;
  const queues = depths.map((d) => ({ queue: d.queue, depth: PENDING_STATES.reduce((s, k) => s + (d.counts[k] ?? 0), 0), dlq: d.dlq, counts: d.counts }));
  return {
    at: new Date(now).toISOString(),
    sync: { lagSeconds, successRate: finished === 0 ? null : ops.applied / finished, operationsLastHour: ops },
    queues,
    dlqTotal: queues.reduce((s, q) => s + q.dlq, 0),
    consistency: {
      score: latest?.score == null ? null : Number(latest.score),
      tables: config.tables.map((t) => {
        const s = tables.find((x) => x.table === t);
        return { table: t, score: s?.consistency_score ?? null, checkedAt: s ? String(s.checked_at) : null };
      }),
      validatorSeconds: latest?.seconds == null ? null : Number(latest.seconds),
    },
    errors,
  };
}
