import { compareLsn, type CdcApplyBatch, type CdcRelation, type CdcText } from '../../queues/cdc.js';
import { packedFields, packedWidth, packRow, readSegment, unpackRow, type SegmentVisitor } from '../../queues/cdc-rows.js';

/**
 * A row of a plan: packed (one string, queues/cdc-rows.ts; what current readers send, staged
 * in DuckDB whole) or values (older readers, table syncs, rows merged from two changes).
 */
export type PlanRow = string | CdcText[];

/** What one batch does to one table, after the per-key reduction. */
export interface TablePlan {
  table: string;
  /** Undefined only for a table the batch truncates without other changes. */
  relation: CdcRelation | undefined;
  /** Delete every row first (TRUNCATE); the changes below happened after it. */
  truncate: boolean;
  /** Full rows (every column sent), aligned with the relation's columns. */
  upserts: PlanRow[];
  /** Updates that left TOAST columns unsent, grouped by which columns were sent (rows are full width). */
  partial: Array<{ sent: number[]; rows: PlanRow[] }>;
  /** Key values (relation key columns, in column order) of deleted rows. */
  deletes: PlanRow[];
}

type Pending = { op: 'upsert'; row: PlanRow; unchanged: number[] | undefined } | { op: 'delete'; key: PlanRow };

interface TableState {
  relation: CdcRelation | undefined;
  keyIdx: number[];
  truncate: boolean;
  rows: Map<string, Pending>;
}

export interface Reduction {
  plans: TablePlan[];
  /** Changes applied (after the LSN filter), and skipped as already applied. */
  applied: number;
  skipped: number;
}

const rowWidth = (row: PlanRow) => (typeof row === 'string' ? packedWidth(row) : row.length);

/**
 * Keeps the last change per primary key (array order is WAL order), skipping changes
 * at or below `appliedLsn` (a replayed batch then changes nothing). DuckDB keeps the
 * first of duplicate keys in one statement, so this is what makes one set-based
 * upsert per table correct, not just fast. An update whose TOAST columns were not
 * sent takes them from an earlier change of the same key in this batch when there is
 * one; otherwise those columns stay as the copy has them. A TRUNCATE drops the
 * table's earlier changes and deletes the copy's rows before the later ones land.
 * Segments and change objects (older readers) may be mixed in one batch.
 */
export function reduceBatch(batch: CdcApplyBatch, appliedLsn: string | null): Reduction {
  const r = new Reducer(batch, batch.kind === 'stream' ? appliedLsn : null);
  for (const change of batch.changes) {
    if (typeof change === 'string') {
      readSegment(change, r);
      continue;
    }
    r.lsn(change.lsn);
    if (change.op === 'truncate') r.truncate(change.tables);
    else {
      r.table(change.table);
      if (change.op === 'delete') r.delete('keyRow' in change ? change.keyRow : change.key);
      else r.upsert('row' in change ? change.row : change.values, change.unchanged);
    }
  }
  return { plans: [...r.tables.entries()].map(([table, st]) => toPlan(table, st)), applied: r.applied, skipped: r.skipped };
}

/** The reduction's state, fed change by change (a SegmentVisitor, also fed from change objects). */
class Reducer implements SegmentVisitor {
  readonly tables = new Map<string, TableState>();
  applied = 0;
  skipped = 0;
  /** Changes of one transaction share their LSN: each distinct LSN is compared once. */
  private currentLsn = '';
  private fresh = true;
  private tableName = '';
  private st: TableState | undefined;

  constructor(
    private readonly batch: CdcApplyBatch,
    /** Changes at or below it are skipped (null: apply all, e.g. a snapshot batch). */
    private readonly appliedLsn: string | null,
  ) {}

  lsn(lsn: string): void {
    if (lsn === this.currentLsn) return;
    this.currentLsn = lsn;
    this.fresh = this.appliedLsn === null || compareLsn(lsn, this.appliedLsn) > 0;
  }

  table(table: string): void {
    if (table === this.tableName) return;
    this.tableName = table;
    this.st = undefined; // looked up by the first row change applied (skipped ones leave no plan)
  }

