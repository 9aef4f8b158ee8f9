import type { DuckDBConnection } from '@duckdb/node-api';
import type { Redis } from 'ioredis';
import { batchSize, cdcAppliedLsnKey, compareLsn, type CdcApplyBatch } from '../../queues/cdc.js';
import { applyPlan, type ApplyCache } from './apply-plans.js';
import { STATE_SCHEMA } from './copy-schema.js';
import { reduceBatch } from './reduce.js';
import { DuckWriter } from './writer.js';

export interface ApplyOutcome {
  slot: string;
  /** Changes in the batch applied, and skipped as already applied (LSN at or below the stored one). */
  applied: number;
  skipped: number;
  /** Row changes written after the per-key reduction. */
  written: number;
  /** The slot's applied LSN after this batch (stored in DuckDB, published to Redis). */
  appliedLsn: string | null;
}

export async function readAppliedLsn(conn: DuckDBConnection, slot: string): Promise<string | null> {
  const r = await conn.runAndReadAll(`SELECT applied_lsn FROM ${STATE_SCHEMA}.cdc_state WHERE slot = $1`, [slot]);
  const row = r.getRows()[0];
  return row ? String(row[0]) : null;
}

/**
 * Applies `cdc.apply` batches to DuckDB: per-key reduction, one transaction per batch
 * holding every table's set-based writes AND the slot's new applied LSN, then the LSN
 * published to Redis for the reader to acknowledge. Replays are no-ops: the stored LSN
 * filters every change at or below it. Snapshot batches are plain upserts and leave the
 * stored LSN alone (their position is the reader's business).
 */
export class CdcApplier {
  constructor(
    private readonly writer: DuckWriter,
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async apply(batch: CdcApplyBatch): Promise<ApplyOutcome> {
    const outcome = await this.writer.exclusive((conn, cache) => this.applyLocked(conn, cache, batch));
    if (outcome.appliedLsn !== null) await this.redis.set(cdcAppliedLsnKey(this.prefix, batch.slot), outcome.appliedLsn);
    return outcome;
  }

  private async applyLocked(conn: DuckDBConnection, cache: ApplyCache, batch: CdcApplyBatch): Promise<ApplyOutcome> {
    // Read once per slot and connection; the writer drops the cache after any failure.
    let stored = cache.lsns.get(batch.slot);
    if (stored === undefined) {
      stored = await readAppliedLsn(conn, batch.slot);
      cache.lsns.set(batch.slot, stored);
    }
    const stream = batch.kind === 'stream';
    if (stream && stored !== null && compareLsn(batch.lastLsn, stored) <= 0) {
      return { slot: batch.slot, applied: 0, skipped: batchSize(batch), written: 0, appliedLsn: stored };
    }
    const reduction = reduceBatch(batch, stored);
    const next = stream ? batch.lastLsn : stored;
    let written = 0;
    await DuckWriter.transaction(conn, async () => {
        for (const plan of reduction.plans) written += await applyPlan(conn, cache, plan);
        if (stream) {
          await conn.run(
            `INSERT INTO ${STATE_SCHEMA}.cdc_state VALUES ($1, $2, 1, now())
               ON CONFLICT (slot) DO UPDATE SET applied_lsn = excluded.applied_lsn, batches = cdc_state.batches + 1, updated_at = excluded.updated_at`,
            [batch.slot, batch.lastLsn],
          );
        }
    });
    cache.lsns.set(batch.slot, next);
    return { slot: batch.slot, applied: reduction.applied, skipped: reduction.skipped, written, appliedLsn: next };
  }
}
