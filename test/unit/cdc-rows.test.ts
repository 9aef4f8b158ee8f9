import { describe, expect, it } from 'vitest';
import { DuckDBInstance } from '@duckdb/node-api';
import { FIELD_SEP, packBatch, packedFields, packRow, packedWidth, rowFieldSql, unpackBatch, unpackRow } from '../../queues/cdc-rows.js';
import type { CdcApplyBatch, CdcText } from '../../queues/cdc.js';

// Values that collide with the packing: separators, escape sequences spelt out, the NULL marker's text.
const tricky: CdcText[][] = [
  ['1', 'plain', null],
  ['', null, ''],
  [`a${FIELD_SEP}b`, '¤', '¤0'],
  ['¤1¤2', `${FIELD_SEP}${FIELD_SEP}`, '¤¤0¦'],
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

  it('a batch packs and unpacks change by change; truncates pass as they are', () => {
    const batch: CdcApplyBatch = {
      slot: 's',
      epoch: 1,
      kind: 'stream',
      lastLsn: '0/30',
      relations: {},
      changes: [
        { op: 'upsert', table: 'public.t', lsn: '0/10', values: ['1', null, 'x'] },
        { op: 'upsert', table: 'public.t', lsn: '0/10', values: ['2', 'big', 'y'], unchanged: [1] },
        { op: 'delete', table: 'public.t', lsn: '0/20', key: ['1'] },
        { op: 'truncate', tables: ['public.t'], lsn: '0/30' },
      ],
    };
    const packed = packBatch(batch);
    expect(packed.changes[0]).toEqual({ op: 'upsert', table: 'public.t', lsn: '0/10', row: `1${FIELD_SEP}¤0${FIELD_SEP}x` });
    expect(packed.changes[2]).toEqual({ op: 'delete', table: 'public.t', lsn: '0/20', keyRow: '1' });
    expect(JSON.parse(JSON.stringify(packed))).toEqual(packed);
    expect(unpackBatch(packed)).toEqual(batch);
  });
});
