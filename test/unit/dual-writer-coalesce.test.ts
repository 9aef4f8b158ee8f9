import { describe, expect, it } from 'vitest';
import type { CdcApplyBatch, CdcRelation } from '../../queues/cdc.js';
import { coalesceBatches } from '../../actors/dual-writer/coalesce.js';
import { packBatch, unpackBatch } from '../../queues/cdc-rows.js';

const rel: CdcRelation = { table: 'public.t', columns: [{ name: 'id', pgType: 'bigint', typeOid: 20, isKey: true }, { name: 'v', pgType: 'text', typeOid: 25, isKey: false }] };
const wider: CdcRelation = { ...rel, columns: [...rel.columns, { name: 'w', pgType: 'text', typeOid: 25, isKey: false }] };
const b = (lsn: number, ids: number[], over: Partial<CdcApplyBatch> = {}): CdcApplyBatch => ({
  slot: 's',
  epoch: 1,
  kind: 'stream',
  lastLsn: `0/${lsn.toString(16)}`,
  relations: { 'public.t': rel },
  changes: ids.map((id) => ({ op: 'upsert', table: 'public.t', lsn: `0/${lsn.toString(16)}`, values: [String(id), `v${lsn}`] })),
  ...over,
});

describe('coalescing waiting cdc.apply batches', () => {
  it('joins following stream batches in order; the last one gives lastLsn and epoch', () => {
    const { batch, joined } = coalesceBatches(b(0x10, [1, 2]), [b(0x20, [2, 3]), b(0x30, [4], { epoch: 2 })], 100);
    expect(joined).toBe(2);
    expect(batch.lastLsn).toBe('0/30');
    expect(batch.epoch).toBe(2);
    expect(unpackBatch(batch).changes.map((c) => (c.op === 'upsert' ? c.values : null))).toEqual([['1', 'v16'], ['2', 'v16'], ['2', 'v32'], ['3', 'v32'], ['4', 'v48']]);
  });

  it('stops at a snapshot batch, another slot, an LSN not after the previous, a new table shape, or the change cap', () => {
    const head = b(0x10, [1]);
    expect(coalesceBatches(head, [b(0x20, [2]), b(0x30, [3], { kind: 'snapshot' }), b(0x40, [4])], 100).joined).toBe(1);
    expect(coalesceBatches(head, [b(0x20, [2], { slot: 'other' })], 100).joined).toBe(0);
    expect(coalesceBatches(head, [b(0x10, [2])], 100).joined).toBe(0);
    expect(coalesceBatches(head, [b(0x20, [2]), b(0x18, [3])], 100).joined).toBe(1);
    const shapeChange = b(0x20, [], { relations: { 'public.t': wider }, changes: [{ op: 'upsert', table: 'public.t', lsn: '0/20', values: ['2', 'x', 'y'] }] });
    expect(coalesceBatches(head, [shapeChange], 100).joined).toBe(0);
    expect(coalesceBatches(head, [b(0x20, [2, 3]), b(0x30, [4, 5])], 3).joined).toBe(1);
    expect(coalesceBatches(b(0x10, [1], { kind: 'snapshot' }), [b(0x20, [2])], 100).joined).toBe(0);
  });

  it('segments (what the reader queues) join by their size and first LSN, also with change objects', () => {
    const seg = (lsn: number, ids: number[]) => packBatch(b(lsn, ids));
    const { batch, joined } = coalesceBatches(seg(0x10, [1, 2]), [seg(0x20, [2, 3]), b(0x30, [4])], 100);
    expect(joined).toBe(2);
    expect(batch.size).toBe(5);
    expect(unpackBatch(batch).changes.map((c) => (c.op === 'upsert' ? c.values : null))).toEqual([['1', 'v16'], ['2', 'v16'], ['2', 'v32'], ['3', 'v32'], ['4', 'v48']]);
    // The cap counts changes, not segments; the first change's LSN is read from the segment.
    expect(coalesceBatches(seg(0x10, [1, 2]), [seg(0x20, [3, 4])], 3).joined).toBe(0);
    const overlapping = packBatch({ ...b(0x20, [3]), changes: [{ op: 'upsert', table: 'public.t', lsn: '0/10', values: ['3', 'x'] }, { op: 'upsert', table: 'public.t', lsn: '0/20', values: ['4', 'x'] }] });
    expect(coalesceBatches(seg(0x10, [1]), [overlapping], 100).joined).toBe(0);
  });
});
