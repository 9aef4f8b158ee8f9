import { describe, expect, it } from 'vitest';
import type { CdcApplyBatch, CdcChange, CdcRelation } from '../../queues/cdc.js';
import { reduceBatch, type PlanRow, type TablePlan } from '../../actors/dual-writer/reduce.js';
import { encodeSegment, packBatch, packChange, unpackRow } from '../../queues/cdc-rows.js';

const users: CdcRelation = {
  table: 'public.users',
  columns: [
    { name: 'id', pgType: 'bigint', typeOid: 20, isKey: true },
    { name: 'name', pgType: 'text', typeOid: 25, isKey: false },
    { name: 'bio', pgType: 'text', typeOid: 25, isKey: false },
  ],
};
const pairs: CdcRelation = {
  table: 'public.pairs',
  columns: [
    { name: 'a', pgType: 'integer', typeOid: 23, isKey: true },
    { name: 'b', pgType: 'text', typeOid: 25, isKey: true },
    { name: 'v', pgType: 'integer', typeOid: 23, isKey: false },
  ],
};

function batch(changes: CdcChange[], kind: 'stream' | 'snapshot' = 'stream'): CdcApplyBatch {
  return { slot: 's', epoch: 1, kind, lastLsn: changes.at(-1)?.lsn ?? '0/0', relations: { 'public.users': users, 'public.pairs': pairs }, changes };
}
const up = (lsn: string, ...values: Array<string | null>): CdcChange => ({ op: 'upsert', table: 'public.users', lsn, values });
const del = (lsn: string, id: string): CdcChange => ({ op: 'delete', table: 'public.users', lsn, key: [id] });

