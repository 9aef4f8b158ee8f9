import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import {
  EventStore, ProjectionRunner, QueryBus, QueryCache, Upcasters, projectionDeadLetters, projectionStatuses, requestRebuild, resumeProjection, type Projection,
} from '../../cqrs/index.js';
import { registerOrderUpcasters } from '../../cqrs/example/order.js';
import { GetOrderSummaryQuery, orderSummaryProjection, orderSummaryQueryHandler } from '../../cqrs/example/order-summary.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startFixture, type Child } from '../support/child.js';
import { signHs256, TEST_SECRET } from '../support/jwt.js';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { orderEvents } from '../support/cqrs.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Records every event it sees, in apply order: duplicates and order are checked from the table. */
function recorder(name: string, opts: { poison?: string; failurePolicy?: 'stop' | 'skip' } = {}): Projection {
  const table = `rec_${name.replace(/-/g, '_')}`;
  return {
    name,
    failurePolicy: opts.failurePolicy ?? 'stop',
    async setup(tx) {
      await tx.query(`CREATE TABLE IF NOT EXISTS ${table} (seq bigserial PRIMARY KEY, position bigint NOT NULL, event_type text NOT NULL)`);
    },
    async reset(tx) {
      await tx.query(`TRUNCATE ${table}`);
    },
    async apply(tx, e) {
      if (e.type === opts.poison) throw new Error(`cannot project ${e.type}`);
      await tx.query(`INSERT INTO ${table} (position, event_type) VALUES ($1, $2)`, [e.position, e.type]);
    },
  };
}

