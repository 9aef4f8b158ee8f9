import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { z } from 'zod';
import { defineQueue } from './definition.js';
import type { DualWriteJob } from './dual-write.js';
import type { Queryable } from './outbox.js';

/**
 * The consistency validator's queues (actors/validator).
 *
 * - `validate`: one job per run (tables x check types). Any worker takes it and drives
 *   the checks: it fans segment work out to the two side queues and waits for them.
 * - `validate.segment`: the PostgreSQL side of one piece of work (count + checksum per
 *   sub-segment, rows of a small segment, a rule, one row). Any worker.
 * - `validate.duckdb`: the same work on the DuckDB copy. DuckDB has ONE process that may
 *   open the file (the dual-writer's lease holder), so only a validator running in that
 *   process consumes this queue; it reads through its own connection of the open instance.
 */
export const CHECK_TYPES = ['row_count', 'data_hash', 'business_rules', 'referential_integrity'] as const;
export type CheckType = (typeof CHECK_TYPES)[number];

export const validateRunSchema = z.object({
  runId: z.uuid().optional(),
  trigger: z.enum(['manual', 'schedule']),
  /** `schema.table`; empty or absent: every configured table. */
  tables: z.array(z.string().min(3)).default([]),
  checkTypes: z.array(z.enum(CHECK_TYPES)).default([]),
  /** Enqueue the differing rows to the dual-writer once the run is reported. */
  repair: z.boolean().default(false),
});
export type ValidateRunJob = z.infer<typeof validateRunSchema>;

export const validateRunQueue = defineQueue({
  name: 'validate',
  description: 'consistency check runs (tables x check types), driven by the validator',
  schema: validateRunSchema,
  jobOptions: { attempts: 3, backoff: { type: 'exponential', delay: 5000, jitter: 0.5 }, removeOnComplete: { count: 200, age: 7 * 24 * 3600 } },
});

const columnSchema = z.object({ name: z.string().min(1), pgType: z.string().min(1), isKey: z.boolean() });
export type SideColumn = z.infer<typeof columnSchema>;

/** One piece of side work; the same payload goes to PostgreSQL and DuckDB, each builds its own SQL. */
export const sideWorkSchema = z.object({
  op: z.enum(['bounds', 'checksum', 'rows', 'lookup', 'predicate', 'aggregate', 'orphans']),
  /** `schema.table` (the DuckDB side maps it to its copy table). */
  table: z.string().min(3),
  columns: z.array(columnSchema).min(1),
  /**
   * checksum/rows: the segment `[lo, hi)` as decimal strings: of the key itself for a single
   * integer key, else of the key's hash kh in `[0, 2^62)` (actors/validator/key-hash.ts).
   */
  lo: z.string().regex(/^-?\d+$/).optional(),
  hi: z.string().regex(/^-?\d+$/).optional(),
  /** checksum: key width of one sub-segment; rows with `buckets`: the width those are numbered by. */
  width: z.string().regex(/^\d+$/).optional(),
  /** rows (hashed keys): only these `width`-wide sub-segments of `[lo, hi)`, numbered from `lo`, read in one scan. */
  buckets: z.array(z.string().regex(/^\d+$/)).max(65_536).optional(),
  /**
   * bounds: the row count may be PostgreSQL's planner estimate (scaled to the table's current
   * size) instead of count(*): data_hash only plans its fan-out with it and takes the exact
   * counts from its first checksum level, which covers every row anyway.
   */
  estimate: z.boolean().optional(),
  /** lookup: key values (text), single integer key. */
  keys: z.array(z.string()).max(100_000).optional(),
  /** lookup, any other key: each key's column values as PostgreSQL text, in key-column order. */
  keyTuples: z.array(z.array(z.string()).min(1)).max(100_000).optional(),
  /** predicate/aggregate: configured SQL; orphans: the foreign key. */
  sql: z.string().max(10_000).optional(),
  fk: z.object({ columns: z.array(z.string()).min(1), refTable: z.string().min(3), refColumns: z.array(z.string()).min(1) }).optional(),
  /** Cap on keys returned by predicate/orphans. */
  sample: z.number().int().min(0).max(10_000).optional(),
});
export type SideWork = z.infer<typeof sideWorkSchema>;

const sideJobOptions = { attempts: 3, backoff: { type: 'exponential' as const, delay: 500, jitter: 0.5 }, removeOnComplete: { count: 2000, age: 3600 }, removeOnFail: { count: 2000 } };

export const validatePgQueue = defineQueue({
  name: 'validate.segment',
  description: 'validator work on the PostgreSQL side (segment checksums, rows, rules)',
  schema: sideWorkSchema,
  jobOptions: sideJobOptions,
});

export const validateDuckQueue = defineQueue({
  name: 'validate.duckdb',
  description: 'validator work on the DuckDB copy, done in the process holding the DuckDB lease',
  schema: sideWorkSchema,
  jobOptions: sideJobOptions,
});

export const alertWebhookSchema = z.object({
  alertId: z.string(),
  event: z.enum(['firing', 'resolved']),
  alert: z.record(z.string(), z.unknown()),
});
export type AlertWebhookJob = z.infer<typeof alertWebhookSchema>;

/** Alert notifications to ALERT_WEBHOOK_URL; BullMQ retries failed deliveries with backoff, then dead-letters them. */
export const alertWebhookQueue = defineQueue({
  name: 'monitoring.webhook',
  description: 'alert notifications POSTed to ALERT_WEBHOOK_URL (retried with backoff)',
  schema: alertWebhookSchema,
  jobOptions: { attempts: 6, backoff: { type: 'exponential', delay: 1000, jitter: 0.2 }, removeOnComplete: { count: 500, age: 24 * 3600 } },
});

/** Records a queued run; the caller enqueues `validate` with `jobId = runId`. */
export async function createValidationRun(db: Queryable, run: { trigger: 'manual' | 'schedule'; tables: string[]; checkTypes: string[]; repair: boolean }): Promise<string> {
  const id = randomUUID();
  await db.query(`INSERT INTO concord_validation_runs (id, trigger, tables, check_types, repair) VALUES ($1, $2, $3, $4, $5)`, [id, run.trigger, run.tables, run.checkTypes, run.repair]);
  return id;
}

/**
 * Resyncs exactly `keys` of `table` through the dual-writer: one `dualwrite` recovery leg
 * per key (it copies the key's current PostgreSQL row to DuckDB, or deletes it when gone).
 * A key is the PostgreSQL text of a single-column primary key, or the texts of the key
 * columns in key order.
 */
export async function enqueueRepair(dualwrite: Queue, table: string, keys: ReadonlyArray<string | readonly string[]>): Promise<number> {
  const jobs = keys.map((key) => {
    const data: DualWriteJob = { operationId: randomUUID(), table, operation: 'recovery', key: typeof key === 'string' ? [key] : [...key], consistency: 'eventual', strategy: 'recovery' };
    return { name: 'recovery', data, opts: { jobId: data.operationId } };
  });
  for (let i = 0; i < jobs.length; i += 1000) await dualwrite.addBulk(jobs.slice(i, i + 1000));
  return jobs.length;
}