  truncate(tables: string[]): void {
    if (!this.count()) return;
    for (const t of tables) {
      const st = this.stateFor(t);
      st.truncate = true;
      st.rows.clear();
    }
  }

  delete(keyRow: PlanRow): void {
    if (!this.count()) return;
    const st = this.rowState();
    const keyWidth = rowWidth(keyRow);
    if (keyWidth !== st.keyIdx.length) throw new Error(`delete on ${this.tableName}: ${keyWidth} key values for ${st.keyIdx.length} key columns`);
    // Keys are compared in packed form whichever form the change came in: one key, one entry.
    st.rows.set(typeof keyRow === 'string' ? keyRow : packRow(keyRow), { op: 'delete', key: keyRow });
  }

  upsert(row: PlanRow, sentUnchanged: number[] | undefined): void {
    if (!this.count()) return;
    const st = this.rowState();
    const width = rowWidth(row);
    if (width !== st.relation!.columns.length) throw new Error(`upsert on ${this.tableName}: ${width} values for ${st.relation!.columns.length} columns`);
    const key = typeof row === 'string' ? packedFields(row, st.keyIdx) : packRow(st.keyIdx.map((i) => row[i]!));
    let unchanged = sentUnchanged && sentUnchanged.length > 0 ? sentUnchanged : undefined;
    if (unchanged) {
      const before = st.rows.get(key);
      if (before?.op === 'upsert') {
        // Rare (a TOAST-partial update after another change of the key in this batch): merged as values.
        const merged = typeof row === 'string' ? unpackRow(row) : row.slice();
        const earlier = typeof before.row === 'string' ? unpackRow(before.row) : before.row;
        const still: number[] = [];
        for (const i of unchanged) {
          if (before.unchanged?.includes(i)) still.push(i);
          else merged[i] = earlier[i]!;
        }
        still.sort((a, b) => a - b);
        st.rows.set(key, { op: 'upsert', row: merged, unchanged: still.length > 0 ? still : undefined });
        return;
      }
      unchanged = [...unchanged].sort((a, b) => a - b);
    }
    st.rows.set(key, { op: 'upsert', row, unchanged });
  }

  /** Counts the change as applied or skipped; false when the LSN filter skips it. */
  private count(): boolean {
    if (this.fresh) this.applied++;
    else this.skipped++;
    return this.fresh;
  }

  /** The current table's state, which a row change needs: a relation and a primary key. */
  private rowState(): TableState {
    const st = (this.st ??= this.stateFor(this.tableName));
    if (!st.relation) throw new Error(`batch has a change for ${this.tableName} but no relation for it`);
    if (st.keyIdx.length === 0) throw new Error(`table ${this.tableName} has no primary key (replica identity): it cannot be mirrored without drift`);
    return st;
  }

  private stateFor(table: string): TableState {
    let st = this.tables.get(table);
    if (!st) {
      const relation = this.batch.relations[table];
      const keyIdx: number[] = [];
      relation?.columns.forEach((c, i) => c.isKey && keyIdx.push(i));
      st = { relation, keyIdx, truncate: false, rows: new Map() };
      this.tables.set(table, st);
    }
    return st;
  }
}

function toPlan(table: string, st: TableState): TablePlan {
  const plan: TablePlan = { table, relation: st.relation, truncate: st.truncate, upserts: [], partial: [], deletes: [] };
  const groups = new Map<string, { sent: number[]; rows: PlanRow[] }>();
  const width = st.relation?.columns.length ?? 0;
  for (const p of st.rows.values()) {
    if (p.op === 'delete') plan.deletes.push(p.key);
    else if (!p.unchanged) plan.upserts.push(p.row);
    else {
      const sig = p.unchanged.join(',');
      let g = groups.get(sig);
      if (!g) {
        const skip = new Set(p.unchanged);
        g = { sent: Array.from({ length: width }, (_, i) => i).filter((i) => !skip.has(i)), rows: [] };
        groups.set(sig, g);
      }
      g.rows.push(p.row);
    }
  }
  plan.partial = [...groups.values()];
  return plan;
}
