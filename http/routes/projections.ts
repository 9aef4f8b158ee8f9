import { z } from 'zod';
import type { ConcordRuntime } from '../../runtime/index.js';
import { NotFoundError } from '../../runtime/index.js';
import { projectionStatuses, requestRebuild, PROJECTION_NAME } from '../../cqrs/index.js';
import { parseInput, type RouteSpec } from '../route.js';

const nameParam = z.object({ name: z.string().regex(PROJECTION_NAME, 'lower-case letters, digits, - and _') });
const rebuildBody = z.object({ fromPosition: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0) }).strict();
const streamParam = z.object({ id: z.string().min(1).max(500) });
const streamQuery = z.object({
  from: z.coerce.number().int().min(1).default(1),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

/** Projections' state and stream reads, from PostgreSQL; rebuilds are done by the projection's runner. */
export function projectionsRoutes(runtime: ConcordRuntime): RouteSpec[] {
  const db = () => runtime.services.pg();
  return [
    {
      method: 'get',
      path: '/api/v1/projections',
      summary: 'Every registered projection: status, last processed position, log head, lag, dead letters, rebuild progress',
      tags: ['projections'],
      auth: true,
      responses: { 200: '`{ projections: [...] }`', 503: 'PostgreSQL did not answer' },
      handler: async (ctx) => {
        ctx.body = { projections: await projectionStatuses(db()) };
      },
    },
    {
      method: 'post',
      path: '/api/v1/projections/:name/rebuild',
      summary: 'Request a rebuild: the runner resets the read model and replays from fromPosition (resumable)',
      tags: ['projections'],
      auth: true,
      params: [{ name: 'name', in: 'path', description: 'Projection name', schema: { type: 'string' } }],
      requestBody: { type: 'object', properties: { fromPosition: { type: 'integer', minimum: 0, default: 0 } }, additionalProperties: false },
      responses: { 202: 'Rebuild requested', 400: 'Bad name or fromPosition (or a partial rebuild the projection cannot do)', 404: 'No such projection' },
      handler: async (ctx) => {
        const { name } = parseInput(nameParam, ctx.params, 'path');
        const body = parseInput(rebuildBody, ctx.request.body ?? {}, 'body');
        const r = await requestRebuild(db(), name, { fromPosition: body.fromPosition });
        ctx.status = 202;
        ctx.body = { ...r, status: 'requested' };
      },
    },
    {
      method: 'get',
      path: '/api/v1/streams/:id',
      summary: 'Events of a stream from a version, as stored (schema_version says which upcasters apply)',
      tags: ['projections'],
      auth: true,
      params: [
        { name: 'id', in: 'path', description: 'Stream id, e.g. order-42', schema: { type: 'string' } },
        { name: 'from', in: 'query', description: 'First version (1 = the first event)', schema: { type: 'integer', default: 1 } },
        { name: 'limit', in: 'query', description: 'At most 1000', schema: { type: 'integer', default: 100 } },
      ],
      responses: { 200: '`{ streamId, version, events }`', 400: 'Bad from or limit', 404: 'No such stream' },
      handler: async (ctx) => {
        const { id } = parseInput(streamParam, ctx.params, 'path');
        const q = parseInput(streamQuery, ctx.query, 'query');
        const stream = await db().query<{ version: string }>('SELECT version::text AS version FROM concord_streams WHERE stream_id = $1 AND version > 0', [id]);
        if (!stream.rows[0]) throw new NotFoundError(`no stream ${id}`, { id });
        const { rows } = await db().query(
          `SELECT event_id AS id, version, position, event_type AS type, schema_version, data, metadata, created_at AS time
             FROM concord_events WHERE stream_id = $1 AND version >= $2 ORDER BY concord_events.version LIMIT $3`,
          [id, q.from, q.limit],
        );
        ctx.body = { streamId: id, version: Number(stream.rows[0].version), from: q.from, events: rows.map((r: Record<string, unknown>) => ({ ...r, version: Number(r.version), position: Number(r.position) })) };
      },
    },
  ];
}
