import { z } from 'zod';
import type { ConcordRuntime } from '../../runtime/index.js';
import { ValidationError } from '../../runtime/index.js';
import {
  getSagaDefinition,
  getSagaStatus,
  listSagas,
  parseSagaSteps,
  requestSagaCancel,
  retrySaga,
  SAGA_STATUSES,
  sagaStepQueue,
  sagaTypeSchema,
  startSagaRecord,
  stepsDigest,
} from '../../queues/index.js';
import { parseInput, type RouteSpec } from '../route.js';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;
const startBody = z
  .object({
    saga_type: sagaTypeSchema,
    context: z.record(z.string(), z.unknown()).default({}),
    /** Omitted: the registered definition's steps. */
    steps: z.array(z.unknown()).optional(),
    idempotency_key: z.string().regex(IDEMPOTENCY_KEY, '1 to 200 visible ASCII characters').optional(),
  })
  .strict();
const listQuery = z.object({
  status: z.enum(SAGA_STATUSES).optional(),
  type: sagaTypeSchema.optional(),
  attention: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});
const idParam = z.object({ id: z.uuid() });
const idSpec = [{ name: 'id', in: 'path' as const, description: 'Saga id (UUID)', schema: { type: 'string', format: 'uuid' } }];
const stepSchema = {
  type: 'object',
  required: ['step_name', 'service_name', 'action'],
  properties: {
    step_name: { type: 'string' },
    service_name: { type: 'string' },
    action: { type: 'string' },
    compensation_action: { type: 'string' },
    data: { type: 'object' },
    parallel_group: { type: 'string' },
    condition: { type: 'string', description: 'Safe expression over the context, e.g. customer.is_premium' },
    timeout_ms: { type: 'integer' },
    retry_attempts: { type: 'integer' },
  },
};

/**
 * Sagas over HTTP: start one of a registered type, read, list, cancel, retry. The
 * work itself is done by saga-coordinator workers; these routes write the saga's
 * record and enqueue, nothing more.
 */
export function sagaRoutes(runtime: ConcordRuntime): RouteSpec[] {
  const db = () => runtime.services.pg();
  const queue = () => runtime.services.queues.queue(sagaStepQueue.name);
  return [
    {
      method: 'post',
      path: '/api/v1/sagas',
      summary: 'Start a saga of a registered type with a context (and optionally its own steps); an idempotency key returns the same saga',
      tags: ['sagas'],
      auth: true,
      requestBody: {
        type: 'object',
        required: ['saga_type'],
        properties: { saga_type: { type: 'string' }, context: { type: 'object' }, steps: { type: 'array', items: stepSchema }, idempotency_key: { type: 'string' } },
      },
      responses: {
        201: '`{ saga_id, status }`',
        200: 'Replay of an idempotency key already used with the same request: the first saga',
        400: 'Unknown saga_type, bad step definition or invalid condition (named in details)',
        409: 'Idempotency key already used with another request',
      },
      handler: async (ctx) => {
        const body = parseInput(startBody, ctx.request.body ?? {}, 'body');
        const key = body.idempotency_key ?? (ctx.get('Idempotency-Key') || undefined);
        if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) throw new ValidationError('invalid header', [{ field: 'Idempotency-Key', reason: '1 to 200 visible ASCII characters' }]);
        const def = await getSagaDefinition(db(), body.saga_type);
        if (!def) throw new ValidationError('unknown saga type', [{ field: 'saga_type', reason: `${body.saga_type} is not a registered saga type` }]);
        let steps = def.steps;
        let version = def.version;
        if (body.steps !== undefined) {
          steps = parseSagaSteps(body.steps);
          if (stepsDigest(steps) !== stepsDigest(def.steps)) version = stepsDigest(steps);
        }
        const r = await startSagaRecord(db(), queue(), { sagaType: body.saga_type, orchestrator: 'http', version, steps, context: body.context, idempotencyKey: key });
        ctx.status = r.created ? 201 : 200;
        if (!r.created) ctx.set('Idempotent-Replayed', 'true');
        ctx.body = { saga_id: r.id, status: r.created ? 'pending' : (await getSagaStatus(db(), r.id)).status };
      },
    },
    {
      method: 'get',
      path: '/api/v1/sagas/:id',
      summary: 'A saga: status, current step, per-step state and attempts, last error, timings',
      tags: ['sagas'],
      auth: true,
      params: idSpec,
      responses: { 200: 'The saga', 400: 'Not a UUID', 404: 'No such saga' },
      handler: async (ctx) => {
        const { id } = parseInput(idParam, ctx.params, 'path');
        ctx.body = await getSagaStatus(db(), id);
      },
    },
    {
      method: 'get',
      path: '/api/v1/sagas',
      summary: 'Sagas, newest first, by status and type (attention=true: those an operator must look at), paged',
      tags: ['sagas'],
      auth: true,
      params: [
        { name: 'status', in: 'query', description: SAGA_STATUSES.join(', '), schema: { type: 'string', enum: [...SAGA_STATUSES] } },
        { name: 'type', in: 'query', description: 'Saga type', schema: { type: 'string' } },
        { name: 'attention', in: 'query', description: 'true: failed compensations and version mismatches', schema: { type: 'boolean' } },
        { name: 'limit', in: 'query', description: 'At most 500', schema: { type: 'integer', default: 50 } },
        { name: 'offset', in: 'query', description: 'Sagas to skip', schema: { type: 'integer', default: 0 } },
      ],
      responses: { 200: '`{ total, limit, offset, sagas }`', 400: 'Bad filter or paging' },
      handler: async (ctx) => {
        const q = parseInput(listQuery, ctx.query, 'query');
        const { total, sagas } = await listSagas(db(), q);
        ctx.body = { total, limit: q.limit, offset: q.offset, sagas };
      },
    },
    {
      method: 'post',
      path: '/api/v1/sagas/:id/cancel',
      summary: 'Cancel a pending or running saga: what completed is compensated',
      tags: ['sagas'],
      auth: true,
      params: idSpec,
      responses: { 202: 'Cancellation accepted', 400: 'Not a UUID', 404: 'No such saga', 409: 'The saga already ended' },
      handler: async (ctx) => {
        const { id } = parseInput(idParam, ctx.params, 'path');
        const r = await requestSagaCancel(db(), queue(), id);
        ctx.status = 202;
        ctx.body = { saga_id: id, status: r.status, cancel_requested: true };
      },
    },
    {
      method: 'post',
      path: '/api/v1/sagas/:id/retry',
      summary: 'Retry a failed saga (its failed compensations get fresh attempts), or resume one reported for a version mismatch',
      tags: ['sagas'],
      auth: true,
      params: idSpec,
      responses: { 202: 'Retry accepted', 400: 'Not a UUID', 404: 'No such saga', 409: 'The saga is not failed' },
      handler: async (ctx) => {
        const { id } = parseInput(idParam, ctx.params, 'path');
        const r = await retrySaga(db(), queue(), id);
        ctx.status = 202;
        ctx.body = { saga_id: id, status: r.status };
      },
    },
  ];
}