describe('projections', () => {
  let db: pg.Pool;
  let dbUrl: string;
  let redisUrl: string;
  let redis: Redis;
  let store: EventStore;
  const runners: ProjectionRunner[] = [];
  let api: RunningProcess | undefined;
  const children: Child[] = [];

  beforeAll(async () => {
    const services = testServices();
    redisUrl = services.redisUrl;
    dbUrl = await freshDatabase(services.databaseUrl, uniquePrefix('proj').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 24 });
    redis = new Redis(redisUrl);
    store = new EventStore(db, { upcasters: registerOrderUpcasters(new Upcasters()) });
  });
  afterEach(async () => {
    await Promise.all(runners.splice(0).map((r) => r.stop()));
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await c.exited;
    }
  });
  afterAll(async () => {
    await api?.stop(10_000);
    await db?.end();
    redis?.disconnect();
  });

  const run = (projection: Projection, opts: Partial<ConstructorParameters<typeof ProjectionRunner>[0]> = {}) => {
    const r = new ProjectionRunner({ connectionString: dbUrl, projection, pollMs: 10, batchSize: 50, ...opts });
    runners.push(r);
    r.start();
    return r;
  };
  const status = async (name: string) => (await projectionStatuses(db)).find((s) => s.name === name);
  const caughtUp = (name: string, what = `${name} caught up`) =>
    eventually(async () => {
      const s = await status(name);
      return s && s.lag === 0 && s.status === 'running' ? s : undefined;
    }, 30_000, 25, what);

  it('concurrent writers committing out of position order: the async projection sees every event once, in position order', async () => {
    const name = 'rec-concurrent';
    run(recorder(name));
    // A deterministic case first: an early position held open while a later one commits.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let heldPosition = 0;
    const slow = store.append(`slow-${randomUUID()}`, [{ type: 'slow', data: {} }], {
      beforeCommit: async (_tx, ev) => {
        heldPosition = ev[0]!.position;
        await held;
      },
    });
    await eventually(async () => heldPosition > 0, 5_000, 5, 'slow append inserted');
    const fast = await store.append(`fast-${randomUUID()}`, [{ type: 'fast', data: {} }]);
    expect(fast.events[0]!.position).toBeGreaterThan(heldPosition);
    await sleep(400); // many polls: the committed later event must not be applied past the open one
    const seen = async () => (await db.query<{ position: string }>(`SELECT position FROM rec_rec_concurrent ORDER BY seq`)).rows.map((r) => Number(r.position));
    expect(await seen()).toEqual([]);
    release();
    await slow;
    await eventually(async () => (await seen()).length === 2, 10_000, 20, 'both applied');
    expect(await seen()).toEqual([heldPosition, fast.events[0]!.position]);

    // The snapshot's xmax is one past the latest *completed* id: a transaction that took its id
    // after another appender's but drew its position first is invisible to it. Here an appender
    // takes its id (as append does, before any position), the store's append takes a later id and
    // draws position p and holds, then the first draws a higher position and commits.
    const early = await db.connect();
    try {
      await early.query('BEGIN');
      await early.query('SELECT pg_current_xact_id()');
      let releaseLate!: () => void;
      const lateHeld = new Promise<void>((r) => (releaseLate = r));
      let p = 0;
      const late = store.append(`late-${randomUUID()}`, [{ type: 'late', data: {} }], {
        beforeCommit: async (_tx, ev) => {
          p = ev[0]!.position;
          await lateHeld;
        },
      });
      await eventually(async () => p > 0, 5_000, 5, 'late append inserted');
      const stream = `early-${randomUUID()}`;
      await early.query('INSERT INTO concord_streams (stream_id, version) VALUES ($1, 1)', [stream]);
      const h = Number((await early.query<{ position: string }>(`INSERT INTO concord_events (stream_id, version, event_id, event_type, data) VALUES ($1, 1, $2, 'early', '{}') RETURNING position`, [stream, randomUUID()])).rows[0]!.position);
      await early.query('COMMIT');
      expect(h).toBeGreaterThan(p);
      await sleep(400);
      expect(await seen()).toEqual([heldPosition, fast.events[0]!.position]);
      releaseLate();
      await late;
      await eventually(async () => (await seen()).length === 4, 10_000, 20, 'p and h applied');
      expect((await seen()).slice(2)).toEqual([p, h]);
    } finally {
      early.release();
    }

    // Then many writers, each transaction sleeping a random time before its commit.
    const writers = 12;
    const perWriter = 25;
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < perWriter; i++) {
          await store.append(`w${w}-${i % 3}`, [{ type: 'tick', data: { w, i } }, { type: 'tick', data: { w, i, second: true } }], {
            beforeCommit: () => sleep(Math.random() * 15).then(() => undefined),
          });
        }
      }),
    );
    // A rolled-back append leaves a permanent gap in the positions: it must not stall the projection.
    await store.append('gap', [{ type: 'tick', data: {} }], { beforeCommit: async () => Promise.reject(new Error('rolled back')) }).catch(() => undefined);
    await store.append('after-gap', [{ type: 'tick', data: {} }]);
    await caughtUp(name);
    const all = (await db.query<{ position: string }>('SELECT position FROM concord_events ORDER BY position')).rows.map((r) => Number(r.position));
    const got = await seen();
    expect(got.length).toBe(4 + writers * perWriter * 2 + 1);
    expect(got).toEqual(all); // every event, once, in position order
  });

  it('a failing event goes to the dead letters: skip moves on, stop halts before it until resumed', async () => {
    const stream = `p-${randomUUID()}`;
    await store.append(stream, [{ type: 'ok', data: 1 }, { type: 'poison', data: 2 }, { type: 'ok', data: 3 }]);
    const head = await store.head();
    run(recorder('rec-skip', { poison: 'poison', failurePolicy: 'skip' }), { maxAttempts: 2 });
    const stopRunner = run(recorder('rec-stop', { poison: 'poison', failurePolicy: 'stop' }), { maxAttempts: 2 });
    await caughtUp('rec-skip');
    const skipped = (await db.query<{ event_type: string }>('SELECT e.event_type FROM rec_rec_skip r JOIN concord_events e ON e.position = r.position WHERE e.stream_id = $1 ORDER BY seq', [stream])).rows;
    expect(skipped.map((r) => r.event_type)).toEqual(['ok', 'ok']);
    const dead = await projectionDeadLetters(db, 'rec-skip');
    expect(dead).toEqual([expect.objectContaining({ eventType: 'poison', streamId: stream, attempts: 2, reason: 'cannot project poison' })]);

    const stopped = await eventually(async () => {
      const s = await status('rec-stop');
      return s?.status === 'stopped' ? s : undefined;
    }, 10_000, 25, 'rec-stop stopped');
    expect(stopped.lastPosition).toBe(dead[0]!.position - 1);
    expect(stopped.lastError).toMatch(/poison/);
    expect(stopped.deadLetters).toBe(1);
    expect(stopped.lag).toBe(head - stopped.lastPosition);
    // Resumed, the event is tried again and stops the projection again: nothing is skipped silently.
    await resumeProjection(db, 'rec-stop');
    await eventually(async () => (await status('rec-stop'))?.status === 'stopped', 10_000, 25, 'stopped again');
    expect((await projectionDeadLetters(db, 'rec-stop'))[0]!.attempts).toBe(4);
    expect(stopRunner.describe()).toMatchObject({ role: 'active' });
  });

  it('a rebuild from 0 equals the live read model; the query cache is invalidated by the projection', async () => {
    const ids = Array.from({ length: 20 }, () => randomUUID());
    for (const [k, id] of ids.entries()) await store.append(`order-${id}`, orderEvents(id, 3 + (k % 4), { paid: k % 2 === 0 }));
    const cache = new QueryCache(redis, uniquePrefix('proj-cache'), 60);
    const upcasters = registerOrderUpcasters(new Upcasters());
    run(orderSummaryProjection({ name: 'osum', table: 'osum' }), { cache, upcasters });
    await caughtUp('osum');
    const live = (await db.query('SELECT * FROM osum ORDER BY order_id')).rows.map(({ updated_at: _u, ...r }) => r);
    expect(live).toHaveLength(20);

    const queries = new QueryBus(cache).register(GetOrderSummaryQuery, orderSummaryQueryHandler(db, { table: 'osum', projection: 'osum' }));
    const before = await queries.execute<{ item_count: number }>(new GetOrderSummaryQuery(ids[1]!));
    await queries.execute(new GetOrderSummaryQuery(ids[1]!));
    expect(queries.stats.hits).toBe(1);
    await store.append(`order-${ids[1]}`, [{ type: 'item_added', schemaVersion: 1, data: { sku: 'late', qty: 2, price: 1 } }]);
    await eventually(async () => (await queries.execute<{ item_count: number }>(new GetOrderSummaryQuery(ids[1]!))).item_count === before.item_count + 2, 10_000, 25, 'fresh summary after the projection invalidated it');

    await requestRebuild(db, 'osum');
    // startedAt is null until the runner takes the request; eventually() counts only undefined and false as not yet.
    await eventually(async () => (await status('osum'))?.rebuild.startedAt ?? undefined, 10_000, 25, 'rebuild started');
    await caughtUp('osum', 'rebuild done');
    const rebuilt = (await db.query('SELECT * FROM osum ORDER BY order_id')).rows.map(({ updated_at: _u, ...r }) => r);
    const liveNow = live.map((r) => (r.order_id === ids[1] ? { ...r, item_count: r.item_count + 2, total_cents: String(Number(r.total_cents) + 200), last_position: rebuilt.find((x) => x.order_id === ids[1])!.last_position } : r));
    expect(rebuilt).toEqual(liveNow);
    await expect(requestRebuild(db, 'osum', { fromPosition: 5 })).rejects.toMatchObject({ status: 400 });
    await expect(requestRebuild(db, 'nope')).rejects.toMatchObject({ status: 404 });
  });

  it('a rebuild killed with SIGKILL midway resumes in a new process; HTTP shows status, rebuild and streams', { timeout: 120_000 }, async () => {
    const ids = Array.from({ length: 150 }, () => randomUUID());
    for (let i = 0; i < ids.length; i += 10) {
      await Promise.all(ids.slice(i, i + 10).map((id, k) => store.append(`order-${id}`, orderEvents(id, 30 + ((i + k) % 20), { paid: true }))));
    }
    const prefix = uniquePrefix('proj-kill');
    const env = {
      REDIS_URL: redisUrl, DATABASE_URL: dbUrl, CONCORD_QUEUE_PREFIX: prefix, KAFKA_BROKERS: '', PORT: '0', HOST: '127.0.0.1',
      SECRET_KEY: TEST_SECRET, DUCKDB_DATABASE_PATH: ':memory:', LOG_LEVEL: 'silent',
    };
    // The control plane in this process (role api: routes only); the runners in child workers.
    api = await startProcess({ config: loadConfig(env), role: 'api', ...selectCapabilities('api', undefined, env), onEscalate: () => undefined });
    const token = await signHs256();
    const call = (path: string, init: RequestInit = {}) =>
      fetch(`${api!.http.url}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers } });
    expect((await fetch(`${api.http.url}/api/v1/projections`)).status).toBe(401);
    const worker = async () => {
      const c = startFixture('projections', { ...env, AUTH_MODE: 'none', LOG_LEVEL: 'info', PROJECTIONS: 'order-summary', PROJECTION_BATCH_SIZE: '10', PROJECTION_POLL_INTERVAL_MS: '20' });
      children.push(c);
      await c.waitFor((l) => l.msg === 'projection runner active', 60_000);
      return { c };
    };
    const a = await worker();
    const live = await eventually(async () => {
      const r = await call('/api/v1/projections');
      const body = (await r.json()) as { projections: Array<{ name: string; lag: number; status: string; head: number }> };
      const p = body.projections.find((x) => x.name === 'order-summary');
      return p && p.lag === 0 && p.head > 0 ? p : undefined;
    }, 60_000, 100, 'order-summary live');
    const liveRows = (await db.query('SELECT * FROM order_summary ORDER BY order_id')).rows.map(({ updated_at: _u, ...r }) => r);
    expect(liveRows.length).toBeGreaterThanOrEqual(150);

    // HTTP: bad input, unknown names, stream reads.
    expect((await call('/api/v1/projections/order-summary/rebuild', { method: 'POST', body: JSON.stringify({ fromPosition: -1 }) })).status).toBe(400);
    expect((await call('/api/v1/projections/missing/rebuild', { method: 'POST', body: '{}' })).status).toBe(404);
    const stream = (await (await call(`/api/v1/streams/order-${ids[0]}?from=2&limit=3`)).json()) as { version: number; events: Array<{ version: number; type: string }> };
    expect(stream.events.map((e) => [e.version, e.type])).toEqual([[2, 'item_added'], [3, 'item_added'], [4, 'item_added']]);
    expect((await call('/api/v1/streams/nope')).status).toBe(404);
    const bad = await call(`/api/v1/streams/order-${ids[0]}?from=0`);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toMatch(/from/);

    const res = await call('/api/v1/projections/order-summary/rebuild', { method: 'POST', body: JSON.stringify({ fromPosition: 0 }) });
    expect(res.status).toBe(202);
    const midway = await eventually(async () => {
      const s = await status('order-summary');
      return s?.status === 'rebuilding' && s.rebuild.target !== null && s.lastPosition > s.rebuild.target / 4 ? s : undefined;
    }, 30_000, 10, 'rebuild under way');
    a.c.kill('SIGKILL');
    await a.c.exited;
    const atKill = (await status('order-summary'))!;
    expect(atKill.status).toBe('rebuilding');
    expect(atKill.lastPosition).toBeGreaterThanOrEqual(midway.lastPosition);
    expect(atKill.lastPosition).toBeLessThan(live.head);

    await worker();
    const done = await caughtUp('order-summary', 'rebuild resumed and done');
    expect(done.rebuild.startedAt).toEqual(atKill.rebuild.startedAt); // resumed, not restarted
    expect(done.rebuild.target).toBeNull();
    const rebuilt = (await db.query('SELECT * FROM order_summary ORDER BY order_id')).rows.map(({ updated_at: _u, ...r }) => r);
    expect(rebuilt).toEqual(liveRows);
  });
});
