import { z } from 'zod';
import type { ConcordRuntime } from '../../runtime/index.js';
import { NotFoundError, ValidationError } from '../../runtime/index.js';
import { dualWriteQueue, tableSyncQueue, type TableSyncJob } from '../../queues/dual-write.js';
import { parseInput, type RouteSpec } from '../route.js';

const CONSISTENCY = ['strong', 'eventual', 'weak'] as const;
const STRATEGIES = ['real_time', 'near_real_time', 'batch', 'recovery', 'hybrid'] as const;
type Scalar = string | number | boolean;

/** What the routes need from the dual-writer capability (wired in cli/capabilities.ts). */
export interface DataSyncDeps {
  tables: readonly string[];
  defaultBatchSize: number;
  maxBatchSize: number;
  updatedAtColumn: string;
  normalizeTable(name: string): string | null;
  status(): Promise<unknown>;
  /** Column names of a PostgreSQL table (404 when it does not exist). */
  columns(table: string): Promise<string[]>;
  write(
    kind: 'create' | 'update' | 'delete',
    table: string,
    primaryKey: Scalar | Record<string, Scalar> | undefined,
    data: Record<string, unknown>,
    opts: { consistency?: (typeof CONSISTENCY)[number]; strategy?: (typeof STRATEGIES)[number] },
  ): Promise<{ success: boolean; duckdb: string }>;
}

const scalar = z.union([z.string().min(1), z.number(), z.boolean()]);
const operationBody = z.object({
  table_name: z.string().min(1),
  operation_type: z.enum(['create', 'update', 'delete']),
  data: z.record(z.string(), z.unknown()).default({}),
  primary_key: z.union([scalar, z.record(z.string(), scalar)]).optional(),
  consistency_level: z.enum(CONSISTENCY).optional(),
  strategy: z.enum(STRATEGIES).optional(),
});
const pageQuery = z.object({
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});
const timestamp = z
  .string()
  .refine((s) => /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$/.test(s.trim()) && !Number.isNaN(Date.parse(s)), {
    message: 'an ISO 8601 timestamp such as 2024-01-01T00:00:00Z',
  });

