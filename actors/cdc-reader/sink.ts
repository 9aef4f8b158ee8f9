import type { CdcText } from '../../queues/cdc.js';
import { unpackRow } from '../../queues/cdc-rows.js';
import type { TxBatcher } from './batcher.js';
import { lsnToString } from './lsn.js';
import type { PgoutputSink, WireRelation } from './pgoutput.js';
import type { RelationTracker, ShapeVerdict, TableState } from './relations.js';
import { WATERMARK_TABLE } from './setup.js';

export const HEARTBEAT_PREFIX = 'concord_cdc_heartbeat';

/** What the stream sink reports beyond the changes it batches. */
export interface SinkEvents {
  /** A Relation message of a monitored table (new shape, or first sight). */
  relation(state: TableState, verdict: ShapeVerdict): void;
  /** A watermark row of this slot was written (DBLog backfill). */
  watermark(mark: string, commitLsn: number): void;
  /** A heartbeat message of this slot, with the time it was written. */
  heartbeat(lsn: number, writtenMs: number): void;
  /** Keys of a table being backfilled are watched between its watermarks. */
  watchedTable: string | null;
  seenKey(key: string): void;
  truncated(table: string): void;
}

/**
 * Turns decoded pgoutput messages into contract changes in the batcher. Only
 * the hot path lives here: one Map lookup per row, one change object, values
 * passed through as decoded.
 */
export class StreamSink implements PgoutputSink {
  private readonly states = new Map<number, TableState | null>();
  private txLsn = '';
  private txLsnNum = 0;
  private watermarkRelid = -1;
  changes = 0;
  transactions = 0;
  lastCommitEnd = 0;

  constructor(
    private readonly slot: string,
    private readonly monitored: ReadonlySet<string>,
    private readonly tracker: RelationTracker,
    private readonly batcher: TxBatcher,
    private readonly events: SinkEvents,
  ) {}

  /** Forgets cached table states (after a quarantine decided outside a Relation message). */
  refresh(): void {
    for (const [relid, st] of this.states) if (st?.quarantined) this.states.set(relid, null);
  }

  begin(finalLsn: number): void {
    this.txLsnNum = finalLsn;
    this.txLsn = lsnToString(finalLsn);
    this.batcher.begin();
  }

  commit(commitLsn: number, endLsn: number, commitTimeMs: number): void {
    this.batcher.commit(commitLsn, commitTimeMs);
    this.lastCommitEnd = endLsn;
    this.transactions++;
  }

  relation(rel: WireRelation): void {
    rel.packed = false;
    if (rel.table === WATERMARK_TABLE) {
      this.watermarkRelid = rel.relid;
      return;
    }
    if (!this.monitored.has(rel.table)) {
      this.states.set(rel.relid, null);
      return;
    }
    const { state, verdict } = this.tracker.onRelation(rel);
    this.states.set(rel.relid, state.quarantined ? null : state);
    // New rows of a monitored table come packed (insertPacked/updatePacked): no string per value.
    rel.packed = !state.quarantined;
    this.events.relation(state, verdict);
  }

  private key(st: TableState, values: CdcText[]): CdcText[] {
    const out = new Array<CdcText>(st.keyIdx.length);
    for (let i = 0; i < st.keyIdx.length; i++) out[i] = values[st.keyIdx[i]!]!;
    return out;
  }

  private watch(st: TableState, values: CdcText[]): void {
    if (this.events.watchedTable === st.table) this.events.seenKey(this.key(st, values).join('\u0000'));
  }

  insert(rel: WireRelation, values: CdcText[]): void {
    if (rel.relid === this.watermarkRelid) return this.onWatermark(values);
    const st = this.states.get(rel.relid);
    if (!st) return;
    this.watch(st, values);
    this.batcher.add({ op: 'upsert', table: st.table, lsn: this.txLsn, values }, st.table, st.relation);
    this.changes++;
  }

  insertPacked(rel: WireRelation, row: string): void {
    this.updatePacked(rel, row, undefined);
  }

  /** An insert, or an update that sent no old row (its key did not change): the new row, packed. */
  updatePacked(rel: WireRelation, row: string, unchanged: number[] | undefined): void {
    const st = this.states.get(rel.relid);
    if (!st) return;
    if (this.events.watchedTable === st.table) this.watch(st, unpackRow(row));
    this.batcher.add(unchanged ? { op: 'upsert', table: st.table, lsn: this.txLsn, row, unchanged } : { op: 'upsert', table: st.table, lsn: this.txLsn, row }, st.table, st.relation);
    this.changes++;
  }

  update(rel: WireRelation, old: CdcText[] | null, values: CdcText[], unchanged: number[] | undefined): void {
    if (rel.relid === this.watermarkRelid) return this.onWatermark(values);
    const st = this.states.get(rel.relid);
    if (!st) return;
    if (old !== null) {
      // The key changed (old key sent) or REPLICA IDENTITY FULL: the old key must go
      // when it differs, or the copy would keep the row under its old key too.
      for (const i of st.keyIdx) {
        if (old[i] !== undefined && old[i] !== values[i]) {
          this.watch(st, old);
          this.batcher.add({ op: 'delete', table: st.table, lsn: this.txLsn, key: this.key(st, old) }, st.table, st.relation);
          this.changes++;
          break;
        }
      }
    }
    this.watch(st, values);
    this.batcher.add(
      unchanged ? { op: 'upsert', table: st.table, lsn: this.txLsn, values, unchanged } : { op: 'upsert', table: st.table, lsn: this.txLsn, values },
      st.table,
      st.relation,
    );
    this.changes++;
  }

  delete(rel: WireRelation, old: CdcText[]): void {
    const st = this.states.get(rel.relid);
    if (!st) return;
    this.watch(st, old);
    this.batcher.add({ op: 'delete', table: st.table, lsn: this.txLsn, key: this.key(st, old) }, st.table, st.relation);
    this.changes++;
  }

  truncate(rels: WireRelation[]): void {
    const states = rels.map((r) => this.states.get(r.relid)).filter((s): s is TableState => Boolean(s));
    if (states.length === 0) return;
    for (const s of states) if (this.events.watchedTable === s.table) this.events.truncated(s.table);
    const first = states[0]!;
    for (const s of states.slice(1)) this.batcher.addRelation(s.table, s.relation);
    this.batcher.add({ op: 'truncate', tables: states.map((s) => s.table), lsn: this.txLsn }, first.table, first.relation);
    this.changes++;
  }

  message(lsn: number, _transactional: boolean, prefix: string, content: Buffer): void {
    if (prefix !== HEARTBEAT_PREFIX) return;
    const text = content.toString('utf8');
    const at = text.lastIndexOf(':');
    if (text.slice(0, at) === this.slot) this.events.heartbeat(lsn, Number(text.slice(at + 1)));
  }

  private onWatermark(values: CdcText[]): void {
    if (values[0] === this.slot && typeof values[1] === 'string') this.events.watermark(values[1], this.txLsnNum);
  }
}
