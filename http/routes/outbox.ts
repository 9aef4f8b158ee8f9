import { z } from 'zod';
import type { ConcordRuntime } from '../../runtime/index.js';
import { NotFoundError } from '../../runtime/index.js';
import { parseInput, type RouteSpec } from '../route.js';

const listQuery = z.object({
  status: z.enum(['pending', 'published', 'dead']).optional(),
  aggregate_id: z.string().min(1).max(500).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});
const idParam = z.object({ id: z.uuid() });

/** The outbox's state, read from PostgreSQL; the relay's work stays in the relay. */
export function outboxRoutes(runtime: ConcordRuntime): RouteSpec[] {
  const db = () => runtime.services.pg();
  return [
    {
      method: 'get',
      path: '/api/v1/outbox/stats',
      summary: 'Outbox events by status, oldest pending age (processing lag), throughput over the last minute',
      tags: ['outbox'],
      auth: true,
      responses: { 200: 'Outbox statistics', 503: 'PostgreSQL did not answer' },
      handler: async (ctx) => {
        const { rows } = await db().query<Record<string, string | null>>(
          `SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                  count(*) FILTER (WHERE status = 'published') AS published,
                  count(*) FILTER (WHERE status = 'dead') AS dead,
                  count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
                  extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending'))::text AS oldest_pending_seconds,
                  count(*) FILTER (WHERE published_at > now() - interval '1 minute') AS published_last_minute
             FROM concord_outbox`,
        );
        const r = rows[0]!;
        ctx.body = {
          pending: Number(r.pending),
          published: Number(r.published),
          dead: Number(r.dead),
          retrying: Number(r.retrying),
          oldestPendingSeconds: r.oldest_pending_seconds === null ? 0 : Number(r.oldest_pending_seconds),
          publishedPerSecondLastMinute: Number(r.published_last_minute) / 60,
        };
      },
    },
    {
      method: 'get',
      path: '/api/v1/outbox/events',
      summary: 'Outbox events, newest first, by status and aggregate',
      tags: ['outbox'],
      auth: true,
      params: [
        { name: 'status', in: 'query', description: 'pending, published or dead', schema: { type: 'string', enum: ['pending', 'published', 'dead'] } },
        { name: 'aggregate_id', in: 'query', description: 'Only this aggregate, oldest first', schema: { type: 'string' } },
        { name: 'limit', in: 'query', description: 'At most 500', schema: { type: 'integer', default: 50 } },
        { name: 'offset', in: 'query', description: 'Events to skip', schema: { type: 'integer', default: 0 } },
      ],
      responses: { 200: '`{ total, events }`', 400: 'Bad status, limit or offset' },
      handler: async (ctx) => {
        const q = parseInput(listQuery, ctx.query, 'query');
        const where = ['($1::text IS NULL OR status = $1)', '($2::text IS NULL OR aggregate_id = $2)'].join(' AND ');
        const args = [q.status ?? null, q.aggregate_id ?? null];
        const [total, events] = await Promise.all([
          db().query<{ n: string }>(`SELECT count(*) AS n FROM concord_outbox WHERE ${where}`, args),
          db().query(
            `SELECT o.id, o.seq::text AS seq, o.aggregate_type, o.aggregate_id, o.topic, o.event_type, o.payload, o.headers, o.priority, o.status,
                    o.attempts, o.max_attempts, o.next_attempt_at, o.last_error, o.created_at, o.published_at
               FROM concord_outbox o WHERE ${where}
              ORDER BY ${q.aggregate_id ? 'o.seq ASC' : 'o.seq DESC'} LIMIT $3 OFFSET $4`,
            [...args, q.limit, q.offset],
          ),
        ]);
        ctx.body = { total: Number(total.rows[0]!.n), limit: q.limit, offset: q.offset, events: events.rows };
      },
    },
    {
      method: 'post',
      path: '/api/v1/outbox/events/:id/retry',
      summary: 'Put a dead event back to pending, with its attempts reset',
      tags: ['outbox'],
      auth: true,
      params: [{ name: 'id', in: 'path', description: 'Event id (UUID)', schema: { type: 'string', format: 'uuid' } }],
      responses: { 202: 'The event is pending again', 400: 'Not a UUID', 404: 'No dead event with this id' },
      handler: async (ctx) => {
        const { id } = parseInput(idParam, ctx.params, 'path');
        const { rowCount } = await db().query(
          `UPDATE concord_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL WHERE id = $1 AND status = 'dead'`,
          [id],
        );
        if (!rowCount) throw new NotFoundError(`no dead outbox event ${id}`, { id });
        await db().query(`SELECT pg_notify('concord_outbox', '')`);
        ctx.status = 202;
        ctx.body = { id, status: 'pending' };
      },
    },
  ];
}