/** `/api/v1/data-sync`: dual writes, table syncs, the dual-write DLQ, status. */
export function dataSyncRoutes(runtime: ConcordRuntime, deps: DataSyncDeps): RouteSpec[] {
  const { services } = runtime;
  const base = '/api/v1/data-sync/sync';
  const batchQuery = z.object({ batch_size: z.coerce.number().int().min(1).max(deps.maxBatchSize).default(deps.defaultBatchSize) });
  const incrementalBody = z.object({ since: timestamp, batch_size: z.coerce.number().int().min(1).max(deps.maxBatchSize).optional() });

  const knownTable = (raw: string, field: string): string => {
    const table = deps.normalizeTable(raw);
    if (table === null || !deps.tables.includes(table)) {
      throw new ValidationError(`unknown table ${JSON.stringify(raw)}`, [{ field, reason: `not one of DATA_SYNC_TABLES: ${deps.tables.join(', ') || '(none configured)'}` }]);
    }
    return table;
  };
  const enqueueSync = async (job: TableSyncJob) => {
    services.registry.register(tableSyncQueue);
    const added = await services.queues.queue(tableSyncQueue.name).add(job.mode, job);
    return { jobId: added.id, status: 'queued', ...job };
  };
  const findDead = async (operationId: string) => {
    for (let offset = 0; ; offset += 500) {
      const page = await services.deadLetters.list(dualWriteQueue.name, offset, 500);
      const hit = page.entries.find((e) => (e.data as { operationId?: string }).operationId === operationId);
      if (hit) return hit;
      if (page.entries.length < 500) return undefined;
    }
  };
  const tableParam = { name: 'table', in: 'path' as const, description: 'Table name (schema.table or table in public)', schema: { type: 'string' } };

  return [
    {
      method: 'get',
      path: `${base}/status`,
      summary: 'Dual-writer status: settings, DuckDB writer (breaker, applied LSNs), queues, operation log, recent table syncs',
      tags: ['data-sync'],
      auth: true,
      responses: { 200: 'Status document', 503: 'Redis or PostgreSQL did not answer' },
      handler: async (ctx) => {
        ctx.body = await deps.status();
      },
    },
    {
      method: 'post',
      path: `${base}/operation`,
      summary: 'One dual write: PostgreSQL now, DuckDB by consistency level and strategy',
      tags: ['data-sync'],
      auth: true,
      requestBody: {
        type: 'object',
        required: ['table_name', 'operation_type'],
        properties: {
          table_name: { type: 'string' },
          operation_type: { type: 'string', enum: ['create', 'update', 'delete'] },
          data: { type: 'object' },
          primary_key: { description: 'A scalar, or {column: value} for composite keys' },
          consistency_level: { type: 'string', enum: [...CONSISTENCY] },
          strategy: { type: 'string', enum: [...STRATEGIES] },
        },
      },
      responses: {
        200: '`{success, operationId, ...}`: both stores written',
        202: '`{success, operationId, duckdb: queued|deferred, ...}`: PostgreSQL written, the DuckDB leg follows (success false when a strong call could not confirm it)',
        400: 'Bad field (named)',
        404: 'No row with that key (update, delete)',
        409: 'A row with that key exists (create)',
      },
      handler: async (ctx) => {
        const body = parseInput(operationBody, ctx.request.body ?? {}, 'body');
        const table = knownTable(body.table_name, 'table_name');
        const result = await deps.write(body.operation_type, table, body.primary_key, body.data, {
          ...(body.consistency_level ? { consistency: body.consistency_level } : {}),
          ...(body.strategy ? { strategy: body.strategy } : {}),
        });
        ctx.status = result.duckdb === 'applied' ? 200 : 202;
        ctx.body = result;
      },
    },
    {
      method: 'post',
      path: `${base}/table/:table/full`,
      summary: 'Queue a full sync of one table: its DuckDB copy is rebuilt from PostgreSQL',
      tags: ['data-sync'],
      auth: true,
      params: [tableParam, { name: 'batch_size', in: 'query', description: `Rows per fetch and insert (1 to ${deps.maxBatchSize})`, schema: { type: 'integer', default: deps.defaultBatchSize } }],
      responses: { 202: 'Queued; progress in GET /sync/status', 400: 'Unknown table or bad batch_size' },
      handler: async (ctx) => {
        const table = knownTable(String(ctx.params.table), 'table');
        const q = parseInput(batchQuery, ctx.query, 'query');
        ctx.status = 202;
        ctx.body = await enqueueSync({ table, mode: 'full', batchSize: q.batch_size });
      },
    },
    {
      method: 'post',
      path: `${base}/table/:table/incremental`,
      summary: `Queue an incremental sync: rows whose ${deps.updatedAtColumn} is at or after \`since\` are upserted`,
      tags: ['data-sync'],
      auth: true,
      params: [tableParam],
      requestBody: { type: 'object', required: ['since'], properties: { since: { type: 'string', format: 'date-time' }, batch_size: { type: 'integer' } } },
      responses: { 202: 'Queued; progress in GET /sync/status', 400: 'Unknown table, bad since, no timestamp column, or bad batch_size' },
      handler: async (ctx) => {
        const table = knownTable(String(ctx.params.table), 'table');
        const body = parseInput(incrementalBody, ctx.request.body ?? {}, 'body');
        if (!(await deps.columns(table)).includes(deps.updatedAtColumn)) {
          throw new ValidationError(`table ${table} has no ${deps.updatedAtColumn} column`, [{ field: 'since', reason: `incremental sync compares ${deps.updatedAtColumn} (DATA_SYNC_UPDATED_AT_COLUMN), which ${table} lacks` }]);
        }
        ctx.status = 202;
        ctx.body = await enqueueSync({ table, mode: 'incremental', batchSize: body.batch_size ?? deps.defaultBatchSize, since: new Date(body.since).toISOString(), column: deps.updatedAtColumn });
      },
    },
    {
      method: 'get',
      path: `${base}/dead-letter-queue`,
      summary: 'Dual-write legs that failed after their retries, with their reason',
      tags: ['data-sync'],
      auth: true,
      params: [
        { name: 'offset', in: 'query', description: 'Entries to skip', schema: { type: 'integer', default: 0 } },
        { name: 'limit', in: 'query', description: 'At most 500', schema: { type: 'integer', default: 50 } },
      ],
      responses: { 200: '`{total, entries: [{operationId, table, operation, key, reason, attempts, failedAt}]}`', 400: 'Bad offset or limit' },
      handler: async (ctx) => {
        const q = parseInput(pageQuery, ctx.query, 'query');
        const page = await services.deadLetters.list(dualWriteQueue.name, q.offset, q.limit);
        ctx.body = {
          total: page.total,
          offset: page.offset,
          limit: page.limit,
          entries: page.entries.map((e) => {
            const d = e.data as { operationId?: string; table?: string; operation?: string; key?: unknown; consistency?: string };
            return { operationId: d.operationId, table: d.table, operation: d.operation, key: d.key, consistency: d.consistency, reason: e.failedReason, attempts: e.attemptsMade, failedAt: new Date(e.failedAt).toISOString(), retries: e.retries, entryId: e.id };
          }),
        };
      },
    },
    {
      method: 'post',
      path: `${base}/dead-letter-queue/:operationId/retry`,
      summary: 'Queue a dead-lettered dual-write leg again',
      tags: ['data-sync'],
      auth: true,
      params: [{ name: 'operationId', in: 'path', description: 'The operation id returned by the write', schema: { type: 'string', format: 'uuid' } }],
      responses: { 202: 'Queued again', 400: 'Not a UUID', 404: 'No dead-lettered operation with this id' },
      handler: async (ctx) => {
        const { operationId } = parseInput(z.object({ operationId: z.uuid() }), ctx.params, 'path');
        const entry = await findDead(operationId);
        if (!entry) throw new NotFoundError(`no dead-lettered dual-write operation ${operationId}`, { operationId });
        const { jobId } = await services.deadLetters.retry(dualWriteQueue.name, entry.id);
        ctx.status = 202;
        ctx.body = { retried: true, operationId, jobId };
      },
    },
  ];
}
