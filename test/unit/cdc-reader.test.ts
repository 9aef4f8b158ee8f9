import { describe, expect, it } from 'vitest';
import type { CdcChange, CdcRelation, CdcText } from '../../queues/cdc.js';
import { TxBatcher, type ReadyBatch } from '../../actors/cdc-reader/batcher.js';
import { FIELD_SEP, packRow } from '../../queues/cdc-rows.js';
import { PgoutputDecoder, type PgoutputSink, type WireRelation } from '../../actors/cdc-reader/pgoutput.js';
import { compareShape } from '../../actors/cdc-reader/relations.js';
import { loadCdcConfig } from '../../actors/cdc-reader/config.js';
import { checkPreflight, CdcSetupError } from '../../actors/cdc-reader/setup.js';
import { lsnToString, parseLsn } from '../../actors/cdc-reader/lsn.js';
import { padRow } from '../../actors/cdc-reader/reader.js';
import { ConfigError } from '../../runtime/errors.js';

const rel: CdcRelation = { table: 'public.t', columns: [{ name: 'id', pgType: 'integer', typeOid: 23, isKey: true }] };
const up = (n: number, lsn = '0/1'): CdcChange => ({ op: 'upsert', table: 'public.t', lsn, values: [String(n)] });

function run(max: number, txSizes: number[], flushAt: number[] = []): ReadyBatch[] {
  const out: ReadyBatch[] = [];
  const b = new TxBatcher(max, (x) => out.push(x));
  let n = 0;
  txSizes.forEach((size, tx) => {
    b.begin();
    for (let i = 0; i < size; i++) b.add(up(n++, `0/${tx + 1}`), 'public.t', rel);
    b.commit(tx + 1, 1000 + tx);
    if (flushAt.includes(tx)) b.flush();
  });
  b.flush();
  return out;
}
const txCounts = (b: ReadyBatch) => [...new Set(b.changes.map((c) => c.lsn))].map((l) => b.changes.filter((c) => c.lsn === l).length);

describe('TxBatcher', () => {
  it('ends every batch on a transaction boundary and respects the max', () => {
    const batches = run(10, [3, 4, 5, 2, 7, 1]);
    expect(batches.map(txCounts)).toEqual([[3, 4], [5, 2], [7, 1]]);
    expect(batches.map((b) => b.lastLsn)).toEqual([2, 4, 6]);
    expect(batches.every((b) => b.changes.length <= 10)).toBe(true);
  });

  it('a single transaction larger than the max is one oversized batch, never split', () => {
    const batches = run(10, [2, 25, 3]);
    expect(batches.map(txCounts)).toEqual([[2], [25], [3]]);
  });

  it('a batch exactly at the max is handed out at its commit', () => {
    const out: ReadyBatch[] = [];
    const b = new TxBatcher(4, (x) => out.push(x));
    b.begin();
    for (let i = 0; i < 4; i++) b.add(up(i), 'public.t', rel);
    expect(out).toHaveLength(0);
    b.commit(9, 1);
    expect(out.map((x) => x.changes.length)).toEqual([4]);
  });

  it('flush hands out complete transactions and keeps the open one', () => {
    const out: ReadyBatch[] = [];
    const b = new TxBatcher(100, (x) => out.push(x));
    b.begin();
    b.add(up(1), 'public.t', rel);
    b.commit(5, 1);
    b.begin();
    b.add(up(2, '0/6'), 'public.t', rel);
    b.flush();
    expect(out.map((x) => x.changes.length)).toEqual([1]);
    expect(b.size).toBe(1);
    b.commit(6, 2);
    b.flush();
    expect(out.map((x) => x.lastLsn)).toEqual([5, 6]);
    expect(out[1]!.relations['public.t']).toBe(rel);
  });

  it('marks a batch in which a table changed shape (its short rows get padded), also the next one when the open transaction moves on', () => {
    const out: ReadyBatch[] = [];
    const b = new TxBatcher(3, (x) => out.push(x));
    const wider: CdcRelation = { ...rel, columns: [...rel.columns, { name: 'w', pgType: 'text', typeOid: 25, isKey: false }] };
    b.begin();
    b.add(up(1), 'public.t', rel);
    b.commit(1, 1);
    b.flush();
    b.begin();
    b.add(up(2, '0/2'), 'public.t', rel);
    b.add(up(3, '0/2'), 'public.t', wider);
    b.commit(2, 2);
    b.begin();
    b.add(up(4, '0/3'), 'public.t', wider);
    b.add(up(5, '0/3'), 'public.t', wider); // over the max: the batch of tx 2 leaves, tx 3 moves on
    b.commit(3, 3);
    b.flush();
    b.begin();
    b.add(up(6, '0/4'), 'public.t', wider);
    b.commit(4, 4);
    b.flush();
    expect(out.map((x) => [x.lastLsn, x.shapeChanged])).toEqual([[1, false], [2, true], [3, true], [4, false]]);
  });

  it('drops empty transactions and refuses changes outside one', () => {
    const out: ReadyBatch[] = [];
    const b = new TxBatcher(10, (x) => out.push(x));
    b.begin();
    b.commit(3, 1);
    b.flush();
    expect(out).toHaveLength(0);
    expect(() => b.add(up(1), 'public.t', rel)).toThrow(/outside a transaction/);
  });
});

