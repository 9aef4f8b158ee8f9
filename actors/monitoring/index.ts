import { alertWebhookQueue } from '../../queues/validate.js';
import type { RuntimeServices } from '../../runtime/index.js';
import type { ActorFactory } from '../factory.js';
import { monitoringActor, MONITORING } from './actor.js';
import { listAlerts } from './alerts.js';
import { collectSnapshot } from './collect.js';
import { loadMonitoringConfig, type MonitoringConfig } from './config.js';

export { MONITORING, deliver } from './actor.js';
export { loadMonitoringConfig, type MonitoringConfig } from './config.js';
export { collectSnapshot, type Snapshot } from './collect.js';
export { evaluateRules, applyConditions, listAlerts, ALERT_RULES, type AlertRow, type Condition } from './alerts.js';

export function monitoringFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory & { config(): MonitoringConfig } {
  let config: MonitoringConfig | undefined;
  const cfg = () => (config ??= loadMonitoringConfig(env));
  return {
    name: MONITORING,
    queues: [alertWebhookQueue],
    enabled: () => cfg().enabled,
    create: () => monitoringActor(cfg()),
    config: cfg,
  };
}

/** What http/routes/monitoring.ts needs (structurally its MonitoringDeps). */
export function monitoringDeps(services: RuntimeServices, config: MonitoringConfig) {
  return {
    thresholds: { syncLagMinutes: config.syncLagThresholdMinutes, consistencyScore: config.scoreThreshold, deadLetterQueue: config.dlqThreshold },
    snapshot: () => collectSnapshot(services, config),
    alerts: (state: 'firing' | 'resolved' | 'all', limit: number) => listAlerts(services.pg(), state, limit),
    metrics: async () => ({ contentType: services.metrics.registry.contentType, body: await services.metrics.registry.metrics() }),
  };
}
