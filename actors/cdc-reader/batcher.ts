import type { CdcChange, CdcRelation } from '../../queues/cdc.js';
import type { CdcPackedChange } from '../../queues/cdc-rows.js';

/** A decoded change: new rows of monitored tables come packed (StreamSink), the rest with values. */
export type DecodedChange = CdcChange | CdcPackedChange;

/** A batch ready for `cdc.apply`, with what the reader needs to track it. */
export interface ReadyBatch {
  changes: DecodedChange[];
  relations: Record<string, CdcRelation>;
  /** Commit LSN of the last transaction in the batch. */
  lastLsn: number;
  /** Commit time of the first transaction in the batch (for lag), Unix ms. */
  firstCommitMs: number;
  transactions: number;
  /**
   * A table's relation changed while this batch's changes were decoded (ADD COLUMN): rows
   * decoded before it may be shorter than the batch's relation (the reader pads them).
   */
  shapeChanged: boolean;
}

/**
 * Groups decoded changes into batches that end on transaction boundaries.
 *
 * - A batch holds at most `maxSize` changes, unless one transaction alone is
 *   bigger: that transaction becomes one oversized batch. It is never split,
 *   because every change of a transaction carries its commit LSN, and the applier
 *   stores that LSN when it commits a batch: a transaction split over two batches
 *   would be skipped in part after a crash between them.
 * - When the open transaction would push the batch past `maxSize`, the complete
 *   transactions before it are handed out and the open one moves to the next batch.
 * - `flush()` hands out the complete transactions so far (the reader calls it on a
 *   timer so a quiet stream still delivers promptly); the open transaction stays.
 */
export class TxBatcher {
  private changes: DecodedChange[] = [];
  private relations = new Map<string, CdcRelation>();
  private txRelations = new Map<string, CdcRelation>();
  /** Index in `changes` where the open transaction starts; -1 when none is open. */
  private txStart = -1;
  /** A relation changed since the last batch was handed out (see ReadyBatch.shapeChanged). */
  private shapeChanged = false;
  private lastLsn = 0;
  private firstCommitMs = 0;
  private transactions = 0;

  constructor(
    private readonly maxSize: number,
    private readonly emit: (batch: ReadyBatch) => void,
  ) {
    if (!Number.isInteger(maxSize) || maxSize < 1) throw new RangeError(`maxSize must be an integer >= 1, got ${maxSize}`);
  }

  /** Changes held, complete or not. */
  get size(): number {
    return this.changes.length;
  }

  /** Complete transactions held and not yet handed out. */
  get completeTransactions(): number {
    return this.transactions;
  }

  get inTransaction(): boolean {
    return this.txStart >= 0;
  }

  begin(): void {
    if (this.txStart >= 0) throw new Error('begin inside an open transaction');
    this.txStart = this.changes.length;
  }

  add(change: DecodedChange, table: string, relation: CdcRelation): void {
    if (this.txStart < 0) throw new Error('change outside a transaction');
    if (this.txRelations.get(table) !== relation) this.addRelation(table, relation);
    // Cut before the open transaction once it would overflow a batch that already
    // holds complete transactions.
    if (this.changes.length >= this.maxSize && this.txStart > 0) this.cutBeforeOpenTransaction();
    this.changes.push(change);
  }

  /** Records a relation the open transaction touches (also one without a change of its own: a multi-table truncate), noting a shape change. */
  addRelation(table: string, relation: CdcRelation): void {
    const before = this.txRelations.get(table) ?? this.relations.get(table);
    if (before !== undefined && before !== relation) this.shapeChanged = true;
    this.txRelations.set(table, relation);
  }

  /** Ends the open transaction at `commitLsn`; hands out the batch once it is full. */
  commit(commitLsn: number, commitTimeMs: number): void {
    if (this.txStart < 0) throw new Error('commit without begin');
    if (this.changes.length === this.txStart) {
      // An empty transaction (only other tables, or only messages): nothing to apply.
      this.txStart = -1;
      this.txRelations.clear();
      return;
    }
    for (const [t, r] of this.txRelations) this.relations.set(t, r);
    this.txRelations.clear();
    if (this.transactions === 0) this.firstCommitMs = commitTimeMs;
    this.transactions++;
    this.lastLsn = commitLsn;
    this.txStart = -1;
    if (this.changes.length >= this.maxSize) this.flush();
  }

  /** Hands out the complete transactions held, if any. */
  flush(): void {
    if (this.transactions === 0) return;
    if (this.txStart >= 0) this.cutBeforeOpenTransaction();
    else {
      const batch = this.take(this.changes);
      this.changes = [];
      this.emit(batch);
    }
  }

  private cutBeforeOpenTransaction(): void {
    const done = this.changes.slice(0, this.txStart);
    this.changes = this.changes.slice(this.txStart);
    this.txStart = 0;
    this.emit(this.take(done));
  }

  private take(changes: DecodedChange[]): ReadyBatch {
    const batch: ReadyBatch = {
      changes,
      relations: Object.fromEntries(this.relations),
      lastLsn: this.lastLsn,
      firstCommitMs: this.firstCommitMs,
      transactions: this.transactions,
      shapeChanged: this.shapeChanged,
    };
    // The open transaction, if any, moves on to the next batch with its rows: keep checking them.
    this.shapeChanged &&= this.txStart >= 0;
    this.relations = new Map();
    this.transactions = 0;
    return batch;
  }
}