/** pgoutput v1 messages, built by hand. */
const u32 = (n: number) => Buffer.from([(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
const u16 = (n: number) => Buffer.from([(n >>> 8) & 255, n & 255]);
const lsn64 = (hi: number, lo: number) => Buffer.concat([u32(hi), u32(lo)]);
const cstr = (s: string) => Buffer.concat([Buffer.from(s), Buffer.from([0])]);
const col = (v: string | null | 'u') =>
  v === null ? Buffer.from('n') : v === 'u' ? Buffer.from('u') : Buffer.concat([Buffer.from('t'), u32(Buffer.byteLength(v)), Buffer.from(v)]);
const tuple = (vals: Array<string | null | 'u'>) => Buffer.concat([u16(vals.length), ...vals.map(col)]);
const relationMsg = (relid: number, ident: string, cols: Array<[string, number, number]>) =>
  Buffer.concat([Buffer.from('R'), u32(relid), cstr('public'), cstr('t'), Buffer.from(ident), u16(cols.length), ...cols.map(([n, flags, oid]) => Buffer.concat([Buffer.from([flags]), cstr(n), u32(oid), u32(0xffffffff)]))]);

function recorder() {
  const events: unknown[] = [];
  const sink: PgoutputSink = {
    begin: (l, t, x) => events.push(['begin', lsnToString(l), t, x]),
    commit: (l, e) => events.push(['commit', lsnToString(l), lsnToString(e)]),
    relation: (r) => events.push(['relation', r.table, r.replicaIdentity, r.columns.map((c) => c.name)]),
    insert: (_r, v) => events.push(['insert', v]),
    update: (_r, o, v, u) => events.push(['update', o, v, u]),
    delete: (_r, o) => events.push(['delete', o]),
    truncate: (rs: WireRelation[], c) => events.push(['truncate', rs.map((r) => r.table), c]),
    message: (l, tr, p, c) => events.push(['message', lsnToString(l), tr, p, c.toString()]),
  };
  return { events, decoder: new PgoutputDecoder(sink) };
}

describe('PgoutputDecoder', () => {
  it('decodes begin, relation, insert, update, delete, truncate, message and commit with values as text', () => {
    const { events, decoder } = recorder();
    const micros = 1_000_000; // 2000-01-01T00:00:01Z
    decoder.decode(Buffer.concat([Buffer.from('B'), lsn64(0, 0x1a0), lsn64(0, micros), u32(77)]));
    decoder.decode(relationMsg(16384, 'd', [['id', 1, 23], ['body', 0, 25], ['note', 0, 25]]));
    decoder.decode(Buffer.concat([Buffer.from('I'), u32(16384), Buffer.from('N'), tuple(['1', 'é ünïcode', null])]));
    decoder.decode(Buffer.concat([Buffer.from('U'), u32(16384), Buffer.from('N'), tuple(['1', 'u', 'x'])]));
    decoder.decode(Buffer.concat([Buffer.from('U'), u32(16384), Buffer.from('K'), tuple(['1', null, null]), Buffer.from('N'), tuple(['2', 'b', null])]));
    decoder.decode(Buffer.concat([Buffer.from('D'), u32(16384), Buffer.from('K'), tuple(['2', null, null])]));
    decoder.decode(Buffer.concat([Buffer.from('T'), u32(1), Buffer.from([1]), u32(16384)]));
    decoder.decode(Buffer.concat([Buffer.from('M'), Buffer.from([0]), lsn64(1, 2), cstr('hb'), u32(3), Buffer.from('abc')]));
    decoder.decode(Buffer.concat([Buffer.from('C'), Buffer.from([0]), lsn64(0, 0x1a0), lsn64(0, 0x1d0), lsn64(0, micros)]));
    expect(events).toEqual([
      ['begin', '0/1A0', 946_684_801_000, 77],
      ['relation', 'public.t', 'd', ['id', 'body', 'note']],
      ['insert', ['1', 'é ünïcode', null]],
      ['update', null, ['1', null, 'x'], [1]],
      ['update', ['1', null, null], ['2', 'b', null], undefined],
      ['delete', ['2', null, null]],
      ['truncate', ['public.t'], true],
      ['message', '1/2', false, 'hb', 'abc'],
      ['commit', '0/1A0', '0/1D0'],
    ]);
  });

  it('under REPLICA IDENTITY FULL an unchanged TOAST value comes from the old row', () => {
    const { events, decoder } = recorder();
    decoder.decode(relationMsg(5, 'f', [['id', 1, 23], ['body', 1, 25]]));
    decoder.decode(Buffer.concat([Buffer.from('U'), u32(5), Buffer.from('O'), tuple(['1', 'long text']), Buffer.from('N'), tuple(['1', 'u'])]));
    // An old row whose own value was unchanged TOAST cannot fill it in: reported as unchanged.
    decoder.decode(Buffer.concat([Buffer.from('U'), u32(5), Buffer.from('O'), tuple(['1', 'u']), Buffer.from('N'), tuple(['1', 'u'])]));
    expect(events.slice(1)).toEqual([
      ['update', ['1', 'long text'], ['1', 'long text'], undefined],
      ['update', ['1', undefined], ['1', null], [1]],
    ]);
  });

  it('new rows of a relation flagged packed arrive packed, equal to packing the decoded values; rows packing would escape come as values', () => {
    const rows: Array<Array<string | null | 'u'>> = [
      ['1', 'é ünïcode 🎉', null],
      ['2', '', 'plain'],
      ['3', 'u', 'x'],
      ['4', `a${FIELD_SEP}b`, null], // packing escapes ¦: values
      ['5', '¤0', '§'], // and ¤, §: values
      ['6', '¢ © ®', 'x'.repeat(10_000)], // other C2 characters; a value past the scratch buffer
      ['7', 'y'.repeat(2_000_000), null], // past what the decoder keeps of its scratch buffer
    ];
    const plain = recorder();
    const packed: unknown[] = [];
    const both = recorder();
    const sink = (both.decoder as unknown as { sink: PgoutputSink }).sink;
    sink.insertPacked = (_r, row) => packed.push(['insert', row]);
    sink.updatePacked = (_r, row, u) => packed.push(['update', row, u]);
    for (const { decoder } of [plain, both]) {
      const rel = relationMsg(7, 'd', [['id', 1, 23], ['body', 0, 25], ['note', 0, 25]]);
      decoder.decode(rel);
      decoder.relation(7)!.packed = decoder === both.decoder;
      for (const r of rows) {
        if (!r.includes('u')) decoder.decode(Buffer.concat([Buffer.from('I'), u32(7), Buffer.from('N'), tuple(r)]));
        decoder.decode(Buffer.concat([Buffer.from('U'), u32(7), Buffer.from('N'), tuple(r)]));
      }
      // An update that sends its old key never comes packed: the sink compares the keys.
      decoder.decode(Buffer.concat([Buffer.from('U'), u32(7), Buffer.from('K'), tuple(['1', null, null]), Buffer.from('N'), tuple(['9', 'b', null])]));
    }
    const asPacked = plain.events.slice(1).map((e) => {
      const [kind, ...rest] = e as [string, ...unknown[]];
      if (kind === 'insert') return ['insert', packRow(rest[0] as CdcText[])];
      return ['update', packRow(rest[1] as CdcText[]), rest[2]];
    });
    // Rows 4 and 5 (and the keyed update) came as values in both decoders; the rest packed, in order.
    const viaValues = [5, 6, 7, 8, 13];
    expect(both.events.slice(1)).toEqual(plain.events.slice(1).filter((_, i) => viaValues.includes(i)));
    expect(packed).toEqual(asPacked.filter((_, i) => !viaValues.includes(i)));
    expect(packed).toHaveLength(9);
    expect(packed[4]).toEqual(['update', packRow(['3', null, 'x']), [1]]);
  });

  it('pads a row decoded before an ADD COLUMN the same way packed or as values: the new columns unchanged', () => {
    const values: Extract<CdcChange, { op: 'upsert' }> = { op: 'upsert', table: 'public.t', lsn: '0/1', values: ['1', null, 'a¦b'], unchanged: [1] };
    const packed = { op: 'upsert' as const, table: 'public.t', lsn: '0/1', row: packRow(['1', null, 'a¦b']), unchanged: [1] };
    padRow(values, 5);
    padRow(packed, 5);
    expect(values).toEqual({ op: 'upsert', table: 'public.t', lsn: '0/1', values: ['1', null, 'a¦b', null, null], unchanged: [1, 3, 4] });
    expect(packed).toEqual({ op: 'upsert', table: 'public.t', lsn: '0/1', row: packRow(['1', null, 'a¦b', null, null]), unchanged: [1, 3, 4] });
    const full = { op: 'upsert' as const, table: 'public.t', lsn: '0/1', row: packRow(['1', 'x']) };
    padRow(full, 2);
    expect(full).toEqual({ op: 'upsert', table: 'public.t', lsn: '0/1', row: packRow(['1', 'x']) });
  });

  it('refuses a change for an unknown relation and unknown message types', () => {
    const { decoder } = recorder();
    expect(() => decoder.decode(Buffer.concat([Buffer.from('I'), u32(9), Buffer.from('N'), tuple(['1'])]))).toThrow(/before its Relation message/);
    expect(() => decoder.decode(Buffer.from('Z'))).toThrow(/unknown pgoutput message/);
  });
});

describe('schema shape, LSNs, config and preflight', () => {
  const cols = (...names: Array<[string, number]>) => names.map(([name, typeOid]) => ({ name, typeOid }));
  it('accepts appended columns and flags dropped, renamed, retyped or reordered ones', () => {
    expect(compareShape(cols(['id', 23], ['a', 25]), cols(['id', 23], ['a', 25]))).toEqual({ kind: 'same' });
    expect(compareShape(cols(['id', 23]), cols(['id', 23], ['b', 25]))).toEqual({ kind: 'added', columns: ['b'] });
    expect(compareShape(cols(['id', 23], ['a', 25]), cols(['id', 23]))).toMatchObject({ kind: 'incompatible', reason: 'column a was dropped' });
    expect(compareShape(cols(['id', 23], ['a', 25]), cols(['id', 23], ['z', 25]))).toMatchObject({ reason: expect.stringContaining('dropped or renamed (to z?)') });
    expect(compareShape(cols(['id', 23], ['a', 25]), cols(['id', 23], ['a', 20]))).toMatchObject({ reason: expect.stringContaining('changed type') });
    expect(compareShape(cols(['id', 23], ['a', 25]), cols(['a', 25], ['id', 23]))).toMatchObject({ reason: expect.stringContaining('reordered') });
  });

  it('LSNs round-trip as X/Y', () => {
    for (const s of ['0/0', '0/1A0', '1/FFFFFFFF', 'A3/7']) expect(lsnToString(parseLsn(s))).toBe(s);
    expect(parseLsn('1/0')).toBe(4294967296);
    expect(() => parseLsn('nope')).toThrow(/not an LSN/);
  });

  it('reads and validates the CDC variables', () => {
    const c = loadCdcConfig({ CDC_ENABLED: 'true', DATABASE_URL: 'postgres://x/y', CDC_MONITORED_TABLES: 'users, app.pages ,audit', CDC_EXCLUDED_TABLES: 'public.audit' });
    expect(c).toMatchObject({ tables: ['public.users', 'app.pages'], slot: 'concord_cdc', publication: 'concord_cdc_pub', maxBatchSize: 1000 });
    const bad = () => loadCdcConfig({ CDC_ENABLED: 'true', DATABASE_URL: 'postgres://x/y', CDC_MONITORED_TABLES: 'users;drop', CDC_REPLICATION_SLOT_NAME: 'Bad-Slot', CDC_MAX_BATCH_SIZE: '0' });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/CDC_MONITORED_TABLES[\s\S]*CDC_REPLICATION_SLOT_NAME[\s\S]*CDC_MAX_BATCH_SIZE/);
    expect(() => loadCdcConfig({ CDC_ENABLED: 'true', DATABASE_URL: 'postgres://x/y', CDC_MONITORED_TABLES: 'a', CDC_EXCLUDED_TABLES: 'a' })).toThrow(/at least one table/);
  });

  it('preflight names the fix for wal_level and the REPLICATION attribute', () => {
    expect(() => checkPreflight({ walLevel: 'replica', role: 'app', canReplicate: true })).toThrow(CdcSetupError);
    expect(() => checkPreflight({ walLevel: 'replica', role: 'app', canReplicate: true })).toThrow(/wal_level=logical.*ALTER SYSTEM SET wal_level = logical/);
    expect(() => checkPreflight({ walLevel: 'logical', role: 'app', canReplicate: false })).toThrow(/ALTER ROLE "app" WITH REPLICATION/);
    expect(() => checkPreflight({ walLevel: 'logical', role: 'app', canReplicate: true })).not.toThrow();
  });
});

export type { CdcText };
