import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { enqueueMany, handleOnce, type OutboxEvent } from '../../actors/outbox-relay/index.js';
import { startKafka, type KafkaHandle } from '../../scripts/services/kafka.js';
import { startRedis, type RedisHandle } from '../../scripts/services/redis.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startFixture, type Child } from '../support/child.js';
import { readKafkaTopic, readRedisStream } from '../support/broker-readers.js';

interface Delivered {
  key: string;
  value: { n?: number; aggregate?: string } & Record<string, unknown>;
  headers: Record<string, string>;
}

/** The same behaviour, against Kafka (when the harness can start one) and Redis Streams. */
describe.each(['redis-streams', 'kafka'] as const)('outbox relay over %s', (kind) => {
  let kafka: KafkaHandle | undefined;
  let skip: string | undefined;
  let redisServer: RedisHandle;
  let redis: Redis;
  let db: pg.Pool;
  let dbUrl: string;
  let prefix: string;
  const children: Child[] = [];

  beforeAll(async () => {
    if (kind === 'kafka') {
      const k = await startKafka();
      if (!k.ok) {
        skip = k.reason;
        console.warn(`outbox Kafka tests skipped: ${k.reason}`);
        return;
      }
      kafka = k.handle;
    }
    redisServer = await startRedis({ mode: 'test' });
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined); // the outage test stops this Redis on purpose
    dbUrl = await freshDatabase(testServices().databaseUrl, uniquePrefix(`ob_${kind.slice(0, 5)}`).replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 8 });
    db.on('error', () => undefined);
  }, 300_000);
  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await c.exited;
    }
  });
  afterAll(async () => {
    await db?.end();
    redis?.disconnect();
    await redisServer?.stop();
    await kafka?.stop();
  });

  const relay = (env: Record<string, string> = {}) => {
    const c = startFixture('outbox', {
      REDIS_URL: redisServer.url,
      DATABASE_URL: dbUrl,
      CONCORD_QUEUE_PREFIX: prefix,
      OUTBOX_POLLING_INTERVAL_MS: '100',
      OUTBOX_RETRY_BACKOFF_MS: '50',
      ...(kafka ? { KAFKA_BROKERS: kafka.brokers.join(',') } : { KAFKA_BROKERS: '' }),
      ...env,
    });
    children.push(c);
    return c.waitFor((l) => l.msg === 'outbox relay running', 60_000).then(() => c);
  };
  const read = async (topic: string, expected: number): Promise<Delivered[]> =>
    (kafka ? await readKafkaTopic(kafka.brokers, topic, { expected, timeoutMs: 60_000 }) : await readRedisStream(redis, prefix, topic)) as Delivered[];
  const readUntil = (topic: string, expected: number) =>
    eventually(async () => {
      const got = await read(topic, expected);
      return got.length >= expected ? got : undefined;
    }, 60_000, 250, `${expected} messages on ${topic}`);
  async function enqueueTx(events: OutboxEvent[], opts: { rollback?: boolean } = {}): Promise<string[]> {
    const c = await db.connect();
    try {
      await c.query('BEGIN');
      await c.query('CREATE TABLE IF NOT EXISTS orders (id uuid PRIMARY KEY, total numeric)');
      await c.query('INSERT INTO orders (id, total) VALUES ($1, 10)', [randomUUID()]);
      const ids = await enqueueMany(c, events);
      await c.query(opts.rollback ? 'ROLLBACK' : 'COMMIT');
      return ids;
    } finally {
      c.release();
    }
  }
  const ev = (topic: string, aggregate: string, n: number, extra: Partial<OutboxEvent> = {}): OutboxEvent => ({
    topic,
    eventType: 'order_created',
    aggregateId: aggregate,
    aggregateType: 'order',
    payload: { aggregate, n },
    ...extra,
  });
  /** Events of one topic by status (the database is shared by the tests of this file). */
  const statusCounts = async (topic: string) =>
    Object.fromEntries(
      (await db.query<{ status: string; n: string }>('SELECT status, count(*) AS n FROM concord_outbox WHERE topic = $1 GROUP BY status', [topic])).rows.map((r) => [r.status, Number(r.n)]),
    );

  it('delivers events committed with business data, never those of a rolled-back transaction', async (t) => {
    if (skip) return t.skip(skip);
    prefix = uniquePrefix('ob1');
    const topic = `orders-${prefix}`;
    const kept = await enqueueTx([ev(topic, 'a1', 1), ev(topic, 'a1', 2), ev(topic, 'a2', 1)]);
    await enqueueTx([ev(topic, 'a9', 1), ev(topic, 'a9', 2)], { rollback: true });
    await relay();
    const got = await readUntil(topic, 3);
    await new Promise((r) => setTimeout(r, 500));
    const all = await read(topic, 3);
    expect(all.map((m) => m.headers.event_id).sort()).toEqual([...kept].sort());
    expect(all.every((m) => m.value.aggregate !== 'a9')).toBe(true);
    expect(got[0]!.headers).toMatchObject({ event_type: 'order_created', aggregate_type: 'order' });
    await eventually(async () => (await statusCounts(topic)).published === 3, 10_000, 100, 'marked published');
  });

  it('10,000 events over 100 aggregates with two relays: each aggregate in enqueue order, none missing', async (t) => {
    if (skip) return t.skip(skip);
    prefix = uniquePrefix('ob2');
    const topic = `orders-${prefix}`;
    await relay({ OUTBOX_BATCH_SIZE: '300' });
    await relay({ OUTBOX_BATCH_SIZE: '300' });
    const next = new Map<string, number>();
    const total = 10_000;
    for (let sent = 0; sent < total; ) {
      const size = Math.min(total - sent, 1 + Math.floor(Math.random() * 200));
      const events = Array.from({ length: size }, () => {
        const agg = `agg-${Math.floor(Math.random() * 100)}`;
        const n = (next.get(agg) ?? 0) + 1;
        next.set(agg, n);
        return ev(topic, agg, n);
      });
      await enqueueTx(events);
      sent += size;
    }
    const got = await readUntil(topic, total);
    const unique = new Map(got.map((m) => [m.headers.event_id, m]));
    expect(unique.size).toBe(total);
    const seen = new Map<string, number>();
    let violations = 0;
    for (const m of got) {
      const agg = m.key;
      const n = m.value.n!;
      if (n <= (seen.get(agg) ?? 0)) violations++;
      seen.set(agg, Math.max(seen.get(agg) ?? 0, n));
    }
    expect(violations).toBe(0);
    expect([...seen.entries()].every(([agg, n]) => next.get(agg) === n)).toBe(true);
  });

  it('concurrent writers committing out of order: no event is skipped, none overtakes an open writer', async (t) => {
    if (skip) return t.skip(skip);
    prefix = uniquePrefix('ob3');
    const topic = `orders-${prefix}`;
    await relay();
    const slow = await db.connect();
    try {
      await slow.query('BEGIN');
      const early = await enqueueMany(slow, [ev(topic, 'shared', 1)]); // lower seq, commits last
      const later = await enqueueTx([ev(topic, 'shared', 2), ev(topic, 'other', 1)]);
      // The snapshot fence: nothing written after the open transaction started goes out before it ends.
      await new Promise((r) => setTimeout(r, 1_500));
      expect((await statusCounts(topic)).published ?? 0).toBe(0);
      await slow.query('COMMIT');
      const got = await readUntil(topic, 3);
      expect(new Set(got.map((m) => m.headers.event_id))).toEqual(new Set([...early, ...later]));
      const shared = got.filter((m) => m.key === 'shared').map((m) => m.value.n);
      expect(shared).toEqual([1, 2]);
    } finally {
      slow.release();
    }
  });

  it('a relay killed with SIGKILL mid-batch: nothing lost; duplicates stay within a batch per loop and the inbox absorbs them', { timeout: 240_000 }, async (t) => {
    if (skip) return t.skip(skip);
    prefix = uniquePrefix('ob4');
    const topic = `orders-${prefix}`;
    const total = 20_000;
    for (let i = 0; i < total; i += 1000) {
      await enqueueTx(Array.from({ length: 1000 }, (_, k) => ev(topic, `agg-${(i + k) % 50}`, i + k)));
    }
    const batch = 400;
    const a = await relay({ OUTBOX_BATCH_SIZE: String(batch) });
    await eventually(async () => ((await statusCounts(topic)).published ?? 0) >= 2_000, 60_000, 20, 'relay under way');
    a.kill('SIGKILL');
    await a.exited;
    await relay({ OUTBOX_BATCH_SIZE: String(batch) });
    await eventually(async () => (await statusCounts(topic)).published === total, 90_000, 250, 'all published after restart');
    const got = await readUntil(topic, total);
    const ids = got.map((m) => m.headers.event_id!);
    expect(new Set(ids).size).toBe(total);
    expect(ids.length - total).toBeLessThanOrEqual(2 * batch); // two relay loops, one batch each at most

    // Consumers dedupe with the inbox: every event handled once.
    await db.query('CREATE TABLE IF NOT EXISTS handled (event_id uuid, n int)');
    const c = await db.connect();
    try {
      let ran = 0;
      for (const m of got) {
        const r = await handleOnce(c, m.headers.event_id!, async (tx) => {
          await tx.query('INSERT INTO handled (event_id, n) VALUES ($1, $2)', [m.headers.event_id, m.value.n]);
        }, `consumer-${prefix}`);
        if (r.handled) ran++;
      }
      expect(ran).toBe(total);
      expect(Number((await c.query('SELECT count(*) AS n FROM handled')).rows[0].n)).toBe(total);
    } finally {
      c.release();
    }
  });

  it('the broker down for a while: events wait and arrive; a poison event is dead-lettered after the threshold and holds back its aggregate only', async (t) => {
    if (skip) return t.skip(skip);
    prefix = uniquePrefix('ob5');
    const topic = `orders-${prefix}`;
    const dlqTopic = `dlq-${prefix}`;
    await relay({ OUTBOX_DEAD_LETTER_THRESHOLD: '3', OUTBOX_DEAD_LETTER_TOPIC: dlqTopic });
    await enqueueTx([ev(topic, 'warmup', 1)]);
    await readUntil(topic, 1);

    if (kafka) await kafka.pause();
    else await redisServer.stop(); // the test Redis keeps nothing on disk: use new topics after it
    const waitTopic = `${topic}-w`;
    const waiting = await enqueueTx(Array.from({ length: 50 }, (_, i) => ev(waitTopic, `w-${i % 5}`, i)));
    await new Promise((r) => setTimeout(r, 3_000));
    const during = await db.query<{ attempts: number; status: string }>('SELECT attempts, status FROM concord_outbox WHERE id = ANY($1::uuid[])', [waiting]);
    expect(during.rows.every((r) => r.status === 'pending' && r.attempts === 0)).toBe(true); // an outage is not the events' fault
    if (kafka) await kafka.resume();
    else await redisServer.restart();
    const arrived = await readUntil(waitTopic, 50);
    expect(new Set(arrived.map((m) => m.headers.event_id))).toEqual(new Set(waiting));

    const poisonTopic = `${topic}-p`;
    const big = 'x'.repeat(1_200_000); // larger than the broker accepts
    const [poison, blocked] = await enqueueTx([ev(poisonTopic, 'poisoned', 1, { payload: { big } }), ev(poisonTopic, 'poisoned', 2)]);
    const fine = await enqueueTx([ev(poisonTopic, 'healthy', 1)]);
    await readUntil(poisonTopic, 1);
    const dead = await eventually(async () => {
      const { rows } = await db.query<{ status: string; attempts: number; last_error: string }>('SELECT status, attempts, last_error FROM concord_outbox WHERE id = $1', [poison]);
      return rows[0]?.status === 'dead' ? rows[0] : undefined;
    }, 30_000, 100, 'poison dead');
    expect(dead.attempts).toBe(3);
    const parked = await readUntil(dlqTopic, 1);
    expect(parked[0]!.value).toMatchObject({ event_id: poison, reason: expect.any(String), attempts: 3, payload_omitted: true });
    const all = await read(poisonTopic, 1);
    expect(all.some((m) => m.headers.event_id === fine[0])).toBe(true);
    expect(all.some((m) => m.headers.event_id === blocked)).toBe(false); // never overtakes the dead event
    const { rows } = await db.query<{ status: string }>('SELECT status FROM concord_outbox WHERE id = $1', [blocked]);
    expect(rows[0]!.status).toBe('pending');
  });

  it('an aggregate stuck behind a poison event with more waiting events than a batch does not starve its partition', async (t) => {
    if (skip) return t.skip(skip);
    prefix = uniquePrefix('ob6');
    const topic = `orders-${prefix}`;
    const stuck = `stuck-${prefix}`;
    // Healthy aggregates that hash to the stuck aggregate's partition, so they share every read with it.
    const sameParts = await db.query<{ a: string }>(
      `SELECT a FROM (SELECT $1 || g AS a FROM generate_series(1, 20000) AS g) x
        WHERE abs(hashtext(a)) % 64 = abs(hashtext($2::text)) % 64 LIMIT 8`,
      [`healthy-${prefix}-`, stuck],
    );
    expect(sameParts.rows).toHaveLength(8);
    await enqueueTx([ev(topic, stuck, 0, { payload: { big: 'x'.repeat(1_200_000) } }), ...Array.from({ length: 40 }, (_, i) => ev(topic, stuck, i + 1))]);
    const healthy = await enqueueTx(sameParts.rows.flatMap(({ a }) => [ev(topic, a, 1), ev(topic, a, 2)]));
    await relay({ OUTBOX_BATCH_SIZE: '10', OUTBOX_DEAD_LETTER_THRESHOLD: '2', OUTBOX_DEAD_LETTER_TOPIC: `dlq-${prefix}` });

    const arrived = await readUntil(topic, healthy.length);
    expect(new Set(arrived.map((m) => m.headers.event_id))).toEqual(new Set(healthy));
    expect(arrived.some((m) => m.key === stuck)).toBe(false);
    await eventually(async () => ((await statusCounts(topic)).dead === 1 ? true : undefined), 30_000, 100, 'poison dead');
    expect(await statusCounts(topic)).toEqual({ dead: 1, pending: 40, published: healthy.length });
  });
});
