import { describe, expect, it } from 'vitest';
import { DuckDBInstance } from '@duckdb/node-api';
import { decodeSegment, encodeSegment, FIELD_SEP, packBatch, packChange, packedFields, packRow, packedWidth, readSegment, RECORD_SEP, rowFieldSql, segmentFirstLsn, unpackBatch, unpackRow } from '../../queues/cdc-rows.js';
import type { CdcChange } from '../../queues/cdc.js';
import type { CdcApplyBatch, CdcText } from '../../queues/cdc.js';

// Values that collide with the packing: separators, escape sequences spelt out, the NULL marker's text.
const tricky: CdcText[][] = [
  ['1', 'plain', null],
  ['', null, ''],
  [`a${FIELD_SEP}b`, '¤', '¤0'],
  ['¤1¤2', `${FIELD_SEP}${FIELD_SEP}`, '¤¤0¦'],
  [`${RECORD_SEP}`, `¤3${RECORD_SEP}¤`, `¤L0/1${RECORD_SEP}¤Dx`],
  ['ünïcødé 🎉', '\t\n\\', '"quoted", \'too\''],
  [null],
  [''],
];

describe('packed CDC rows', () => {
  it('round-trip every value, NULL and the empty string apart', () => {
    for (const values of tricky) {
      const row = packRow(values);
      expect(unpackRow(row)).toEqual(values);
      expect(packedWidth(row)).toBe(values.length);
    }
  });

  it('key fields read without unpacking equal the key packed on its own', () => {
    for (const values of tricky.filter((v) => v.length === 3)) {
      const row = packRow(values);
      for (const idx of [[0], [1], [2], [0, 2], [2, 1]]) expect(packedFields(row, idx)).toBe(packRow(idx.map((i) => values[i]!)));
    }
  });

  it('DuckDB reads every field back exactly (rowFieldSql)', async () => {
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    try {
      for (const values of tricky) {
        const sql = `SELECT ${values.map((_, i) => `${rowFieldSql('p', i)} AS f${i}`).join(', ')} FROM (SELECT string_split($1, '${FIELD_SEP}') AS p)`;
        const got = (await conn.runAndReadAll(sql, [packRow(values)])).getRows()[0]!;
        expect(got.map((v) => (v === null ? null : String(v)))).toEqual(values);
      }
    } finally {
      conn.closeSync();
      db.closeSync();
    }
  });

  it('a batch is queued as one segment that reads back change by change, with its size', () => {
    const changes: CdcChange[] = [
      { op: 'upsert', table: 'public.t', lsn: '0/10', values: ['1', null, 'x'] },
      { op: 'upsert', table: 'public.t', lsn: '0/10', values: ['2', 'big', 'y'], unchanged: [1] },
      { op: 'upsert', table: `public.${RECORD_SEP}odd¤`, lsn: '0/10', values: ['¤0'] },
      { op: 'delete', table: 'public.t', lsn: '0/20', key: ['1'] },
      { op: 'truncate', tables: ['public.t', `public.${FIELD_SEP}`], lsn: '0/30' },
      ...tricky.filter((v) => v.length === 3).map((values, i): CdcChange => ({ op: 'upsert', table: 'public.t', lsn: `0/4${i}`, values })),
    ];
    const batch: CdcApplyBatch = { slot: 's', epoch: 1, kind: 'stream', lastLsn: changes.at(-1)!.lsn, relations: {}, changes };
    const packed = packBatch(batch);
    expect(packed.size).toBe(changes.length);
    expect(packed.changes).toHaveLength(1);
    const segment = packed.changes[0] as string;
    expect(segment.startsWith(`¤L0/10${RECORD_SEP}¤Rpublic.t${RECORD_SEP}1${FIELD_SEP}¤0${FIELD_SEP}x${RECORD_SEP}¤P1${FIELD_SEP}2`)).toBe(true);
    expect(segmentFirstLsn(segment)).toBe('0/10');
    expect(JSON.parse(JSON.stringify(packed))).toEqual(packed);
    expect(unpackBatch(packed)).toEqual({ ...batch, changes });
    // Change objects of older readers (packed rows) encode to the same segment.
    expect(encodeSegment(changes.map(packChange))).toBe(segment);
    expect(() => packBatch(packed)).toThrow(/already holds segments/);
    expect(packBatch({ ...batch, changes: [] })).toMatchObject({ changes: [], size: 0 });
  });

  it('a segment with a record it does not know is refused, not read as a row', () => {
    expect(() => decodeSegment(`¤L0/1${RECORD_SEP}¤Rpublic.t${RECORD_SEP}¤Xwhat`)).toThrow(/unknown record ¤X/);
    expect(() => readSegment(`¤L0/1${RECORD_SEP}¤P1`, { lsn() {}, table() {}, upsert() {}, delete() {}, truncate() {} })).toThrow(/partial upsert without its row/);
  });

  it('older batches (change objects, packed or not) unpack too', () => {
    const changes: CdcChange[] = [
      { op: 'upsert', table: 'public.t', lsn: '0/10', values: ['1', null, 'x'] },
      { op: 'delete', table: 'public.t', lsn: '0/20', key: ['1'] },
    ];
    const batch: CdcApplyBatch = { slot: 's', epoch: 1, kind: 'stream', lastLsn: '0/20', relations: {}, changes: [packChange(changes[0]!), changes[1]!] };
    expect(unpackBatch(batch).changes).toEqual(changes);
  });
});
