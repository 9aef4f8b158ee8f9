import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, openDuckDb, type DuckDb } from '../../runtime/index.js';
import type { CdcApplyBatch, CdcChange, CdcRelation } from '../../queues/cdc.js';
import { CdcApplier, DuckWriter, readAppliedLsn } from '../../actors/dual-writer/index.js';
import { coalesceBatches } from '../../actors/dual-writer/coalesce.js';
import { packBatch } from '../../queues/cdc-rows.js';
import { testServices, uniquePrefix } from '../support/services.js';

/**
 * The copy tables have no primary key (see applyPlan): these tests prove keys stay unique
 * through replays, coalesced batches, failed batches and a reopened file, and that
 * unchanged TOAST values survive the delete + insert.
 */
describe('dual-writer: copies without a primary key', () => {
  let dir: string;
  let duck: DuckDb;
  let writer: DuckWriter;
  let applier: CdcApplier;
  const r = createRedis(testServices().redisUrl, 'client');
  const prefix = uniquePrefix('dwc');
  const open = async () => {
    duck = await openDuckDb({ path: join(dir, 'copy.duckdb'), threads: 1 });
    writer = new DuckWriter({ open: async () => duck, breakerThreshold: 50, breakerHalfOpenMs: 1000 });
    applier = new CdcApplier(writer, r, prefix);
  };
  const close = async () => {
    await writer.close();
    duck.close();
  };
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'concord-dwc-'));
    await open();
  });
  afterAll(async () => {
    await close();
    r.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });
  const rows = async (sql: string) => (await duck.connection.runAndReadAll(sql)).getRowObjectsJson();

  const docs: CdcRelation = {
    table: 'public.docs',
    columns: [
      { name: 'id', pgType: 'bigint', typeOid: 20, isKey: true },
      { name: 'name', pgType: 'text', typeOid: 25, isKey: false },
      { name: 'body', pgType: 'text', typeOid: 25, isKey: false },
    ],
  };
  let lsn = 0x1000;
  const stream = (changes: CdcChange[], slot = 'slot_c', relations: Record<string, CdcRelation> = { 'public.docs': docs }): CdcApplyBatch => ({ slot, epoch: 1, kind: 'stream', lastLsn: changes.at(-1)!.lsn, relations, changes });

  it('random inserts, updates, TOAST-partial updates, deletes and truncates, applied coalesced, replayed and after a reopen: the copy equals the model, no key twice', async () => {
    // A seeded generator: the same run every time.
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const model = new Map<string, [string, string | null]>();
    const batches: CdcApplyBatch[] = [];
    for (let b = 0; b < 40; b++) {
      const at = `0/${(lsn++).toString(16)}`;
      const changes: CdcChange[] = [];
      for (let i = 0; i < 60; i++) {
        const id = String(1 + Math.floor(rand() * 150));
        const x = rand();
        const known = model.get(id);
        if (b === 12 && i === 30) {
          changes.push({ op: 'truncate', tables: ['public.docs'], lsn: at });
          model.clear();
        } else if (x < 0.2) {
          changes.push({ op: 'delete', table: 'public.docs', lsn: at, key: [id] });
          model.delete(id);
        } else if (x < 0.45 && known) {
          // An update that leaves the large body unsent (unchanged TOAST): the copy must keep it.
          const name = `n${b}.${i}`;
          changes.push({ op: 'upsert', table: 'public.docs', lsn: at, values: [id, name, null], unchanged: [2] });
          model.set(id, [name, known[1]]);
        } else {
          const v: [string, string | null] = [`n${b}.${i}`, rand() < 0.1 ? null : `body-${b}-${i}-`.repeat(1 + Math.floor(rand() * 50))];
          changes.push({ op: 'upsert', table: 'public.docs', lsn: at, values: [id, ...v] });
          model.set(id, v);
        }
      }
      // Mostly segments, as the reader queues them; every third batch as value arrays (older readers), joined with them.
      batches.push(b % 3 === 2 ? stream(changes) : packBatch(stream(changes)));
    }
    // Apply: 1 to 4 batches joined per transaction, each followed by replays of earlier batches (no-ops).
    let i = 0;
    while (i < 30) {
      const take = 1 + Math.floor(rand() * 4);
      const { batch, joined } = coalesceBatches(batches[i]!, batches.slice(i + 1, i + take), 100_000);
      await applier.apply(batch);
      i += 1 + joined;
      for (const old of batches.slice(Math.max(0, i - 3), i)) expect(await applier.apply(old)).toMatchObject({ applied: 0, written: 0 });
    }
    // "Crash": close the file, reopen it with empty caches, replay every batch from the start (the queue redelivering).
    await close();
    await open();
    for (const b of batches) await applier.apply(b);
    expect(await readAppliedLsn(duck.connection, 'slot_c')).toBe(batches.at(-1)!.lastLsn);
    const [counts] = await rows('SELECT count(*) AS n, count(DISTINCT id) AS d FROM docs');
    expect(counts).toEqual({ n: String(model.size), d: String(model.size) });
    const copy = await rows('SELECT id, name, body FROM docs ORDER BY id');
    const expected = [...model.entries()].sort((a, b) => Number(a[0]) - Number(b[0])).map(([id, [name, body]]) => ({ id, name, body }));
    expect(copy).toEqual(expected);
    expect(await rows(`SELECT count(*) AS n FROM duckdb_constraints() WHERE table_name = 'docs' AND constraint_type = 'PRIMARY KEY'`)).toEqual([{ n: '0' }]);
  });

  it('partial rows of several shapes, beside full upserts and deletes: unsent columns keep the copy value; a partial row the copy lacks stays absent', async () => {
    const two: CdcRelation = { table: 'public.two', columns: [...docs.columns, { name: 'extra', pgType: 'jsonb', typeOid: 3802, isKey: false }] };
    const rels = { 'public.two': two };
    const at = () => `0/${(lsn++).toString(16)}`;
    const big = 'B'.repeat(50_000);
    await applier.apply(stream([1, 2, 3, 4].map((id) => ({ op: 'upsert', table: 'public.two', lsn: at(), values: [String(id), `n${id}`, big, `{"k": ${id}}`] })), 'slot_p', rels));
    await applier.apply(
      stream(
        [
          { op: 'upsert', table: 'public.two', lsn: at(), values: ['1', 'one', null, '{"k": 10}'], unchanged: [2] },
          { op: 'upsert', table: 'public.two', lsn: at(), values: ['2', 'two', null, null], unchanged: [2, 3] },
          { op: 'upsert', table: 'public.two', lsn: at(), values: ['3', 'three', 'small', '{}'] },
          { op: 'delete', table: 'public.two', lsn: at(), key: ['4'] },
          { op: 'upsert', table: 'public.two', lsn: at(), values: ['9', 'ghost', null, null], unchanged: [2, 3] },
        ],
        'slot_p',
        rels,
      ),
    );
    expect(await rows(`SELECT id, name, body = repeat('B', 50000) AS big, body, extra::VARCHAR AS extra FROM two ORDER BY id`)).toEqual([
      { id: '1', name: 'one', big: true, body: big, extra: '{"k": 10}' },
      { id: '2', name: 'two', big: true, body: big, extra: '{"k": 2}' },
      { id: '3', name: 'three', big: false, body: 'small', extra: '{}' },
    ]);
  });

  it('a batch failing after its DELETE ran (a bad value in a later table) loses nothing: the transaction rolls back whole', async () => {
    const nums: CdcRelation = { table: 'public.nums', columns: [{ name: 'id', pgType: 'integer', typeOid: 23, isKey: true }, { name: 'n', pgType: 'integer', typeOid: 23, isKey: false }] };
    const rels = { 'public.docs': docs, 'public.nums': nums };
    const at = `0/${(lsn++).toString(16)}`;
    await applier.apply(stream([{ op: 'upsert', table: 'public.nums', lsn: at, values: ['1', '1'] }], 'slot_f', rels));
    const before = await rows('SELECT id, name, body FROM docs ORDER BY id');
    const someId = String(before[0]!.id);
    const bad = `0/${(lsn++).toString(16)}`;
    const failing = stream([{ op: 'upsert', table: 'public.docs', lsn: bad, values: [someId, 'replaced', 'x'] }, { op: 'upsert', table: 'public.nums', lsn: bad, values: ['1', 'not a number'] }], 'slot_f', rels);
    await expect(applier.apply(failing)).rejects.toThrow(/Conversion Error/);
    expect(await rows('SELECT id, name, body FROM docs ORDER BY id')).toEqual(before);
    expect(await readAppliedLsn(duck.connection, 'slot_f')).toBe(at);
  });

  it('a copy created with a PRIMARY KEY by an earlier version is rebuilt without it on first use, rows kept', async () => {
    await duck.connection.run(`CREATE TABLE legacy (id BIGINT PRIMARY KEY, name VARCHAR, body VARCHAR); INSERT INTO legacy SELECT i, 'old' || i, 'b' FROM range(1, 1001) r(i)`);
    const legacy: CdcRelation = { ...docs, table: 'public.legacy' };
    const at = `0/${(lsn++).toString(16)}`;
    const changes: CdcChange[] = [
      { op: 'upsert', table: 'public.legacy', lsn: at, values: ['5', 'new5', 'b5'] },
      { op: 'upsert', table: 'public.legacy', lsn: at, values: ['2000', 'new', null] },
      { op: 'delete', table: 'public.legacy', lsn: at, key: ['6'] },
    ];
    await applier.apply(stream(changes, 'slot_l', { 'public.legacy': legacy }));
    expect(await rows(`SELECT count(*) AS n FROM duckdb_constraints() WHERE table_name = 'legacy' AND constraint_type = 'PRIMARY KEY'`)).toEqual([{ n: '0' }]);
    expect(await rows('SELECT count(*) AS n, count(DISTINCT id) AS d FROM legacy')).toEqual([{ n: '1000', d: '1000' }]);
    expect(await rows('SELECT id, name, body FROM legacy WHERE id IN (4, 5, 6, 2000) ORDER BY id')).toEqual([
      { id: '4', name: 'old4', body: 'b' },
      { id: '5', name: 'new5', body: 'b5' },
      { id: '2000', name: 'new', body: null },
    ]);
  });
});