describe('per-key reduction of a CDC batch', () => {
  it('keeps the last change per key, in WAL order', () => {
    const r = reduceBatch(batch([up('0/10', '1', 'a', 'x'), up('0/11', '2', 'b', 'y'), up('0/12', '1', 'a2', 'x2'), up('0/13', '1', 'a3', 'x3')]), null);
    expect(r.plans).toHaveLength(1);
    expect(r.plans[0]!.upserts).toEqual([
      ['1', 'a3', 'x3'],
      ['2', 'b', 'y'],
    ]);
    expect(r.applied).toBe(4);
  });

  it('an insert then a delete of the same key is a delete; a delete then an insert is an upsert', () => {
    const r = reduceBatch(batch([up('0/10', '1', 'a', 'x'), del('0/11', '1'), del('0/12', '2'), up('0/13', '2', 'back', null)]), null);
    expect(r.plans[0]!.deletes).toEqual([['1']]);
    expect(r.plans[0]!.upserts).toEqual([['2', 'back', null]]);
  });

  it('skips changes at or below the applied LSN (replays change nothing)', () => {
    const r = reduceBatch(batch([up('0/10', '1', 'old', 'x'), up('0/20', '2', 'new', 'y')]), '0/10');
    expect(r.skipped).toBe(1);
    expect(r.applied).toBe(1);
    expect(r.plans[0]!.upserts).toEqual([['2', 'new', 'y']]);
    // Hex halves compare as numbers, not strings.
    expect(reduceBatch(batch([up('1/0', '3', 'n', 'z')]), '0/FFFFFFFF').applied).toBe(1);
    expect(reduceBatch(batch([up('0/A', '3', 'n', 'z')]), '0/9').applied).toBe(1);
  });

  it('snapshot batches are not filtered by LSN', () => {
    expect(reduceBatch(batch([up('0/10', '1', 'snap', 'x')], 'snapshot'), '0/99').applied).toBe(1);
  });

  it('a truncate drops the earlier changes of that table and is applied before the later ones', () => {
    const r = reduceBatch(batch([up('0/10', '1', 'a', 'x'), { op: 'truncate', tables: ['public.users'], lsn: '0/11' }, up('0/12', '2', 'b', 'y')]), null);
    expect(r.plans[0]!.truncate).toBe(true);
    expect(r.plans[0]!.upserts).toEqual([['2', 'b', 'y']]);
  });

  it('unchanged TOAST columns: filled from an earlier change of the key in the batch, else left to the copy', () => {
    const toast: CdcChange = { op: 'upsert', table: 'public.users', lsn: '0/12', values: ['1', 'renamed', null], unchanged: [2] };
    const alone = reduceBatch(batch([toast]), null).plans[0]!;
    expect(alone.upserts).toEqual([]);
    expect(alone.partial).toEqual([{ sent: [0, 1], rows: [['1', 'renamed', null]] }]);
    const merged = reduceBatch(batch([up('0/10', '1', 'first', 'LARGE'), toast]), null).plans[0]!;
    expect(merged.partial).toEqual([]);
    expect(merged.upserts).toEqual([['1', 'renamed', 'LARGE']]);
  });

  it('composite keys, NULL values kept, and separate plans per table', () => {
    const r = reduceBatch(
      batch([
        { op: 'upsert', table: 'public.pairs', lsn: '0/1', values: ['1', 'x', '10'] },
        { op: 'upsert', table: 'public.pairs', lsn: '0/2', values: ['1', 'y', null] },
        { op: 'upsert', table: 'public.pairs', lsn: '0/3', values: ['1', 'x', '11'] },
        up('0/4', '5', null, null),
      ]),
      null,
    );
    const p = r.plans.find((x) => x.table === 'public.pairs')!;
    expect(p.upserts).toEqual([
      ['1', 'x', '11'],
      ['1', 'y', null],
    ]);
    expect(r.plans.find((x) => x.table === 'public.users')!.upserts).toEqual([['5', null, null]]);
  });

  it('refuses a change without a relation, a table without a key, and misaligned values', () => {
    const noRel: CdcApplyBatch = { ...batch([]), relations: {}, changes: [up('0/1', '1', 'a', 'b')] };
    expect(() => reduceBatch(noRel, null)).toThrow(/no relation/);
    const keyless: CdcApplyBatch = { ...batch([up('0/1', '1', 'a', 'b')]), relations: { 'public.users': { ...users, columns: users.columns.map((c) => ({ ...c, isKey: false })) } } };
    expect(() => reduceBatch(keyless, null)).toThrow(/no primary key/);
    expect(() => reduceBatch(batch([up('0/1', '1', 'a')]), null)).toThrow(/2 values for 3 columns/);
  });

  it('packed rows (what the reader queues) reduce like value arrays, also mixed in one batch', () => {
    const changes: CdcChange[] = [
      up('0/10', '1', 'first', 'LARGE'),
      { op: 'upsert', table: 'public.users', lsn: '0/11', values: ['1', 'renamed', null], unchanged: [2] },
      { op: 'upsert', table: 'public.users', lsn: '0/11', values: ['3', 'only', null], unchanged: [2] },
      up('0/12', '2', 'two¦¤', null),
      del('0/13', '2'),
      up('0/14', '4', null, ''),
      { op: 'upsert', table: 'public.pairs', lsn: '0/15', values: ['1', 'x', '10'] },
      { op: 'upsert', table: 'public.pairs', lsn: '0/16', values: ['1', 'x', '11'] },
      { op: 'delete', table: 'public.pairs', lsn: '0/17', key: ['2', 'y'] },
    ];
    const values = (rows: PlanRow[]) => rows.map((r) => (typeof r === 'string' ? unpackRow(r) : r));
    const plain = (plans: TablePlan[]) => plans.map((p) => ({ ...p, upserts: values(p.upserts), deletes: values(p.deletes), partial: p.partial.map((g) => ({ sent: g.sent, rows: values(g.rows) })) }));
    const expected = plain(reduceBatch(batch(changes), null).plans);
    expect(expected[0]!.upserts).toEqual([['1', 'renamed', 'LARGE'], ['4', null, '']]);
    const packed = reduceBatch(packBatch(batch(changes)), null);
    expect(packed.plans[0]!.upserts.some((r) => typeof r === 'string')).toBe(true);
    expect(plain(packed.plans)).toEqual(expected);
    // Every other change packed: a key changed in both forms is still one entry.
    const mixed = changes.map((c, i) => (i % 2 === 0 ? packChange(c) : c));
    expect(plain(reduceBatch({ ...batch([]), lastLsn: '0/17', changes: mixed }, null).plans)).toEqual(expected);
    // Segments joined with change objects (a group of batches from readers of both ages).
    const joined = [encodeSegment(changes.slice(0, 4)), ...changes.slice(4, 6).map(packChange), encodeSegment(changes.slice(6))];
    expect(plain(reduceBatch({ ...batch([]), lastLsn: '0/17', changes: joined }, null).plans)).toEqual(expected);
    // The LSN filter reads a segment's LSN records: what is skipped is what change objects skip.
    const filtered = reduceBatch(batch(changes), '0/12');
    const filteredSegment = reduceBatch(packBatch(batch(changes)), '0/12');
    expect([filteredSegment.applied, filteredSegment.skipped]).toEqual([5, 4]);
    expect([filtered.applied, filtered.skipped]).toEqual([5, 4]);
    expect(plain(filteredSegment.plans)).toEqual(plain(filtered.plans));
    expect(plain(filtered.plans)[0]).toMatchObject({ table: 'public.users', upserts: [['4', null, '']], deletes: [['2']] });
    // A packed row of the wrong width is refused, as an array is.
    expect(() => reduceBatch(packBatch(batch([up('0/1', '1', 'a')])), null)).toThrow(/2 values for 3 columns/);
  });
});
