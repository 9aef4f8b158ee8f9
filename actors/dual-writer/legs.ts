import type pg from 'pg';
import type { CdcRelation, CdcText } from '../../queues/cdc.js';
import { applyPlan } from './apply-plans.js';
import { readRelation, readRowsByKeys, rowKey } from './pg-source.js';
import type { TablePlan } from './reduce.js';
import { DuckWriter } from './writer.js';

interface Waiter {
  key: CdcText[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * The DuckDB leg of dual writes: copy keys' current rows from PostgreSQL (delete the
 * keys that are gone). The PostgreSQL read happens INSIDE the writer's exclusive
 * section, so no CDC batch can land between the read and the write: what is written
 * is never older than what the CDC applier already applied, and later CDC changes
 * replay on top (each carries the full row). Keys asked for while the writer is busy
 * are coalesced per table into one read and one set-based write.
 */
export class KeyRefresher {
  private readonly pending = new Map<string, Waiter[]>();
  private readonly relations = new Map<string, CdcRelation>();

  constructor(
    private readonly writer: DuckWriter,
    private readonly pool: pg.Pool,
  ) {}

  refresh(table: string, key: CdcText[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const queued = this.pending.get(table);
      if (queued) {
        queued.push({ key, resolve, reject });
        return;
      }
      const waiters: Waiter[] = [{ key, resolve, reject }];
      this.pending.set(table, waiters);
      this.writer
        .exclusive(async (conn, cache) => {
          // Whatever queued up while we waited for the writer goes in this one write.
          this.pending.delete(table);
          try {
            await this.write(conn, cache, table, waiters.map((w) => w.key));
            for (const w of waiters) w.resolve();
          } catch (err) {
            this.relations.delete(table);
            if (waiters.length === 1) throw err;
            // One bad key must not fail the others: apply them one by one.
            for (const w of waiters) await this.write(conn, cache, table, [w.key]).then(w.resolve, w.reject);
          }
        })
        .catch((err: unknown) => {
          this.pending.delete(table);
          for (const w of waiters) w.reject(err);
        });
    });
  }

  private async write(conn: Parameters<Parameters<DuckWriter['exclusive']>[0]>[0], cache: Parameters<Parameters<DuckWriter['exclusive']>[0]>[1], table: string, keys: CdcText[][]): Promise<void> {
    let relation = this.relations.get(table);
    if (!relation) {
      relation = await readRelation(this.pool, table);
      this.relations.set(table, relation);
    }
    const found = await readRowsByKeys(this.pool, relation, keys);
    const plan: TablePlan = { table, relation, truncate: false, upserts: [], partial: [], deletes: [] };
    const seen = new Set<string>();
    for (const key of keys) {
      const k = rowKey(key);
      if (seen.has(k)) continue;
      seen.add(k);
      const row = found.get(k);
      if (row) plan.upserts.push(row);
      else plan.deletes.push(key);
    }
    await DuckWriter.transaction(conn, () => applyPlan(conn, cache, plan));
  }
}
