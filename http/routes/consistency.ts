import { z } from 'zod';
import { NotFoundError } from '../../runtime/index.js';
import { parseInput, type RouteSpec } from '../route.js';

/** What the consistency routes need from the validator (actors/validator ValidatorApi is one). */
export interface ConsistencyDeps {
  check(input: { tables?: string[] | undefined; checkTypes?: string[] | undefined; repair?: boolean | undefined }): Promise<{ runId: string; tables: string[]; checkTypes: string[] }>;
  status(): Promise<unknown>;
  report(runId: string): Promise<unknown>;
  compareRow(table: string, primaryKey: string): Promise<unknown>;
  repair(input: { runId?: string | undefined; table?: string | undefined; primaryKeys?: string[] | undefined }): Promise<unknown>;
}

const BASE = '/api/v1/data-sync/consistency';
/** Longest key text accepted (a text key may be long; the validator checks it against the column's type). */
const KEY_MAX = 8192;
const checkBody = z
  .object({
    tables: z.array(z.string().min(1).max(200)).max(500).optional(),
    check_types: z.array(z.string().min(1).max(100)).max(10).optional(),
    repair: z.boolean().optional(),
  })
  .strict();
const repairBody = z
  .object({
    run_id: z.uuid().optional(),
    table: z.string().min(1).max(200).optional(),
    // One key per item: an integer, the key's text (uuid, text, date...), or for a composite
    // key a JSON array of its columns' values (or that array's JSON text, as reports show it).
    primary_keys: z
      .array(
        z.union([
          z.string().max(KEY_MAX),
          z.number().int().transform(String),
          z.array(z.union([z.string().max(KEY_MAX), z.number().int()])).min(1).max(32).transform((k) => JSON.stringify(k.map(String))),
        ]),
      )
      .min(1)
      .max(100_000)
      .optional(),
  })
  .strict()
  .refine((b) => (b.run_id !== undefined) !== (b.table !== undefined), { message: 'give either run_id, or table with primary_keys', path: ['run_id'] })
  .refine((b) => b.table === undefined || b.primary_keys !== undefined, { message: 'primary_keys is required with table', path: ['primary_keys'] });
const idParam = z.object({ id: z.uuid() });
const rowQuery = z.object({ primary_key: z.string().max(KEY_MAX) });

/** `/api/v1/data-sync/consistency/*`: runs are enqueued here and done by the validator actor. */
export function consistencyRoutes(deps: ConsistencyDeps): RouteSpec[] {
  return [
    {
      method: 'post',
      path: `${BASE}/check`,
      summary: 'Start a consistency run over tables and check types; returns its id at once',
      tags: ['consistency'],
      auth: true,
      requestBody: {
        type: 'object',
        properties: {
          tables: { type: 'array', items: { type: 'string' }, description: 'default: every checked table' },
          check_types: { type: 'array', items: { type: 'string', enum: ['row_count', 'data_hash', 'business_rules', 'referential_integrity'] }, description: 'default: all four' },
          repair: { type: 'boolean', description: 'resync the differing rows through the dual-writer once reported' },
        },
      },
      responses: { 202: '`{ run_id, status: "queued", tables, check_types }`', 400: 'Unknown table or check type (named)' },
      handler: async (ctx) => {
        const body = parseInput(checkBody, ctx.request.body ?? {}, 'body');
        const run = await deps.check({ tables: body.tables, checkTypes: body.check_types, repair: body.repair });
        ctx.status = 202;
        ctx.body = { run_id: run.runId, status: 'queued', tables: run.tables, check_types: run.checkTypes, report: `${BASE}/reports/${run.runId}` };
      },
    },
    {
      method: 'get',
      path: `${BASE}/status`,
      summary: 'Latest consistency score and each table\'s latest verdicts',
      tags: ['consistency'],
      auth: true,
      responses: { 200: '`{ consistency_score, latest_run, runs_in_progress, tables }`' },
      handler: async (ctx) => {
        ctx.body = await deps.status();
      },
    },
    {
      method: 'get',
      path: `${BASE}/reports/:id`,
      summary: 'One run\'s report: per table and check, pass/fail, counts, differing keys (capped, with total), durations',
      tags: ['consistency'],
      auth: true,
      params: [{ name: 'id', in: 'path', description: 'Run id', required: true, schema: { type: 'string', format: 'uuid' } }],
      responses: { 200: 'The report', 400: 'Not a run id', 404: 'No such run' },
      handler: async (ctx) => {
        const { id } = parseInput(idParam, ctx.params, 'path');
        const report = await deps.report(id);
        if (!report) throw new NotFoundError(`no consistency run ${id}`, { run_id: id });
        ctx.body = report;
      },
    },
    {
      method: 'get',
      path: `${BASE}/validate/:table`,
      summary: 'Compare one row in PostgreSQL and its DuckDB copy, showing both sides',
      tags: ['consistency'],
      auth: true,
      params: [
        { name: 'table', in: 'path', description: 'A checked table', required: true, schema: { type: 'string' } },
        { name: 'primary_key', in: 'query', description: 'The row\'s primary key: its text (integer, uuid, text, date...), or a JSON array of the key columns\' values for a composite key', required: true, schema: { type: 'string' } },
      ],
      responses: { 200: '`{ consistent, status, differing_columns, postgres, duckdb }`', 400: 'Unknown table or bad key', 503: 'No process serves the DuckDB side' },
      handler: async (ctx) => {
        const { primary_key } = parseInput(rowQuery, ctx.query, 'query');
        ctx.body = await deps.compareRow(String(ctx.params.table), primary_key);
      },
    },
    {
      method: 'post',
      path: `${BASE}/repair`,
      summary: 'Resync exactly the differing rows of a run (or the keys given) through the dual-writer',
      tags: ['consistency'],
      auth: true,
      requestBody: {
        type: 'object',
        properties: {
          run_id: { type: 'string', format: 'uuid' },
          table: { type: 'string' },
          primary_keys: { type: 'array', items: { description: 'a key\'s text, or for a composite key an array of its columns\' values (or its JSON text)' } },
        },
      },
      responses: { 202: '`{ tables: [{ table, enqueued, differing, complete }] }`', 400: 'Bad body', 404: 'No such run', 409: 'The run has not completed' },
      handler: async (ctx) => {
        const body = parseInput(repairBody, ctx.request.body ?? {}, 'body');
        ctx.status = 202;
        ctx.body = await deps.repair({ runId: body.run_id, table: body.table, primaryKeys: body.primary_keys });
      },
    },
  ];
}
