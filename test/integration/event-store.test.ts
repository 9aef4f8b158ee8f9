import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import {
  CommandBus, EventIdConflictError, EventStore, HandlerNotFoundError, LogReader, QueryBus, QueryCache, Upcasters, WrongExpectedVersionError, useInlineProjection,
} from '../../cqrs/index.js';
import { AddItemCommand, CreateOrderCommand, Order, PayOrderCommand, registerOrderCommands, registerOrderUpcasters } from '../../cqrs/example/order.js';
import { GetOrderSummaryQuery, orderSummaryProjection, orderSummaryQueryHandler } from '../../cqrs/example/order-summary.js';
import { enqueueMany } from '../../queues/index.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';

describe('event store', () => {
  let db: pg.Pool;
  let store: EventStore;
  let redis: Redis;

  beforeAll(async () => {
    const { databaseUrl, redisUrl } = testServices();
    const url = await freshDatabase(databaseUrl, uniquePrefix('es').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: url, max: 8 });
    store = new EventStore(db, { upcasters: registerOrderUpcasters(new Upcasters()) });
    redis = new Redis(redisUrl);
  });
  afterAll(async () => {
    await db?.end();
    redis?.disconnect();
  });

  it('checks the expected version (number, no_stream, stream_exists, any) with a typed conflict', async () => {
    const s = `s-${randomUUID()}`;
    await expect(store.append(s, [{ type: 'x', data: 1 }], { expectedVersion: 'stream_exists' })).rejects.toBeInstanceOf(WrongExpectedVersionError);
    expect((await store.append(s, [{ type: 'x', data: 1 }], { expectedVersion: 'no_stream' })).version).toBe(1);
    const conflict = await store.append(s, [{ type: 'x', data: 2 }], { expectedVersion: 'no_stream' }).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(WrongExpectedVersionError);
    expect(conflict).toMatchObject({ streamId: s, expected: 'no_stream', actual: 1, status: 409, retryable: true });
    await expect(store.append(s, [{ type: 'x', data: 2 }], { expectedVersion: 0 })).rejects.toBeInstanceOf(WrongExpectedVersionError);
    expect((await store.append(s, [{ type: 'x', data: 2 }, { type: 'x', data: 3 }], { expectedVersion: 1 })).version).toBe(3);
    expect((await store.append(s, [{ type: 'x', data: 4 }], { expectedVersion: 'stream_exists' })).version).toBe(4);
    expect((await store.append(s, [{ type: 'x', data: 5 }], { expectedVersion: 'any' })).version).toBe(5);
    const events = await store.readStream(s);
    expect(events.map((e) => [e.version, e.data])).toEqual([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]);
    expect(events.every((e, i) => i === 0 || e.position > events[i - 1]!.position)).toBe(true);
    await expect(store.append('', [{ type: 'x', data: 1 }])).rejects.toMatchObject({ status: 400, issues: [{ field: 'streamId' }] });
    await expect(store.append(s, [{ type: '', data: 1 }])).rejects.toMatchObject({ status: 400, issues: [{ field: 'events.0.type' }] });
  });

  it('concurrent saves of one aggregate: one wins, the other conflicts; through the command bus both apply', async () => {
    const id = randomUUID();
    const bus = registerOrderCommands(new CommandBus(store));
    expect((await bus.execute(new CreateOrderCommand(id, 'c1', [{ sku: 'a', quantity: 1, unit_price_cents: 100 }]))).status).toBe('completed');
    const [a, b] = await Promise.all([store.loadAggregate(Order, id), store.loadAggregate(Order, id)]);
    a.addItem({ sku: 'b', quantity: 1, unitPriceCents: 10 });
    b.addItem({ sku: 'c', quantity: 1, unitPriceCents: 20 });
    const outcomes = await Promise.allSettled([store.saveAggregate(a), store.saveAggregate(b)]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const lost = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(WrongExpectedVersionError);

    const results = await Promise.all(Array.from({ length: 4 }, (_, i) => bus.execute(new AddItemCommand(id, `k${i}`, 1, 1000))));
    expect(results.map((r) => r.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
    expect(results.every((r) => r.events_generated.length === 1)).toBe(true);
    const order = await store.loadAggregate(Order, id);
    const skus = (await store.readStream(`order-${id}`)).filter((e) => e.type === 'item_added').map((e) => (e.data as { sku: string }).sku);
    expect(skus).toHaveLength(6);
    expect(skus).toEqual(expect.arrayContaining(['a', 'k0', 'k1', 'k2', 'k3']));
    expect(skus.filter((k) => k === 'b' || k === 'c')).toHaveLength(1);
    expect(order.version).toBe(7);
  });

  it('appending the same event ids twice stores them once; an id of another stream is a conflict', async () => {
    const s = `s-${randomUUID()}`;
    const events = [{ id: randomUUID(), type: 'x', data: 1 }, { id: randomUUID(), type: 'x', data: 2 }];
    const first = await store.append(s, events, { expectedVersion: 'no_stream' });
    const again = await store.append(s, events, { expectedVersion: 'no_stream' });
    expect(first.idempotent).toBe(false);
    expect(again).toMatchObject({ idempotent: true, version: 2, events: [] });
    const third = await store.append(s, [events[1]!, { id: randomUUID(), type: 'x', data: 3 }]);
    expect(third.events.map((e) => e.data)).toEqual([3]);
    expect((await db.query('SELECT count(*)::int AS n FROM concord_events WHERE stream_id = $1', [s])).rows[0].n).toBe(3);
    await expect(store.append(`other-${randomUUID()}`, [events[0]!])).rejects.toBeInstanceOf(EventIdConflictError);
  });

  it('an aggregate of 10,000 events loads from its snapshot and equals a full replay', async () => {
    const id = randomUUID();
    const order = new Order(id);
    order.create('c-snap');
    await store.saveAggregate(order);
    const expected = { count: 0, total: 0 };
    for (let saved = 1; saved < 10_000; ) {
      const o = await store.loadAggregate(Order, id);
      const n = Math.min(1_000, 10_000 - saved);
      for (let i = 0; i < n; i++) {
        o.addItem({ sku: `s${saved + i}`, quantity: 1 + (i % 3), unitPriceCents: 50 + (i % 7) });
        expected.count += 1 + (i % 3);
        expected.total += (1 + (i % 3)) * (50 + (i % 7));
      }
      await store.saveAggregate(o);
      saved += n;
    }
    const snap = (await db.query('SELECT version::int AS version FROM concord_snapshots WHERE stream_id = $1', [`order-${id}`])).rows[0];
    expect(snap.version).toBe(10_000); // every 100 events (Order.snapshotEvery), written by the save that crossed it
    const fromSnapshot = await store.loadAggregate(Order, id);
    const replayed = await store.loadAggregate(Order, id, { useSnapshot: false });
    expect(fromSnapshot.version).toBe(10_000);
    expect(fromSnapshot.state).toEqual(replayed.state);
    expect(replayed.state).toMatchObject({ itemCount: expected.count, totalCents: expected.total });

    // Events after the snapshot are applied on top of it.
    fromSnapshot.pay(fromSnapshot.state.totalCents);
    await store.saveAggregate(fromSnapshot);
    const after = await store.loadAggregate(Order, id);
    expect(after.version).toBe(10_001);
    expect(after.state.status).toBe('paid');

    // A snapshot of another shape (snapshotVersion) is ignored, not misread.
    class OrderV2 extends Order {
      static override readonly snapshotVersion = 2;
    }
    expect((await store.loadAggregate(OrderV2, id)).state).toEqual(after.state);
  });

  it('upcasts item_added v1 into v2 on read; the log keeps v1', async () => {
    const id = randomUUID();
    await store.append(`order-${id}`, [
      { type: 'order_created', data: { order_id: id, customer_id: 'c' }, metadata: { command_id: 'k1', n: 12345678901 } },
      { type: 'item_added', schemaVersion: 1, data: { sku: 'old', qty: 2, price: 12.5 } },
    ]);
    const events = await store.readStream(`order-${id}`);
    expect(events[1]).toMatchObject({ schemaVersion: 2, data: { sku: 'old', quantity: 2, unit_price_cents: 1250 } });
    const order = await store.loadAggregate(Order, id);
    expect(order.state.totalCents).toBe(2500);
    const raw = (await db.query(`SELECT schema_version, data FROM concord_events WHERE stream_id = $1 AND version = 2`, [`order-${id}`])).rows[0];
    expect(raw).toEqual({ schema_version: 1, data: { sku: 'old', qty: 2, price: 12.5 } });
    // The global log reader (async projections) decodes the same events, upcast, with the same times and metadata.
    const first = events[0]!.position;
    const fromLog = await LogReader.read(db, first - 1, first + 1_000, 2, store.upcasters);
    expect(fromLog.filter((e) => e.streamId === `order-${id}`)).toEqual(events);
  });

  it('beforeCommit: outbox rows commit with the events, and roll back with them', async () => {
    const s = `order-${randomUUID()}`;
    const toOutbox = (tx: pg.ClientBase, events: readonly { id: string; type: string; data: unknown }[]) =>
      enqueueMany(tx, events.map((e) => ({ topic: 'orders', eventType: e.type, aggregateId: s, aggregateType: 'order', payload: e.data, headers: { event_id: e.id } })));
    await store.append(s, [{ type: 'order_created', data: { n: 1 } }], { beforeCommit: async (tx, ev) => void (await toOutbox(tx, ev)) });
    await expect(
      store.append(s, [{ type: 'item_added', data: { n: 2 } }], {
        beforeCommit: async (tx, ev) => {
          await toOutbox(tx, ev);
          throw new Error('downstream rule refused');
        },
      }),
    ).rejects.toThrow('downstream rule refused');
    const outbox = (await db.query(`SELECT event_type, headers->>'event_id' AS event_id FROM concord_outbox WHERE aggregate_id = $1`, [s])).rows;
    const events = await store.readStream(s);
    expect(events.map((e) => e.type)).toEqual(['order_created']);
    expect(outbox).toEqual([{ event_type: 'order_created', event_id: events[0]!.id }]);
    expect(await store.streamVersion(s)).toBe(1);
  });

  it('commands: invalid ones are rejected before any event; business rules fail; a missing handler is an error; an inline projection and the cache follow', async () => {
    const table = `osum_${randomUUID().replace(/-/g, '').slice(0, 8)}`;
    const inlineStore = new EventStore(db, { upcasters: registerOrderUpcasters(new Upcasters()) });
    const cache = new QueryCache(redis, uniquePrefix('es-cache'), 60);
    await useInlineProjection(inlineStore, orderSummaryProjection({ name: 'order-summary-inline', table }), { cache });
    const bus = registerOrderCommands(new CommandBus(inlineStore));
    const queries = new QueryBus(cache, { cache_ttl_seconds: 60 }).register(GetOrderSummaryQuery, orderSummaryQueryHandler(db, { table }));

    const id = randomUUID();
    const rejected = await bus.execute(new CreateOrderCommand(id, '', []));
    expect(rejected).toMatchObject({ status: 'rejected', result_data: null, events_generated: [] });
    expect(rejected.errors).toEqual(['Customer ID is required', 'Order must have items']);
    expect(await inlineStore.streamVersion(`order-${id}`)).toBe(0);
    expect((await db.query('SELECT count(*)::int AS n FROM concord_streams WHERE stream_id = $1', [`order-${id}`])).rows[0].n).toBe(0);

    const created = await bus.execute(new CreateOrderCommand(id, 'c9', [{ sku: 'a', quantity: 2, unit_price_cents: 300 }]));
    expect(created).toMatchObject({ status: 'completed', result_data: { order_id: id, total_cents: 600 } });
    expect(created.events_generated).toHaveLength(2);
    // Inline: the read model committed with the events.
    expect(await queries.execute(new GetOrderSummaryQuery(id))).toMatchObject({ status: 'created', item_count: 2, total_cents: 600 });
    expect(await queries.execute(new GetOrderSummaryQuery(id))).toMatchObject({ total_cents: 600 });
    expect(queries.stats).toEqual({ hits: 1, misses: 1 });

    const failed = await bus.execute(new PayOrderCommand(id, 1));
    expect(failed.status).toBe('failed');
    expect(failed.errors[0]).toMatch(/totals 600 cents, paid 1/);
    await bus.execute(new AddItemCommand(id, 'b', 1, 50));
    // The inline projection invalidated the cached summary after the commit.
    expect(await queries.execute(new GetOrderSummaryQuery(id))).toMatchObject({ item_count: 3, total_cents: 650 });
    expect(queries.stats.misses).toBe(2);
    expect((await bus.execute(new PayOrderCommand(id, 650))).status).toBe('completed');
    expect(await queries.execute(new GetOrderSummaryQuery(id))).toMatchObject({ status: 'paid' });

    class Unknown extends CreateOrderCommand {}
    await expect(bus.execute(new Unknown(id, 'c', []))).rejects.toBeInstanceOf(HandlerNotFoundError);
    await expect(queries.execute(new GetOrderSummaryQuery(''))).rejects.toMatchObject({ status: 400 });
  });
});
