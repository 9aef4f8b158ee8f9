import { z } from 'zod';
import { defineQueue } from './definition.js';

/**
 * The DuckDB leg of a dual write, done by the dual-writer (the one DuckDB writer). It
 * carries no row data: the leg copies the key's CURRENT row from PostgreSQL (or deletes
 * it when gone), which makes it idempotent, safe to retry at any time, and never older
 * than what the CDC applier already wrote.
 */
export const dualWriteJobSchema = z.object({
  operationId: z.uuid(),
  /** `schema.table` */
  table: z.string().min(3),
  operation: z.enum(['create', 'update', 'delete', 'recovery']),
  /** Text values of the primary-key columns, in key-column order. */
  key: z.array(z.string().nullable()).min(1),
  consistency: z.enum(['strong', 'eventual', 'weak']),
  strategy: z.enum(['real_time', 'near_real_time', 'batch', 'recovery', 'hybrid']),
});
export type DualWriteJob = z.infer<typeof dualWriteJobSchema>;

export const dualWriteQueue = defineQueue({
  name: 'dualwrite',
  description: 'DuckDB legs of dual writes (copy the key from PostgreSQL), applied by the dual-writer',
  schema: dualWriteJobSchema,
  jobOptions: { attempts: 5, backoff: { type: 'exponential', delay: 1000, jitter: 0.5 }, removeOnComplete: { count: 1000, age: 3600 } },
});

export const tableSyncJobSchema = z.object({
  table: z.string().min(3),
  mode: z.enum(['full', 'incremental']),
  batchSize: z.number().int().positive(),
  /** Incremental: ISO timestamp; rows whose `column` is at or after it are copied. */
  since: z.string().optional(),
  column: z.string().optional(),
});
export type TableSyncJob = z.infer<typeof tableSyncJobSchema>;

export const tableSyncQueue = defineQueue({
  name: 'datasync.table',
  description: 'full and incremental PostgreSQL → DuckDB table syncs, run by the dual-writer',
  schema: tableSyncJobSchema,
  jobOptions: { attempts: 3, backoff: { type: 'exponential', delay: 5000, jitter: 0.5 }, removeOnComplete: { count: 100, age: 7 * 24 * 3600 } },
});
