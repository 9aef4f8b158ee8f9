import type { ConcordRuntime } from '../../runtime/index.js';
import { reconcileQueue } from '../../queues/index.js';
import type { RouteSpec } from '../route.js';

/** Manual sync trigger of the consistency manager (the seed's POST /api/v1/sync). */
export function syncRoutes(runtime: ConcordRuntime): RouteSpec[] {
  const { queues } = runtime.services;
  return [
    {
      method: 'post',
      path: '/api/v1/sync',
      summary: 'Trigger a queue-to-portfolio sync run now; if a run is active or already requested, answer with that run',
      tags: ['sync'],
      auth: true,
      responses: { 202: 'The run that will cover this request: `{ runId, status: running|queued, started }`', 503: 'Redis did not answer' },
      handler: async (ctx) => {
        const queue = queues.queue(reconcileQueue.name);
        const active = (await queue.getActive()).find((j) => j?.data?.kind !== 'orphans');
        if (active) {
          ctx.status = 202;
          ctx.body = { runId: String(active.id), status: 'running', started: false };
          return;
        }
        // A manual run already requested and not finished answers for this request too.
        const requested = await queue.getDeduplicationJobId('manual-sync');
        if (requested) {
          ctx.status = 202;
          ctx.body = { runId: String(requested), status: 'queued', started: false };
          return;
        }
        const job = await queues.add(reconcileQueue.name, 'sync', { trigger: 'manual', kind: 'sync', requestedAt: Date.now() }, { deduplication: { id: 'manual-sync' } });
        ctx.status = 202;
        ctx.body = { runId: String(job.id), status: (await job.getState()) === 'active' ? 'running' : 'queued', started: true };
      },
    },
  ];
}
