import { z } from 'zod';
import type { ConcordRuntime } from '../../runtime/index.js';
import { ConflictError, NotFoundError, ValidationError } from '../../runtime/index.js';
import { getSyncEvent, listSyncEvents, recordSyncEvent, SYNC_EVENT_TYPES, syncEventsQueue } from '../../queues/index.js';
import { parseInput, type RouteSpec } from '../route.js';

const createBody = z.object({
  file_id: z.uuid(),
  event_type: z.enum(SYNC_EVENT_TYPES),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(10),
  offset: z.coerce.number().int().min(0).default(0),
  event_type: z.enum(SYNC_EVENT_TYPES).optional(),
  processed: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
  file_id: z.uuid().optional(),
});
const idParam = z.object({ event_id: z.uuid() });
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/**
 * Wakes the processor after inserts, at most once per `windowMs` (trailing edge:
 * the wake is sent after the inserts it covers, so none is missed).
 */
function waker(runtime: ConcordRuntime, windowMs = 20): () => void {
  let timer: NodeJS.Timeout | undefined;
  return () => {
    timer ??= setTimeout(() => {
      timer = undefined;
      runtime.services.queues
        .queue(syncEventsQueue.name)
        .add('wake', { trigger: 'insert' }, { deduplication: { id: 'sync-events-wake' } })
        .catch((err: unknown) => runtime.services.log.warn({ err: String(err) }, 'could not wake the sync-event processor; the sweep will'));
    }, windowMs);
  };
}

/** The seed's sync-events API: record, get and list file synchronisation events. */
export function syncEventsRoutes(runtime: ConcordRuntime, opts: { metadataMaxBytes: number }): RouteSpec[] {
  const db = () => runtime.services.pg();
  const wake = waker(runtime);
  const eventSchema = {
    type: 'object',
    properties: {
      event_id: { type: 'string', format: 'uuid' },
      file_id: { type: 'string', format: 'uuid' },
      event_type: { type: 'string', enum: [...SYNC_EVENT_TYPES] },
      created_at: { type: 'string', format: 'date-time' },
      processed: { type: 'boolean' },
      processed_at: { type: ['string', 'null'], format: 'date-time' },
      metadata: { type: 'object' },
    },
  };
  return [
    {
      method: 'post',
      path: '/sync-events',
      summary: 'Record a file synchronisation event; an Idempotency-Key header makes a retried POST return the first event',
      tags: ['sync-events'],
      auth: true,
      requestBody: {
        type: 'object',
        required: ['file_id', 'event_type'],
        properties: { file_id: { type: 'string', format: 'uuid' }, event_type: { type: 'string', enum: [...SYNC_EVENT_TYPES] }, metadata: { type: 'object' } },
      },
      responses: {
        201: { description: '`{ message, event_id }`' },
        200: { description: 'Replay of an Idempotency-Key already used with the same body: the first event' },
        400: 'Bad file_id, event_type, metadata (too large) or JSON',
        409: 'Idempotency-Key already used with another body',
      },
      handler: async (ctx) => {
        if (ctx.request.body === undefined || typeof ctx.request.body !== 'object' || Array.isArray(ctx.request.body)) {
          throw new ValidationError('invalid body', [{ field: '(body)', reason: 'a JSON object is required' }]);
        }
        const body = parseInput(createBody, ctx.request.body, 'body');
        const metadata = body.metadata ?? {};
        const size = Buffer.byteLength(JSON.stringify(metadata));
        if (size > opts.metadataMaxBytes) {
          throw new ValidationError('invalid body', [{ field: 'metadata', reason: `${size} bytes; at most ${opts.metadataMaxBytes} are accepted` }]);
        }
        const key = ctx.get('Idempotency-Key') || undefined;
        if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
          throw new ValidationError('invalid header', [{ field: 'Idempotency-Key', reason: '1 to 200 visible ASCII characters' }]);
        }
        const result = await recordSyncEvent(db(), { file_id: body.file_id, event_type: body.event_type, metadata }, key);
        if ('conflict' in result) throw new ConflictError('Idempotency-Key was already used with a different request body', { field: 'Idempotency-Key' });
        if (result.replayed) {
          ctx.set('Idempotent-Replayed', 'true');
          ctx.status = 200;
        } else {
          wake();
          ctx.status = 201;
        }
        ctx.body = { message: 'Sync event created successfully', event_id: result.event.event_id };
      },
    },
    {
      method: 'get',
      path: '/sync-events/:event_id',
      summary: 'One sync event',
      tags: ['sync-events'],
      auth: true,
      params: [{ name: 'event_id', in: 'path', description: 'Event id (UUID)', schema: { type: 'string', format: 'uuid' } }],
      responses: { 200: { description: 'The event', schema: eventSchema }, 400: 'Not a UUID', 404: 'No such event' },
      handler: async (ctx) => {
        const { event_id } = parseInput(idParam, ctx.params, 'path');
        const event = await getSyncEvent(db(), event_id);
        if (!event) throw new NotFoundError(`no sync event ${event_id}`, { event_id });
        ctx.body = event;
      },
    },
    {
      method: 'get',
      path: '/sync-events',
      summary: 'Sync events, newest first, filtered and paged, with the total count',
      tags: ['sync-events'],
      auth: true,
      params: [
        { name: 'limit', in: 'query', description: 'Default 10, at most 100', schema: { type: 'integer', default: 10, maximum: 100 } },
        { name: 'offset', in: 'query', description: 'Events to skip', schema: { type: 'integer', default: 0 } },
        { name: 'event_type', in: 'query', description: 'upload, delete or update', schema: { type: 'string', enum: [...SYNC_EVENT_TYPES] } },
        { name: 'processed', in: 'query', description: 'true or false', schema: { type: 'boolean' } },
        { name: 'file_id', in: 'query', description: 'Only this file', schema: { type: 'string', format: 'uuid' } },
      ],
      responses: { 200: '`{ total, limit, offset, events }`', 400: 'Bad filter or paging' },
      handler: async (ctx) => {
        const q = parseInput(listQuery, ctx.query, 'query');
        const { total, events } = await listSyncEvents(db(), q);
        ctx.body = { total, limit: q.limit, offset: q.offset, events };
      },
    },
  ];
}
