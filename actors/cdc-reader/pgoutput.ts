import type { CdcText } from '../../queues/cdc.js';
import { readLsn, readPgTimeMs } from './lsn.js';

/**
 * A lean pgoutput (protocol version 1) decoder over the CopyData payloads of a
 * logical replication stream. Values stay PostgreSQL's text output (one string
 * per column, `null` for SQL NULL) and rows stay arrays aligned with the relation:
 * no type parsing, no per-row objects keyed by column name. That is why the
 * reader does not use pg-logical-replication's parser, which runs pg's type
 * parsers on every value (timestamptz becomes a JS Date and loses microseconds)
 * and builds one keyed object per tuple.
 *
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */

export interface WireColumn {
  name: string;
  /** Bit 1: part of the replica identity. */
  flags: number;
  typeOid: number;
  typmod: number;
}

export interface WireRelation {
  relid: number;
  schema: string;
  name: string;
  /** `schema.name`, unquoted. */
  table: string;
  /** d(efault), n(othing), f(ull), i(ndex) */
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  columns: WireColumn[];
  /** Set by the sink: new rows of this relation go to `insertPacked` / `updatePacked` when it has them. */
  packed?: boolean;
}

/** What the decoder reports; called synchronously, in WAL order. */
export interface PgoutputSink {
  begin(finalLsn: number, commitTimeMs: number, xid: number): void;
  commit(commitLsn: number, endLsn: number, commitTimeMs: number): void;
  relation(rel: WireRelation): void;
  insert(rel: WireRelation, values: CdcText[]): void;
  /**
   * `old`: the old key ('K', non-key columns null) or whole old row ('O', under
   * REPLICA IDENTITY FULL), or null when the key did not change. `unchanged`:
   * indexes of unchanged TOAST columns ('u') not filled from the old row.
   */
  update(rel: WireRelation, old: CdcText[] | null, values: CdcText[], unchanged: number[] | undefined): void;
  delete(rel: WireRelation, old: CdcText[]): void;
  /**
   * Optional, for relations flagged `packed`: a new row (an insert, or an update that sent
   * no old row) as a packed row (queues/cdc-rows.ts) built straight from the message bytes,
   * without a string per value. A row with a value the packing would escape, or a binary
   * value, comes through `insert` / `update` instead.
   */
  insertPacked?(rel: WireRelation, row: string): void;
  updatePacked?(rel: WireRelation, row: string, unchanged: number[] | undefined): void;
  truncate(rels: WireRelation[], cascade: boolean): void;
  message(lsn: number, transactional: boolean, prefix: string, content: Buffer): void;
}

export class PgoutputError extends Error {}

const NO_OLD: CdcText[] = [];
// UTF-8 of the packing's characters: `¦` (the field separator) is C2 A6, `¤` C2 A4, `§` C2 A7.
const UTF8_LEAD_C2 = 0xc2;
const SEP_BYTE = 0xa6;
const ESC_BYTE = 0xa4;
const NULL_MARK = 0x30; // '0' after `¤`: the packed NULL
const SCRATCH_KEEP_BYTES = 1 << 20;

export class PgoutputDecoder {
  private readonly relations = new Map<number, WireRelation>();
  private buf: Buffer = Buffer.alloc(0);
  private p = 0;
  private unchanged: number[] | undefined;
  /** Where packed rows are assembled before one UTF-8 decode per row. */
  private scratch: Buffer = Buffer.alloc(4096);

  constructor(private readonly sink: PgoutputSink) {}

  relation(relid: number): WireRelation | undefined {
    return this.relations.get(relid);
  }

