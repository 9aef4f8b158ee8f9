import { z } from 'zod';
import { parseInput, type RouteSpec } from '../route.js';

interface SnapshotLike {
  at: string;
  sync: { lagSeconds: number; successRate: number | null };
  queues: Array<{ queue: string; depth: number; dlq: number }>;
  dlqTotal: number;
  consistency: { score: number | null; tables: Array<{ table: string; score: number | null }>; validatorSeconds: number | null };
  errors: string[];
}

/** What the monitoring routes need (actors/monitoring monitoringDeps gives it). */
export interface MonitoringDeps {
  thresholds: Record<string, number>;
  snapshot(): Promise<SnapshotLike>;
  alerts(state: 'firing' | 'resolved' | 'all', limit: number): Promise<Array<{ rule: string; state: string }>>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

const BASE = '/api/v1/data-sync/monitoring';
const alertsQuery = z.object({ state: z.enum(['firing', 'resolved', 'all']).default('firing'), limit: z.coerce.number().int().min(1).max(1000).default(100) });

/** `/api/v1/data-sync/monitoring/*`: read-only views of what the monitoring actor evaluates. */
export function monitoringRoutes(deps: MonitoringDeps): RouteSpec[] {
  return [
    {
      method: 'get',
      path: `${BASE}/dashboard`,
      summary: 'One JSON with sync lag, queue depths, success rate, consistency scores, DLQ size, validator duration and firing alerts',
      tags: ['monitoring'],
      auth: true,
      responses: { 200: 'The dashboard data' },
      handler: async (ctx) => {
        const [snapshot, alerts] = await Promise.all([deps.snapshot(), deps.alerts('firing', 100)]);
        ctx.body = { ...snapshot, thresholds: deps.thresholds, alerts };
      },
    },
    {
      method: 'get',
      path: `${BASE}/health`,
      summary: 'healthy (no alert firing), degraded (alerts firing) or unhealthy (state could not be read: 503)',
      tags: ['monitoring'],
      auth: true,
      responses: { 200: '`{ status: healthy | degraded, alerts_firing, checks }`', 503: 'unhealthy: a store could not be read' },
      handler: async (ctx) => {
        const snapshot = await deps.snapshot();
        const firing = await deps.alerts('firing', 1000).catch(() => undefined);
        const unhealthy = snapshot.errors.length > 0 || firing === undefined;
        const status = unhealthy ? 'unhealthy' : firing.length > 0 ? 'degraded' : 'healthy';
        ctx.status = unhealthy ? 503 : 200;
        ctx.body = {
          status,
          at: snapshot.at,
          alerts_firing: firing?.map((a) => a.rule) ?? [],
          checks: { sync_lag_seconds: snapshot.sync.lagSeconds, dlq_total: snapshot.dlqTotal, consistency_score: snapshot.consistency.score },
          errors: snapshot.errors,
        };
      },
    },
    {
      method: 'get',
      path: `${BASE}/alerts`,
      summary: 'Alerts (firing by default), each with state, first and last seen, and message',
      tags: ['monitoring'],
      auth: true,
      params: [
        { name: 'state', in: 'query', description: 'firing (default), resolved or all', schema: { type: 'string', enum: ['firing', 'resolved', 'all'] } },
        { name: 'limit', in: 'query', description: 'At most 1000', schema: { type: 'integer', default: 100 } },
      ],
      responses: { 200: '`{ alerts }`', 400: 'Bad state or limit' },
      handler: async (ctx) => {
        const q = parseInput(alertsQuery, ctx.query, 'query');
        ctx.body = { alerts: await deps.alerts(q.state, q.limit) };
      },
    },
    {
      method: 'get',
      path: `${BASE}/metrics/prometheus`,
      summary: 'This process\'s metrics in Prometheus text format (same as /metrics)',
      tags: ['monitoring'],
      auth: true,
      responses: { 200: { description: 'Prometheus text', contentType: 'text/plain' } },
      handler: async (ctx) => {
        const m = await deps.metrics();
        ctx.type = m.contentType;
        ctx.body = m.body;
      },
    },
  ];
}
