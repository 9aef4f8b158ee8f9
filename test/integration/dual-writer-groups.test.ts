import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { CdcApplyBatch, CdcRelation } from '../../queues/cdc.js';
import { CdcGroupReader } from '../../actors/dual-writer/cdc-groups.js';
import { unpackBatch } from '../../queues/cdc-rows.js';
import { testServices, uniquePrefix } from '../support/services.js';

const rel: CdcRelation = { table: 'public.t', columns: [{ name: 'id', pgType: 'bigint', typeOid: 20, isKey: true }] };
const batch = (n: number): CdcApplyBatch => ({
  slot: 's',
  epoch: 1,
  kind: 'stream',
  lastLsn: `0/${(n * 16).toString(16)}`,
  relations: { 'public.t': rel },
  changes: [1, 2].map((i) => ({ op: 'upsert' as const, table: 'public.t', lsn: `0/${(n * 16).toString(16)}`, values: [String(n * 10 + i)] })),
});
const lsnsOf = (b: CdcApplyBatch) => [...new Set(unpackBatch(b).changes.map((c) => c.lsn))];

/** The reader against a real BullMQ queue, jobs taken as the dual-writer's worker takes them (one active at a time). */
describe('CdcGroupReader: the next group read while the current one is applied', () => {
  let connection: Redis;
  let queue: Queue;
  let worker: Worker;
  const ids = new Map<number, string>();
  const add = async (n: number) => ids.set(n, (await queue.add('b', batch(n))).id!);

  beforeAll(async () => {
    connection = new Redis(testServices().redisUrl, { maxRetriesPerRequest: null });
    const prefix = uniquePrefix('cdc-groups');
    queue = new Queue('cdc.apply', { connection, prefix });
    worker = new Worker('cdc.apply', null, { connection, prefix, autorun: false });
  });
  afterAll(async () => {
    await worker.close();
    await queue.close();
    connection.disconnect();
  });

  it('uses the prefetched group when its head comes next, and reads afresh otherwise', async () => {
    // Groups of at most 8 changes: a head and up to three batches behind it.
    const reader = new CdcGroupReader(queue, 8, () => undefined);
    for (let n = 1; n <= 6; n++) await add(n);
    const next = async () => (await worker.getNextJob('tok')) as Job<CdcApplyBatch>;

    const j1 = await next();
    const g1 = await reader.take(j1.data, j1, null);
    expect(lsnsOf(g1.batch)).toEqual(['0/10', '0/20', '0/30', '0/40']);
    expect(g1.joinedIds).toEqual([ids.get(2), ids.get(3), ids.get(4)]);

    // Read ahead past the joined jobs while "DuckDB applies" g1. A batch that arrives after the
    // read joins the group when it is taken (the top-up), read from BEHIND the prefetched job:
    // a fresh read would start at position 0, which is how the test tells the two apart.
    reader.prefetch(g1.joinedIds.length, 2);
    await reader.settled();
    await add(7);
    for (const id of g1.joinedIds) await queue.remove(id);
    await j1.moveToCompleted('ok', 'tok', false);

    const j5 = await next();
    expect(j5.id).toBe(ids.get(5));
    const reads = vi.spyOn(queue, 'getJobs');
    const g2 = await reader.take(j5.data, j5, g1.batch.lastLsn);
    expect(reads.mock.calls.map((c) => [c[1], c[2]])).toEqual([[1, 2]]);
    reads.mockRestore();
    expect(lsnsOf(g2.batch)).toEqual(['0/50', '0/60', '0/70']);
    expect(g2.joinedIds).toEqual([ids.get(6), ids.get(7)]);
    expect(unpackBatch(g2.batch).changes.map((c) => (c.op === 'upsert' ? c.values[0] : ''))).toEqual(['51', '52', '61', '62', '71', '72']);

    // A prefetch whose head is not the job that comes next (here: the joined jobs were not
    // removed, so job 6 comes next, not job 8) is dropped: the group is read afresh from the queue as it is.
    await add(8);
    reader.prefetch(g2.joinedIds.length, 2);
    await reader.settled();
    await j5.moveToCompleted('ok', 'tok', false);
    const j6 = await next();
    expect(j6.id).toBe(ids.get(6));
    const g3 = await reader.take(j6.data, j6, '0/50');
    expect(lsnsOf(g3.batch)).toEqual(['0/60', '0/70', '0/80']);
    expect(g3.joinedIds).toEqual([ids.get(7), ids.get(8)]);

    // A batch at or below the applied LSN comes alone (the applier skips it), without a peek.
    const skipped = await reader.take(j6.data, j6, '0/60');
    expect(skipped).toEqual({ batch: j6.data, joinedIds: [] });
  });
});