  /** Decodes one pgoutput message (the XLogData payload, after its 25-byte header). */
  decode(buf: Buffer, start = 0): void {
    this.buf = buf;
    this.p = start + 1;
    const sink = this.sink;
    switch (buf[start]) {
      case 0x42 /* B */: {
        const lsn = readLsn(buf, this.p);
        const time = readPgTimeMs(buf, this.p + 8);
        const xid = buf.readUInt32BE(this.p + 16);
        sink.begin(lsn, time, xid);
        return;
      }
      case 0x43 /* C */: {
        const commitLsn = readLsn(buf, this.p + 1);
        const endLsn = readLsn(buf, this.p + 9);
        sink.commit(commitLsn, endLsn, readPgTimeMs(buf, this.p + 17));
        return;
      }
      case 0x49 /* I */: {
        const rel = this.rel();
        this.p++; // 'N'
        if (rel.packed && sink.insertPacked) {
          const row = this.packedTuple();
          if (row !== undefined) return sink.insertPacked(rel, row);
        }
        sink.insert(rel, this.tuple(rel, NO_OLD));
        return;
      }
      case 0x55 /* U */: {
        const rel = this.rel();
        let kind = buf[this.p++];
        let old: CdcText[] | null = null;
        if (kind === 0x4b /* K */ || kind === 0x4f /* O */) {
          old = this.tuple(rel, null);
          kind = buf[this.p++];
        }
        if (kind !== 0x4e /* N */) throw new PgoutputError(`update: unexpected tuple kind ${String(kind)}`);
        this.unchanged = undefined;
        if (old === null && rel.packed && sink.updatePacked) {
          const row = this.packedTuple();
          if (row !== undefined) return sink.updatePacked(rel, row, this.unchanged);
        }
        const values = this.tuple(rel, old ?? NO_OLD);
        sink.update(rel, old, values, this.unchanged);
        return;
      }
      case 0x44 /* D */: {
        const rel = this.rel();
        this.p++; // 'K' or 'O'
        sink.delete(rel, this.tuple(rel, null));
        return;
      }
      case 0x52 /* R */:
        sink.relation(this.readRelation());
        return;
      case 0x54 /* T */: {
        const n = buf.readUInt32BE(this.p);
        const flags = buf[this.p + 4]!;
        this.p += 5;
        const rels: WireRelation[] = [];
        for (let i = 0; i < n; i++) {
          rels.push(this.rel());
        }
        sink.truncate(rels, (flags & 1) !== 0);
        return;
      }
      case 0x4d /* M */: {
        const flags = buf[this.p]!;
        const lsn = readLsn(buf, this.p + 1);
        this.p += 9;
        const prefix = this.cstring();
        const len = buf.readUInt32BE(this.p);
        sink.message(lsn, (flags & 1) !== 0, prefix, buf.subarray(this.p + 4, this.p + 4 + len));
        return;
      }
      case 0x59 /* Y */:
      case 0x4f /* O */:
        return; // type and origin messages: the reader takes type names from the catalog
      default:
        throw new PgoutputError(`unknown pgoutput message ${String(buf[start])}`);
    }
  }

  private rel(): WireRelation {
    const relid = this.buf.readUInt32BE(this.p);
    this.p += 4;
    const rel = this.relations.get(relid);
    if (!rel) throw new PgoutputError(`change for relation ${relid} before its Relation message`);
    return rel;
  }

  private cstring(): string {
    const end = this.buf.indexOf(0, this.p);
    if (end < 0) throw new PgoutputError('unterminated string');
    const s = this.buf.toString('utf8', this.p, end);
    this.p = end + 1;
    return s;
  }

  private readRelation(): WireRelation {
    const buf = this.buf;
    const relid = buf.readUInt32BE(this.p);
    this.p += 4;
    const schema = this.cstring();
    const name = this.cstring();
    const replicaIdentity = String.fromCharCode(buf[this.p++]!) as WireRelation['replicaIdentity'];
    const n = buf.readUInt16BE(this.p);
    this.p += 2;
    const columns: WireColumn[] = [];
    for (let i = 0; i < n; i++) {
      const flags = buf[this.p++]!;
      const colName = this.cstring();
      const typeOid = buf.readUInt32BE(this.p);
      const typmod = buf.readInt32BE(this.p + 4);
      this.p += 8;
      columns.push({ name: colName, flags, typeOid, typmod });
    }
    const rel: WireRelation = { relid, schema, name, table: `${schema}.${name}`, replicaIdentity, columns };
    this.relations.set(relid, rel);
    return rel;
  }

