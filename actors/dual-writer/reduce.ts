import { compareLsn, type CdcApplyBatch, type CdcRelation, type CdcText } from '../../queues/cdc.js';

/** What one batch does to one table, after the per-key reduction. */
export interface TablePlan {
  table: string;
  /** Undefined only for a table the batch truncates without other changes. */
  relation: CdcRelation | undefined;
  /** Delete every row first (TRUNCATE); the changes below happened after it. */
  truncate: boolean;
  /** Full rows (every column sent), aligned with the relation's columns. */
  upserts: CdcText[][];
  /** Updates that left TOAST columns unsent, grouped by which columns were sent. */
  partial: Array<{ sent: number[]; rows: CdcText[][] }>;
  /** Key values (relation key columns, in column order) of deleted rows. */
  deletes: CdcText[][];
}

type Pending = { op: 'upsert'; values: CdcText[]; unchanged: number[] | undefined } | { op: 'delete'; key: CdcText[] };

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

/** Key values joined by a separator no PostgreSQL text output contains; `\u0001` marks NULL. */
function keyString(values: readonly CdcText[]): string {
  if (values.length === 1) return values[0] ?? '\u0001';
  let s = '';
  for (let i = 0; i < values.length; i++) s += (i ? '\u0000' : '') + (values[i] ?? '\u0001');
  return s;
}

function stateFor(tables: Map<string, TableState>, batch: CdcApplyBatch, table: string): TableState {
  let st = tables.get(table);
  if (!st) {
    const relation = batch.relations[table];
    const keyIdx: number[] = [];
    relation?.columns.forEach((c, i) => c.isKey && keyIdx.push(i));
    st = { relation, keyIdx, truncate: false, rows: new Map() };
    tables.set(table, st);
  }
  return st;
}

/**
 * Keeps the last change per primary key (array order is WAL order), skipping changes
 * at or below `appliedLsn` (a replayed batch then changes nothing). DuckDB keeps the
 * first of duplicate keys in one statement, so this is what makes one set-based
 * upsert per table correct, not just fast. An update whose TOAST columns were not
 * sent takes them from an earlier change of the same key in this batch when there is
 * one; otherwise those columns stay as the copy has them. A TRUNCATE drops the
 * table's earlier changes and deletes the copy's rows before the later ones land.
 */
export function reduceBatch(batch: CdcApplyBatch, appliedLsn: string | null): Reduction {
  const tables = new Map<string, TableState>();
  const filter = batch.kind === 'stream' && appliedLsn !== null;
  // Changes of one transaction share their LSN: compare each distinct LSN once.
  let lastLsn = '';
  let lastFresh = true;
  let applied = 0;
  let skipped = 0;
  for (const change of batch.changes) {
    if (filter) {
      if (change.lsn !== lastLsn) {
        lastLsn = change.lsn;
        lastFresh = compareLsn(change.lsn, appliedLsn) > 0;
      }
      if (!lastFresh) {
        skipped++;
        continue;
      }
    }
    applied++;
    if (change.op === 'truncate') {
      for (const t of change.tables) {
        const st = stateFor(tables, batch, t);
        st.truncate = true;
        st.rows.clear();
      }
      continue;
    }
    const st = stateFor(tables, batch, change.table);
    const rel = st.relation;
    if (!rel) throw new Error(`batch has a change for ${change.table} but no relation for it`);
    if (st.keyIdx.length === 0) throw new Error(`table ${change.table} has no primary key (replica identity): it cannot be mirrored without drift`);
    if (change.op === 'delete') {
      if (change.key.length !== st.keyIdx.length) throw new Error(`delete on ${change.table}: ${change.key.length} key values for ${st.keyIdx.length} key columns`);
      st.rows.set(keyString(change.key), { op: 'delete', key: change.key });
      continue;
    }
    const values = change.values;
    if (values.length !== rel.columns.length) throw new Error(`upsert on ${change.table}: ${values.length} values for ${rel.columns.length} columns`);
    const key = st.keyIdx.length === 1 ? (values[st.keyIdx[0]!] ?? '\u0001') : keyString(st.keyIdx.map((i) => values[i]!));
    let unchanged = change.unchanged && change.unchanged.length > 0 ? change.unchanged : undefined;
    if (unchanged) {
      const before = st.rows.get(key);
      if (before?.op === 'upsert') {
        const merged = values.slice();
        const still: number[] = [];
        for (const i of unchanged) {
          if (before.unchanged?.includes(i)) still.push(i);
          else merged[i] = before.values[i]!;
        }
        still.sort((a, b) => a - b);
        st.rows.set(key, { op: 'upsert', values: merged, unchanged: still.length > 0 ? still : undefined });
        continue;
      }
      unchanged = [...unchanged].sort((a, b) => a - b);
    }
    st.rows.set(key, { op: 'upsert', values, unchanged });
  }
  return { plans: [...tables.entries()].map(([table, st]) => toPlan(table, st)), applied, skipped };
}

function toPlan(table: string, st: TableState): TablePlan {
  const plan: TablePlan = { table, relation: st.relation, truncate: st.truncate, upserts: [], partial: [], deletes: [] };
  const groups = new Map<string, { sent: number[]; rows: CdcText[][] }>();
  const width = st.relation?.columns.length ?? 0;
  for (const p of st.rows.values()) {
    if (p.op === 'delete') plan.deletes.push(p.key);
    else if (!p.unchanged) plan.upserts.push(p.values);
    else {
      const sig = p.unchanged.join(',');
      let g = groups.get(sig);
      if (!g) {
        const skip = new Set(p.unchanged);
        g = { sent: Array.from({ length: width }, (_, i) => i).filter((i) => !skip.has(i)), rows: [] };
        groups.set(sig, g);
      }
      g.rows.push(p.values);
    }
  }
  plan.partial = [...groups.values()];
  return plan;
}
