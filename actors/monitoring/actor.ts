import { UnrecoverableError } from 'bullmq';
import { alertWebhookQueue, type AlertWebhookJob } from '../../queues/validate.js';
import { errorMessage, Mailbox, type Actor, type ActorContext } from '../../runtime/index.js';
import { ALERT_RULES, applyConditions, evaluateRules, listAlerts, notify } from './alerts.js';
import { collectSnapshot, type Snapshot } from './collect.js';
import type { MonitoringConfig } from './config.js';
import { monitoringMetrics, type MonitoringMetrics } from './metrics.js';

export const MONITORING = 'monitoring';

/** POSTs one notification; a 2xx is delivered, 408/429/5xx and network errors are retried, other 4xx are not. */
export async function deliver(url: string, job: AlertWebhookJob, timeoutMs: number): Promise<{ status: number }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'concord-monitoring' },
    body: JSON.stringify({ source: 'concord', event: job.event, alert: job.alert }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.arrayBuffer().catch(() => undefined);
  if (res.ok) return { status: res.status };
  const message = `webhook answered ${res.status}`;
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw new UnrecoverableError(message);
  throw new Error(message);
}

function setGauges(m: MonitoringMetrics, s: Snapshot, firing: Map<string, number>): void {
  m.syncLag.set(s.sync.lagSeconds);
  if (s.sync.successRate !== null) m.successRatio.set(s.sync.successRate);
  m.queueDepth.reset();
  for (const q of s.queues) m.queueDepth.set({ queue: q.queue }, q.depth);
  m.dlqTotal.set(s.dlqTotal);
  for (const t of s.consistency.tables) if (t.score !== null) m.score.set({ table: t.table }, t.score);
  if (s.consistency.validatorSeconds !== null) m.validatorSeconds.set(s.consistency.validatorSeconds);
  for (const rule of ALERT_RULES) m.alertsFiring.set({ rule }, firing.get(rule) ?? 0);
}

/**
 * Every MONITORING_INTERVAL_SECONDS: collects the snapshot (lag, depths, success rate,
 * scores, DLQ size, validator duration) into gauges and evaluates the alert rules; alert
 * transitions are notified through the `monitoring.webhook` queue (retried with backoff).
 * Several processes may run it: the alert table keeps one firing alert per rule and
 * subject, and only the process that opens or resolves it notifies.
 */
export function monitoringActor(config: MonitoringConfig): Actor {
  let timer: NodeJS.Timeout | undefined;
  let inflight: Promise<void> = Promise.resolve();
  let webhooks: Mailbox<AlertWebhookJob> | undefined;
  let last: { at: string; errors: string[] } | undefined;

  async function evaluate(ctx: ActorContext, m: MonitoringMetrics): Promise<void> {
    const { services } = ctx;
    const snapshot = await collectSnapshot(services, config);
    const transitions = await applyConditions(services.pg(), evaluateRules(snapshot, config));
    await notify(config.webhookUrl ? services.queues.queue(alertWebhookQueue.name) : undefined, transitions, config);
    for (const t of transitions) ctx.log.warn({ rule: t.alert.rule, subject: t.alert.subject, event: t.event }, t.alert.message);
    const firing = new Map<string, number>();
    for (const a of await listAlerts(services.pg(), 'firing', 1000)) firing.set(a.rule, (firing.get(a.rule) ?? 0) + 1);
    setGauges(m, snapshot, firing);
    last = { at: snapshot.at, errors: snapshot.errors };
  }

  return {
    name: MONITORING,
    spec: { restart: 'permanent', shutdownMs: 10_000 },
    async start(ctx) {
      const { services } = ctx;
      const m = monitoringMetrics(services.metrics.registry);
      services.registry.register(alertWebhookQueue);
      if (config.webhookUrl) {
        const url = config.webhookUrl;
        const deps = { connection: services.workerConnection, prefix: services.config.queuePrefix, metrics: services.metrics, deadLetters: services.deadLetters, log: ctx.log };
        webhooks = new Mailbox<AlertWebhookJob>(alertWebhookQueue, (job) => deliver(url, job, config.webhookTimeoutMs), deps, { concurrency: 4 });
        await webhooks.start((err) => ctx.fail(err));
      }
      const tick = () => {
        inflight = inflight.then(() => evaluate(ctx, m)).catch((err: unknown) => ctx.log.warn({ err: errorMessage(err) }, 'monitoring evaluation failed; will try again'));
      };
      tick();
      timer = setInterval(tick, config.intervalSeconds * 1000);
      timer.unref();
    },
    async stop(timeoutMs) {
      clearInterval(timer);
      await inflight;
      await webhooks?.stop(timeoutMs);
      webhooks = undefined;
    },
    describe: () => ({ lastEvaluation: last?.at ?? null, errors: last?.errors ?? [], webhook: Boolean(config.webhookUrl) }),
  };
}
