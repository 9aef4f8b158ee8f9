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
  truncate(rels: WireRelation[], cascade: boolean): void;
  message(lsn: number, transactional: boolean, prefix: string, content: Buffer): void;
}

export class PgoutputError extends Error {}

const NO_OLD: CdcText[] = [];

export class PgoutputDecoder {
  private readonly relations = new Map<number, WireRelation>();
  private buf: Buffer = Buffer.alloc(0);
  private p = 0;
  private unchanged: number[] | undefined;

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
