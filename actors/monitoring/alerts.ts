import type { Queue } from 'bullmq';
import type pg from 'pg';
import type { AlertWebhookJob } from '../../queues/validate.js';
import type { MonitoringConfig } from './config.js';
import type { Snapshot } from './collect.js';

export const ALERT_RULES = ['sync_lag', 'consistency_score', 'dead_letter_queue'] as const;
export type AlertRule = (typeof ALERT_RULES)[number];

/** One rule's verdict on one subject: the condition holds (`firing`) or not. */
export interface Condition {
  rule: AlertRule;
  subject: string;
  firing: boolean;
  value: number;
  threshold: number;
  message: string;
}

/** The alert rules over a snapshot. A table never checked (score null) neither fires nor resolves its alert. */
export function evaluateRules(s: Snapshot, config: MonitoringConfig): Condition[] {
  const lagMinutes = s.sync.lagSeconds / 60;
  const out: Condition[] = [
    {
      rule: 'sync_lag',
      subject: 'global',
      firing: lagMinutes > config.syncLagThresholdMinutes,
      value: lagMinutes,
      threshold: config.syncLagThresholdMinutes,
      message: `sync lag ${lagMinutes.toFixed(1)} min (threshold ${config.syncLagThresholdMinutes} min): the oldest change not yet in DuckDB`,
    },
    {
      rule: 'dead_letter_queue',
      subject: 'global',
      firing: s.dlqTotal > config.dlqThreshold,
      value: s.dlqTotal,
      threshold: config.dlqThreshold,
      message: `${s.dlqTotal} entries in dead-letter queues (threshold ${config.dlqThreshold})`,
    },
  ];
  for (const t of s.consistency.tables) {
    if (t.score === null) continue;
    out.push({
      rule: 'consistency_score',
      subject: t.table,
      firing: t.score < config.scoreThreshold,
      value: t.score,
      threshold: config.scoreThreshold,
      message: `consistency score of ${t.table} is ${t.score}% (threshold ${config.scoreThreshold}%)`,
    });
  }
  return out;
}

export interface AlertRow {
  id: string;
  rule: string;
  subject: string;
  state: 'firing' | 'resolved';
  message: string;
  value: number | null;
  threshold: number | null;
  first_seen: string;
  last_seen: string;
  resolved_at: string | null;
}

const COLUMNS = `id::text AS id, rule, subject, state, message, value, threshold, first_seen, last_seen, resolved_at`;

/**
 * Applies conditions to the alert table. A holding condition with no firing alert opens
 * one (a partial unique index keeps it to one, even with several monitoring processes),
 * an open one only gets `last_seen`/value/message; a cleared condition resolves it.
 * Returns the transitions, each to be notified once.
 */
export async function applyConditions(db: pg.Pool, conditions: readonly Condition[]): Promise<Array<{ event: 'firing' | 'resolved'; alert: AlertRow }>> {
  const out: Array<{ event: 'firing' | 'resolved'; alert: AlertRow }> = [];
  for (const c of conditions) {
    if (c.firing) {
      const { rows } = await db.query<AlertRow & { inserted: boolean }>(
        `INSERT INTO concord_alerts (rule, subject, state, message, value, threshold) VALUES ($1, $2, 'firing', $3, $4, $5)
         ON CONFLICT (rule, subject) WHERE state = 'firing'
         DO UPDATE SET last_seen = now(), message = excluded.message, value = excluded.value, threshold = excluded.threshold
         RETURNING ${COLUMNS}, (xmax = 0) AS inserted`,
        [c.rule, c.subject, c.message, c.value, c.threshold],
      );
      const { inserted, ...alert } = rows[0]!;
      if (inserted) out.push({ event: 'firing', alert });
    } else {
      const { rows } = await db.query<AlertRow>(
        `UPDATE concord_alerts SET state = 'resolved', resolved_at = now(), last_seen = now(), value = $3,
                message = message || ' — resolved: ' || $4
          WHERE rule = $1 AND subject = $2 AND state = 'firing' RETURNING ${COLUMNS}`,
        [c.rule, c.subject, c.value, c.message],
      );
      for (const alert of rows) out.push({ event: 'resolved', alert });
    }
  }
  return out;
}

export async function listAlerts(db: pg.Pool, state: 'firing' | 'resolved' | 'all', limit: number): Promise<AlertRow[]> {
  const { rows } = await db.query<AlertRow>(
    `SELECT ${COLUMNS} FROM concord_alerts WHERE ($1 = 'all' OR state = $1) ORDER BY (state = 'firing') DESC, last_seen DESC LIMIT $2`,
    [state, limit],
  );
  return rows;
}

/** Enqueues one notification per transition when a webhook is configured. */
export async function notify(queue: Queue | undefined, transitions: ReadonlyArray<{ event: 'firing' | 'resolved'; alert: AlertRow }>, config: MonitoringConfig): Promise<void> {
  if (!queue || !config.webhookUrl) return;
  for (const t of transitions) {
    const data: AlertWebhookJob = { alertId: t.alert.id, event: t.event, alert: { ...t.alert } };
    await queue.add(t.event, data, {
      jobId: `alert-${t.alert.id}-${t.event}`,
      attempts: config.webhookAttempts,
      backoff: { type: 'exponential', delay: config.webhookRetryDelayMs, jitter: 0.2 },
    });
  }
}
