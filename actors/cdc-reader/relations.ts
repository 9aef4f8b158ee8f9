import type { CdcColumn, CdcRelation } from '../../queues/cdc.js';
import type { WireColumn, WireRelation } from './pgoutput.js';

/** What the catalog says about a monitored table. */
export interface CatalogTable {
  table: string;
  columns: CdcColumn[];
  replicaIdentity: string;
}

export interface Queryable {
  query<R extends Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

/** Columns (in attnum order, without dropped or generated ones), their `format_type` and primary key. */
export async function loadCatalog(db: Queryable, tables: readonly string[]): Promise<Map<string, CatalogTable>> {
  const { rows } = await db.query<{ tbl: string; attname: string; pg_type: string; type_oid: number; is_key: boolean; ident: string }>(
    `SELECT n.nspname || '.' || c.relname AS tbl, a.attname, format_type(a.atttypid, a.atttypmod) AS pg_type,
            a.atttypid::int AS type_oid, coalesce(a.attnum = ANY(i.indkey::int2[]), false) AS is_key, c.relreplident::text AS ident
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
       LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
      WHERE n.nspname || '.' || c.relname = ANY($1::text[]) AND c.relkind IN ('r', 'p')
      ORDER BY 1, a.attnum`,
    [tables],
  );
  const out = new Map<string, CatalogTable>();
  for (const r of rows) {
    let t = out.get(r.tbl);
    if (!t) out.set(r.tbl, (t = { table: r.tbl, columns: [], replicaIdentity: r.ident }));
    t.columns.push({ name: r.attname, pgType: r.pg_type, typeOid: r.type_oid, isKey: r.is_key });
  }
  return out;
}

/** What the reader knows of one table it streams. */
export interface TableState {
  table: string;
  relation: CdcRelation;
  /** Indexes of the primary-key columns in the relation, in column order. */
  keyIdx: number[];
  /** Why the table's changes are no longer passed on (schema drift), or null. */
  quarantined: string | null;
}

export type ShapeVerdict = { kind: 'same' } | { kind: 'added'; columns: string[] } | { kind: 'incompatible'; reason: string };

/**
 * Compares a table's previous columns with a new Relation message. Columns may
 * only be appended; a dropped, renamed, reordered or retyped column cannot be
 * mirrored by position and name without drift.
 */
export function compareShape(prev: ReadonlyArray<Pick<CdcColumn, 'name' | 'typeOid'>>, next: ReadonlyArray<Pick<WireColumn, 'name' | 'typeOid'>>): ShapeVerdict {
  const nextNames = new Set(next.map((c) => c.name));
  for (let i = 0; i < prev.length; i++) {
    const p = prev[i]!;
    const n = next[i];
    if (n && n.name === p.name) {
      if (n.typeOid !== p.typeOid) return { kind: 'incompatible', reason: `column ${p.name} changed type (oid ${p.typeOid} -> ${n.typeOid})` };
      continue;
    }
    if (!nextNames.has(p.name)) {
      const added = next.filter((c) => !prev.some((q) => q.name === c.name)).map((c) => c.name);
      return { kind: 'incompatible', reason: added.length > 0 ? `column ${p.name} was dropped or renamed (to ${added.join(', ')}?)` : `column ${p.name} was dropped` };
    }
    return { kind: 'incompatible', reason: `columns were reordered at ${p.name}` };
  }
  if (next.length === prev.length) return { kind: 'same' };
  return { kind: 'added', columns: next.slice(prev.length).map((c) => c.name) };
}

/**
 * Turns Relation messages into the contract's relations, keeping the primary key
 * from the catalog (under REPLICA IDENTITY FULL pgoutput flags every column) and
 * `format_type` spellings from the catalog; a column the catalog did not know
 * (added later) gets its spelling from `resolveTypes` before its batch leaves.
 */
export class RelationTracker {
  private readonly byTable = new Map<string, TableState>();
  private readonly unresolved = new Set<CdcColumn>();

  constructor(private readonly catalog: Map<string, CatalogTable>) {}

  get(table: string): TableState | undefined {
    return this.byTable.get(table);
  }

  tables(): TableState[] {
    return [...this.byTable.values()];
  }

  setCatalog(table: CatalogTable): void {
    this.catalog.set(table.table, table);
  }

  /** A Relation message: the new state, and what changed (null: first sight or same). */
  onRelation(wire: WireRelation): { state: TableState; verdict: ShapeVerdict } {
    const prev = this.byTable.get(wire.table);
    const cat = this.catalog.get(wire.table);
    const baseline = prev?.relation.columns ?? cat?.columns;
    const verdict: ShapeVerdict = baseline ? compareShape(baseline, wire.columns) : { kind: 'same' };
    const keyNames = new Set((prev?.relation.columns ?? cat?.columns ?? []).filter((c) => c.isKey).map((c) => c.name));
    if (keyNames.size === 0 && wire.replicaIdentity !== 'f') for (const c of wire.columns) if (c.flags & 1) keyNames.add(c.name);
    const columns: CdcColumn[] = wire.columns.map((c) => {
      const known = (prev?.relation.columns ?? cat?.columns)?.find((k) => k.name === c.name && k.typeOid === c.typeOid);
      const col: CdcColumn = { name: c.name, pgType: known?.pgType ?? '', typeOid: c.typeOid, isKey: keyNames.has(c.name) };
      if (!known) {
        (col as CdcColumn & { typmod?: number }).typmod = c.typmod;
        this.unresolved.add(col);
      }
      return col;
    });
    const keyIdx = columns.flatMap((c, i) => (c.isKey ? [i] : []));
    let quarantined = prev?.quarantined ?? null;
    if (verdict.kind === 'incompatible') quarantined = verdict.reason;
    else if (keyIdx.length === 0 || keyIdx.length !== keyNames.size) quarantined = `table ${wire.table} has no primary key (or its key columns are not all published)`;
    const state: TableState = { table: wire.table, relation: { table: wire.table, columns }, keyIdx, quarantined };
    this.byTable.set(wire.table, state);
    return { state, verdict };
  }

  /** Fills in the `format_type` of columns learnt from Relation messages. */
  async resolveTypes(db: Queryable): Promise<void> {
    if (this.unresolved.size === 0) return;
    const cols = [...this.unresolved];
    const { rows } = await db.query<{ t: string }>(`SELECT format_type(o, m) AS t FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS x(o, m, n) ORDER BY n`, [
      cols.map((c) => c.typeOid),
      cols.map((c) => (c as CdcColumn & { typmod?: number }).typmod ?? -1),
    ]);
    cols.forEach((c, i) => {
      c.pgType = rows[i]!.t;
      delete (c as CdcColumn & { typmod?: number }).typmod;
      this.unresolved.delete(c);
    });
  }

  get needsTypes(): boolean {
    return this.unresolved.size > 0;
  }
}