  /**
   * A new row's TupleData as a packed row: the value bytes copied between separators, NULL
   * and unchanged TOAST values ('u', recorded in `this.unchanged`, as `tuple` does for a row
   * without an old row) as the NULL field, then ONE UTF-8 decode. Returns undefined, with the
   * position and `this.unchanged` as they were, when a value holds `¤`, `¥`, `¦` or `§` (C2
   * A4..A7: packing would escape them) or is binary: the caller then decodes values.
   */
  private packedTuple(): string | undefined {
    const buf = this.buf;
    let p = this.p;
    const n = buf.readUInt16BE(p);
    p += 2;
    let out = this.scratch;
    let o = 0;
    for (let i = 0; i < n; i++) {
      const kind = buf[p++];
      const len = kind === 0x74 /* t */ ? buf.readUInt32BE(p) : 0;
      if (o + len + 3 > out.length) out = this.grow(o + len + 3, o);
      if (i > 0) {
        out[o++] = UTF8_LEAD_C2;
        out[o++] = SEP_BYTE;
      }
      if (kind === 0x74 /* t */) {
        p += 4;
        const end = p + len;
        for (; p < end; p++) {
          const b = buf[p]!;
          if (b === UTF8_LEAD_C2 && buf[p + 1]! >= ESC_BYTE && buf[p + 1]! <= 0xa7) return this.notPacked();
          out[o++] = b;
        }
      } else if (kind === 0x6e /* n */ || kind === 0x75 /* u */) {
        out[o++] = UTF8_LEAD_C2;
        out[o++] = ESC_BYTE;
        out[o++] = NULL_MARK;
        if (kind === 0x75) (this.unchanged ??= []).push(i);
      } else return this.notPacked();
    }
    this.p = p;
    const row = out.toString('utf8', 0, o);
    // A huge value (a large TOAST text) grew the buffer: do not keep that much memory for later rows.
    if (out.length > SCRATCH_KEEP_BYTES) this.scratch = Buffer.alloc(4096);
    return row;
  }

  /** packedTuple gives up: the position was not moved; what it recorded as unchanged is dropped. */
  private notPacked(): undefined {
    this.unchanged = undefined;
    return undefined;
  }

  private grow(need: number, used: number): Buffer {
    const next = Buffer.alloc(Math.max(need, this.scratch.length * 2));
    this.scratch.copy(next, 0, 0, used);
    this.scratch = next;
    return next;
  }

  /**
   * One TupleData. An unchanged TOAST value ('u') takes the old row's value when
   * the old row was sent whole (REPLICA IDENTITY FULL), else it is recorded in
   * `this.unchanged` and left null.
   */
  private tuple(rel: WireRelation, old: CdcText[] | null): CdcText[] {
    // `old` null: this IS an old row (key or full); NO_OLD: a new row with no old row sent.
    const buf = this.buf;
    const n = buf.readUInt16BE(this.p);
    this.p += 2;
    const values: CdcText[] = new Array<CdcText>(n);
    for (let i = 0; i < n; i++) {
      const kind = buf[this.p++];
      if (kind === 0x74 /* t */) {
        const len = buf.readUInt32BE(this.p);
        const at = this.p + 4;
        values[i] = buf.toString('utf8', at, at + len);
        this.p = at + len;
      } else if (kind === 0x6e /* n */) {
        values[i] = null;
      } else if (kind === 0x75 /* u */) {
        // In an old row, 'u' is left undefined so the new row cannot mistake it for NULL.
        if (old === null) values[i] = undefined as unknown as CdcText;
        else if (rel.replicaIdentity === 'f' && old[i] !== undefined) values[i] = old[i]!;
        else {
          values[i] = null;
          (this.unchanged ??= []).push(i);
        }
      } else {
        throw new PgoutputError(`tuple: unexpected column kind ${String(kind)} (binary mode is not used)`);
      }
    }
    return values;
  }
}
