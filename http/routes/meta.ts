import type { ConcordRuntime, ReadinessCheck } from '../../runtime/index.js';
import { checkReadiness, withTimeout } from '../../runtime/index.js';
import type { RouteSpec } from '../route.js';

export interface AppInfo {
  name: string;
  version: string;
  description: string;
}

/** Open routes: identity, liveness, readiness, metrics. */
export function metaRoutes(runtime: ConcordRuntime, info: AppInfo, readiness: readonly ReadinessCheck[] = []): RouteSpec[] {
  const { services } = runtime;
  return [
    {
      method: 'get',
      path: '/',
      summary: 'Service name, version and description',
      tags: ['meta'],
      auth: false,
      responses: { 200: 'Identity of the service' },
      handler: (ctx) => {
        ctx.body = { ...info, role: services.role, docs: '/docs', openapi: '/openapi.json' };
      },
    },
    {
      method: 'get',
      path: '/health',
      summary: 'Liveness: the process answers; also says whether its database is connected',
      tags: ['meta'],
      auth: false,
      responses: { 200: 'The process is alive (200 even with the database down: that is readiness)' },
      handler: async (ctx) => {
        let database: 'connected' | 'disconnected' | 'not_configured' = 'not_configured';
        if (services.config.databaseUrl) {
          database = await withTimeout('PostgreSQL', 1_000, services.pg().query('SELECT 1')).then(
            () => 'connected' as const,
            () => 'disconnected' as const,
          );
        }
        ctx.body = { status: 'healthy', service: info.name, database, timestamp: new Date().toISOString(), uptimeSeconds: Math.round(runtime.uptimeSeconds) };
      },
    },
    {
      method: 'get',
      path: '/ready',
      summary: 'Readiness: Redis, PostgreSQL, DuckDB and the databases of enabled capabilities answer',
      tags: ['meta'],
      auth: false,
      responses: { 200: 'Every dependency answers', 503: { description: 'At least one dependency failed; the body names it' } },
      handler: async (ctx) => {
        const { ready, checks } = await checkReadiness(services, runtime.processes, readiness);
        const failed = Object.entries(checks).filter(([, c]) => !c.ok).map(([name]) => name);
        ctx.status = ready ? 200 : 503;
        ctx.body = ready
          ? { status: 'ready', checks }
          : { status: 'not_ready', error: { code: 'dependency_unavailable', message: `not ready: ${failed.join(', ')} failed`, details: { failed } }, checks };
      },
    },
    {
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics',
      tags: ['meta'],
      auth: false,
      responses: { 200: { description: 'Prometheus text exposition', contentType: 'text/plain', schema: { type: 'string' } } },
      handler: async (ctx) => {
        ctx.type = services.metrics.registry.contentType;
        ctx.body = await services.metrics.registry.metrics();
      },
    },
  ];
}
