import { z } from 'zod';
import { defineQueue } from './definition.js';
import type { CdcPackedChange, CdcSegment } from './cdc-rows.js';

/**
 * The contract between the CDC reader (reads the replication slot, produces
 * batches) and the dual-writer (the single DuckDB writer, applies them).
 *
 * Values travel as PostgreSQL's text output (what pgoutput sends), one entry per
 * relation column, so no precision is lost on the way (numeric, timestamptz,
 * int8); the applier converts text to the DuckDB type mapped from `pgType`.
 * `null` is SQL NULL. In memory the reader holds them as arrays (CdcChange); on the
 * queue each row is packed into one string (queues/cdc-rows.ts, CdcPackedChange).
 */
export type CdcText = string | null;

export interface CdcColumn {
  name: string;
  /** `format_type()` spelling, e.g. `numeric(12,2)`, `timestamp with time zone`, `text[]`. */
  pgType: string;
  typeOid: number;
  /** Part of the replica identity (primary key). */
  isKey: boolean;
}

export interface CdcRelation {
  /** `schema.table`, unquoted. */
  table: string;
  columns: CdcColumn[];
}

/**
 * One row change. `lsn` is the commit LSN of its transaction (all changes of one
 * transaction share it): the applier skips changes with `lsn <=` the LSN it has
 * stored, which makes replays idempotent. Within a batch, array order is WAL order.
 */
export type CdcChange =
  | {
      op: 'upsert';
      table: string;
      lsn: string;
      /** Values aligned with the relation's columns. */
      values: CdcText[];
      /** Indexes of columns whose value is an unchanged TOAST datum NOT sent: leave the copy's value as is. */
      unchanged?: number[];
    }
  | { op: 'delete'; table: string; lsn: string; /** Key values aligned with the relation's key columns, in column order. */ key: CdcText[] }
  | { op: 'truncate'; tables: string[]; lsn: string };

export interface CdcApplyBatch {
  slot: string;
  /** The reader's lease epoch (fencing): diagnostics only, LSNs make apply idempotent. */
  epoch: number;
  /**
   * `stream`: changes from the slot, ending on a transaction boundary.
   * `snapshot`: initial copy / backfill rows (op upsert only) that are consistent
   * with the position `lsn` of their changes; see actors/cdc-reader for the rules.
   *
   * CONTRACT NOTE (cdc-reader, agreed shape, additive): rules for `snapshot` batches.
   * - Every change of a snapshot batch carries the batch's `lastLsn`, and several
   *   snapshot batches share one LSN (the initial snapshot of every table sits at
   *   the slot's consistent point). So the applier does NOT filter their changes
   *   one by one with `lsn <= stored`: it applies snapshot batches whole. The reader
   *   never queues a snapshot batch behind a stream batch of a higher LSN and never
   *   re-queues a chunk after a restart, so applying them unconditionally is safe;
   *   whether the applier also stores their `lastLsn` is its choice (the
   *   dual-writer leaves its stored LSN alone; the reader copes with either).
   * - The first snapshot batch of a table's initial copy may start with
   *   `{op: 'truncate', tables: [table]}`: a snapshot interrupted by a crash is redone
   *   from a new slot, and rows of the old attempt must not survive it.
   * - Backfill chunks (a table added later) are snapshot batches at the position of
   *   their high watermark in the stream (DBLog): they come after every stream batch
   *   below that LSN and before every stream batch above it.
   * - `relations[t].columns[i].isKey` is the table's PRIMARY KEY (also under
   *   REPLICA IDENTITY FULL, where pgoutput flags every column).
   * - A relation that gains columns (ALTER TABLE ADD COLUMN) arrives with the new
   *   shape in the batch that first uses it: add the missing columns. Dropped or
   *   renamed columns never arrive: the reader quarantines the table instead.
   */
  kind: 'stream' | 'snapshot';
  /** Commit LSN of the last transaction in the batch (what may be acknowledged once applied). */
  lastLsn: string;
  /** Relations (current shape) of every table the batch touches, keyed by `schema.table`. */
  relations: Record<string, CdcRelation>;
  /**
   * The reader queues one segment (queues/cdc-rows.ts: all the batch's changes as one
   * string); batches of change objects, with packed rows or value arrays as older readers
   * queued them, are still applied, also joined with segments in one group.
   */
  changes: CdcWireChange[];
  /** Changes in the batch when `changes` holds segments (a segment holds many). */
  size?: number;
}

/** An entry of a queued batch: a segment of many changes (current readers) or one change object (older ones). */
export type CdcWireChange = CdcSegment | CdcChange | CdcPackedChange;

/** The number of changes in a batch, whichever form they take. */
export function batchSize(batch: CdcApplyBatch): number {
  return batch.size ?? batch.changes.length;
}

/**
 * Cheap structural check only: a batch holds thousands of rows, and a full
 * per-row zod parse would cost more than applying them. The reader is trusted
 * code; the applier still refuses a change whose table has no relation.
 */
const batchSchema = z.custom<CdcApplyBatch>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as CdcApplyBatch).slot === 'string' &&
    typeof (v as CdcApplyBatch).lastLsn === 'string' &&
    Array.isArray((v as CdcApplyBatch).changes) &&
    typeof (v as CdcApplyBatch).relations === 'object',
  { message: 'expected a CDC apply batch {slot, epoch, kind, lastLsn, relations, changes[]}' },
);

export const cdcApplyQueue = defineQueue({
  name: 'cdc.apply',
  description: 'batches of row changes from the replication slot, applied to DuckDB in order by the dual-writer',
  schema: batchSchema,
  // Order matters: the applier retries a failing batch itself rather than letting
  // BullMQ move on to the next one (see actors/dual-writer).
  jobOptions: { attempts: 1, removeOnComplete: { count: 100, age: 600 } },
});

/** Redis key (under the queue prefix) where the applier publishes the last LSN DuckDB committed, per slot. */
export function cdcAppliedLsnKey(prefix: string, slot: string): string {
  return `${prefix}:cdc:${slot}:applied-lsn`;
}

/** Compares two LSNs `X/Y` (hex halves). */
export function compareLsn(a: string, b: string): number {
  const [ah = '0', al = '0'] = a.split('/');
  const [bh = '0', bl = '0'] = b.split('/');
  const x = (BigInt(`0x${ah}`) << 32n) | BigInt(`0x${al}`);
  const y = (BigInt(`0x${bh}`) << 32n) | BigInt(`0x${bl}`);
  return x < y ? -1 : x > y ? 1 : 0;
}
