import type { ConcordRuntime } from '../../runtime/index.js';
import type { RouteSpec } from '../route.js';

/** `GET /api/v1/data-sync/cdc/status`: read-only; the reading itself stays in actors/cdc-reader. */
export function cdcRoutes(runtime: ConcordRuntime, opts: { status: (runtime: ConcordRuntime) => Promise<unknown> }): RouteSpec[] {
  return [
    {
      method: 'get',
      path: '/api/v1/data-sync/cdc/status',
      summary: 'CDC: replication slot, publication, monitored tables and their state, confirmed and applied LSN, lag in bytes and seconds',
      tags: ['data-sync'],
      auth: true,
      responses: { 200: '`{ enabled, slot, publication, tables, appliedLsn, lag, reader }`', 503: 'PostgreSQL or Redis did not answer' },
      handler: async (ctx) => {
        ctx.body = await opts.status(runtime);
      },
    },
  ];
}
