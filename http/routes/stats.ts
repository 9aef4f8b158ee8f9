import type { ConcordRuntime, StatsSection } from '../../runtime/index.js';
import type { RouteSpec } from '../route.js';

/**
 * `/api/v1/stats` is one document: a `runtime` section (queues, actors of every
 * live process, this process) and one section per capability (`sync`, `cdc`, ...),
 * each contributed by a `StatsSection`.
 */
export function statsRoutes(runtime: ConcordRuntime, sections: readonly StatsSection[] = []): RouteSpec[] {
  const { services } = runtime;
  return [
    {
      method: 'get',
      path: '/api/v1/stats',
      summary: 'Queue counts by state, actor states and restarts, process uptime',
      tags: ['runtime'],
      auth: true,
      responses: { 200: 'Runtime statistics', 503: 'Redis did not answer' },
      handler: async (ctx) => {
        const [depths, processes, extra] = await Promise.all([
          services.queues.queueDepths(),
          runtime.liveProcesses(),
          Promise.all(sections.map(async (s) => [s.name, await s.collect(services)] as const)),
        ]);
        const actors: Record<string, Array<{ process: string; state: string; restarts: number; lastError?: string | undefined; detail?: unknown }>> = {};
        for (const p of processes) {
          for (const a of p.actors) {
            (actors[a.name] ??= []).push({ process: p.id, state: a.state, restarts: a.restarts, lastError: a.lastError, detail: a.detail });
          }
        }
        const mem = process.memoryUsage();
        ctx.body = {
          runtime: {
            queues: Object.fromEntries(depths.map((d) => [d.queue, { ...d.counts, dlq: d.dlq }])),
            actors,
            processes: processes.map((p) => ({ id: p.id, role: p.role, pid: p.pid, host: p.host, startedAt: new Date(p.startedAt).toISOString(), heartbeatAt: new Date(p.heartbeatAt).toISOString() })),
            process: {
              id: services.processId,
              role: services.role,
              pid: process.pid,
              uptimeSeconds: Math.round(runtime.uptimeSeconds),
              rssBytes: mem.rss,
              heapUsedBytes: mem.heapUsed,
            },
          },
          ...Object.fromEntries(extra),
        };
      },
    },
  ];
}
