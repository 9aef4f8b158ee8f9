import { z } from 'zod';
import type { ConcordRuntime } from '../../runtime/index.js';
import { parseInput, type RouteSpec } from '../route.js';

const queueParam = { name: 'queue', in: 'path' as const, description: 'Queue name, e.g. cdc.apply (not the .dlq name)', schema: { type: 'string' } };
const idParam = { name: 'id', in: 'path' as const, description: 'DLQ entry id', schema: { type: 'string' } };

const pageQuery = z.object({
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});

/** Dead-letter queues: list, page through, retry and discard entries. */
export function dlqRoutes(runtime: ConcordRuntime): RouteSpec[] {
  const { deadLetters, queues } = runtime.services;
  return [
    {
      method: 'get',
      path: '/api/v1/dlq',
      summary: 'Entries per dead-letter queue',
      tags: ['dlq'],
      auth: true,
      responses: { 200: 'One row per queue with its DLQ size' },
      handler: async (ctx) => {
        ctx.body = { queues: await deadLetters.counts() };
      },
    },
    {
      method: 'get',
      path: '/api/v1/dlq/:queue',
      summary: 'A page of one queue\'s dead-letter entries, oldest first',
      tags: ['dlq'],
      auth: true,
      params: [
        queueParam,
        { name: 'offset', in: 'query', description: 'Entries to skip', schema: { type: 'integer', minimum: 0, default: 0 } },
        { name: 'limit', in: 'query', description: 'Entries per page', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
      ],
      responses: { 200: 'Entries with payload, reason, attempts and time', 400: 'Bad offset or limit', 404: 'Unknown queue' },
      handler: async (ctx) => {
        const { offset, limit } = parseInput(pageQuery, ctx.query, 'query');
        const queue = String(ctx.params.queue);
        queues.definition(queue);
        ctx.body = await deadLetters.list(queue, offset, limit);
      },
    },
    {
      method: 'post',
      path: '/api/v1/dlq/:queue/:id/retry',
      summary: 'Enqueue a dead-letter entry\'s job again and remove the entry',
      tags: ['dlq'],
      auth: true,
      params: [queueParam, idParam],
      responses: { 202: 'Job enqueued again; body has the new job id', 404: 'Unknown queue or entry' },
      handler: async (ctx) => {
        const queue = String(ctx.params.queue);
        queues.definition(queue);
        const { jobId } = await deadLetters.retry(queue, String(ctx.params.id));
        ctx.status = 202;
        ctx.body = { retried: true, queue, id: ctx.params.id, jobId };
      },
    },
    {
      method: 'delete',
      path: '/api/v1/dlq/:queue/:id',
      summary: 'Discard a dead-letter entry',
      tags: ['dlq'],
      auth: true,
      params: [queueParam, idParam],
      responses: { 204: 'Entry removed', 404: 'Unknown queue or entry' },
      handler: async (ctx) => {
        const queue = String(ctx.params.queue);
        queues.definition(queue);
        await deadLetters.discard(queue, String(ctx.params.id));
        ctx.status = 204;
      },
    },
  ];
}
