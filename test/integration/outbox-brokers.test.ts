import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { BLOCKED, BrokerUnavailableError, type Broker, type OutboundMessage } from '../../actors/outbox-relay/broker.js';
import { createKafkaBroker } from '../../actors/outbox-relay/kafka-broker.js';
import { createRedisStreamsBroker } from '../../actors/outbox-relay/redis-streams-broker.js';
import { createRedis } from '../../runtime/index.js';
import { startKafka, type KafkaAvailability } from '../../scripts/services/kafka.js';
import { startRedis } from '../../scripts/services/redis.js';
import { readKafkaTopic, readRedisStream, type DeliveredRecord } from '../support/broker-readers.js';
import { testServices, uniquePrefix } from '../support/services.js';

/** Over both Kafka's default message.max.bytes (1 MiB) and the Redis broker's default 1 MB. */
const POISON = { blob: 'x'.repeat(1_200_000) };
const UNAVAILABLE_WITHIN_MS = 20_000;

const msg = (topic: string, key: string, n: number, payload: unknown = { key, n }): OutboundMessage => ({
  eventId: randomUUID(),
  topic,
  key,
  eventType: 'widget_changed',
  aggregateType: 'widget',
  payload,
  headers: { trace_id: `trace-${key}-${n}` },
});
/** `a1`-style labels of what a reader saw, in its order. */
const labels = (records: DeliveredRecord[]): string[] => records.map((r) => `${r.key}${String((r.value as { n?: number }).n)}`);

interface Target {
  broker: Broker;
  read(topic: string, expected: number): Promise<DeliveredRecord[]>;
  /** Kafka: a topic with that many partitions, so per-key order is more than one log's order. */
  prepareTopic(topic: string, partitions: number): Promise<void>;
}

describe.each(['redis-streams', 'kafka'] as const)('outbox broker over %s', (kind) => {
  let redis: Redis;
  let kafka: KafkaAvailability | undefined;
  const prefix = uniquePrefix('brokers');
  const opened: Broker[] = [];

  beforeAll(async () => {
    redis = new Redis(testServices().redisUrl, { maxRetriesPerRequest: 2 });
    if (kind !== 'kafka') return;
    kafka = await startKafka({ log: (m) => console.log(`[kafka] ${m}`) });
    if (!kafka.ok) console.warn(`kafka broker tests skipped: ${kafka.reason}`);
  }, 5 * 60_000);

  afterAll(async () => {
    await Promise.all(opened.map((b) => b.close().catch(() => undefined)));
    if (kafka?.ok) await kafka.handle.stop();
    await redis.quit();
  }, 60_000);

  /** The availability is only known once beforeAll ran, hence a runtime skip. */
  function target(ctx: TestContext): Target {
    if (kind === 'redis-streams') {
      const broker = createRedisStreamsBroker({ redis, prefix });
      opened.push(broker);
      return { broker, read: (topic) => readRedisStream(redis, prefix, topic), prepareTopic: async () => undefined };
    }
    if (!kafka?.ok) return ctx.skip(kafka?.reason ?? 'kafka did not start');
    const { brokers } = kafka.handle;
    const broker = createKafkaBroker({ brokers });
    opened.push(broker);
    return {
      broker,
      read: (topic, expected) => readKafkaTopic(brokers, topic, { expected, timeoutMs: 30_000 }),
      prepareTopic: async (topic, partitions) => {
        const admin = new Kafka({ clientId: 'outbox-brokers-test', brokers, logLevel: logLevel.NOTHING }).admin();
        await admin.connect();
        try {
          await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
        } finally {
          await admin.disconnect();
        }
      },
    };
  }

  it('delivers 300 messages over 10 keys, in per-key order, with the event headers', async (ctx) => {
    const { broker, read, prepareTopic } = target(ctx);
    const topic = uniquePrefix('order');
    await prepareTopic(topic, 3);
    await broker.connect();
    // Irregular key sequence, so per-key order is not just the round-robin order.
    const sent = Array.from({ length: 300 }, (_, n) => msg(topic, `key-${(n * 7 + Math.floor(n / 13)) % 10}`, n));
    for (const [from, to] of [[0, 120], [120, 220], [220, 300]] as const) {
      const outcomes = await broker.send(sent.slice(from, to));
      expect(outcomes).toEqual(sent.slice(from, to).map(() => ({ ok: true })));
    }

    const got = await read(topic, sent.length);
    expect(got).toHaveLength(sent.length);
    expect(new Set(got.map((r) => r.headers.event_id))).toEqual(new Set(sent.map((m) => m.eventId)));
    for (let k = 0; k < 10; k++) {
      const key = `key-${k}`;
      const order = (list: Array<{ key: string; n: number }>) => list.filter((m) => m.key === key).map((m) => m.n);
      expect(order(got.map((r) => ({ key: r.key, n: (r.value as { n: number }).n })))).toEqual(order(sent.map((m) => ({ key: m.key, n: (m.payload as { n: number }).n }))));
    }
    const byId = new Map(sent.map((m) => [m.eventId, m]));
    for (const r of got) {
      const m = byId.get(r.headers.event_id ?? '')!;
      expect(r.headers).toMatchObject({ event_type: 'widget_changed', aggregate_type: 'widget', aggregate_id: m.key, trace_id: m.headers.trace_id });
      expect(r.value).toEqual(m.payload);
    }
    if (kind === 'kafka') expect(new Set(got.map((r) => r.partition)).size).toBeGreaterThan(1);
  });

  it('refuses a poison message, holds back the later ones of its key, delivers the others', async (ctx) => {
    const { broker, read } = target(ctx);
    const topic = uniquePrefix('poison');
    const plan = [msg(topic, 'a', 1), msg(topic, 'b', 1), msg(topic, 'a', 2, POISON), msg(topic, 'c', 1), msg(topic, 'a', 3), msg(topic, 'b', 2), msg(topic, 'a', 4)];
    const outcomes = await broker.send(plan);
    expect(outcomes).toEqual([
      { ok: true },
      { ok: true },
      { ok: false, retriable: false, error: expect.stringContaining('MESSAGE_TOO_LARGE') },
      { ok: true },
      { ok: false, retriable: true, error: BLOCKED },
      { ok: true },
      { ok: false, retriable: true, error: BLOCKED },
    ]);
    expect(labels(await read(topic, 4))).toEqual(['a1', 'b1', 'c1', 'b2']);
    // The broker stays usable after the isolation (Kafka: a new producer id).
    expect(await broker.send([msg(topic, 'd', 1)])).toEqual([{ ok: true }]);
    expect(labels(await read(topic, 5))).toEqual(['a1', 'b1', 'c1', 'b2', 'd1']);
  });

  it('never lets a later event of a key overtake a refused one on another topic', async (ctx) => {
    const { broker, read } = target(ctx);
    const [first, second] = [uniquePrefix('first'), uniquePrefix('second')];
    const outcomes = await broker.send([msg(first, 'a', 1, POISON), msg(second, 'a', 2), msg(second, 'b', 1), msg(first, 'c', 1)]);
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.retriable ? 'blocked' : 'failed'))).toEqual(['failed', 'blocked', 'ok', 'ok']);
    expect(labels(await read(second, 1))).toEqual(['b1']);
    expect(labels(await read(first, 1))).toEqual(['c1']);
  });

  it('fails only the message with an invalid topic name or an unserialisable payload', async (ctx) => {
    const { broker, read } = target(ctx);
    const topic = uniquePrefix('invalid');
    const outcomes = await broker.send([msg(topic, 'a', 1), msg('no such topic!', 'b', 1), msg(topic, 'c', 1, { big: 10n }), msg(topic, 'b', 2), msg(topic, 'd', 1)]);
    expect(outcomes).toEqual([
      { ok: true },
      { ok: false, retriable: false, error: expect.stringContaining('invalid topic name') },
      { ok: false, retriable: false, error: expect.stringContaining('BigInt') },
      { ok: false, retriable: true, error: BLOCKED },
      { ok: true },
    ]);
    expect(labels(await read(topic, 2))).toEqual(['a1', 'd1']);
  });

  it('rejects with BrokerUnavailableError when the broker cannot be reached at all', async (ctx) => {
    target(ctx); // only for the skip
    const port = await closedPort();
    const dead = new Redis({ host: '127.0.0.1', port, connectTimeout: 500, maxRetriesPerRequest: 1, enableOfflineQueue: false });
    dead.on('error', () => undefined);
    const broker = kind === 'kafka' ? createKafkaBroker({ brokers: [`127.0.0.1:${port}`] }) : createRedisStreamsBroker({ redis: dead, prefix });
    try {
      const started = Date.now();
      await expect(broker.connect()).rejects.toBeInstanceOf(BrokerUnavailableError);
      await expect(broker.send([msg(uniquePrefix('dead'), 'a', 1)])).rejects.toBeInstanceOf(BrokerUnavailableError);
      expect(Date.now() - started).toBeLessThan(UNAVAILABLE_WITHIN_MS);
    } finally {
      await broker.close();
      dead.disconnect();
    }
  });

  // Last: the Kafka variant stops the shared harness broker.
  it('rejects with BrokerUnavailableError when the broker goes away between sends', async (ctx) => {
    const topic = uniquePrefix('outage');
    let broker: Broker;
    let stop: () => Promise<void>;
    let client: Redis | undefined;
    if (kind === 'kafka') {
      broker = target(ctx).broker;
      if (kafka?.ok && kafka.handle.external) ctx.skip('KAFKA_BROKERS points at an external broker that cannot be stopped');
      stop = () => (kafka?.ok ? kafka.handle.stop() : Promise.resolve());
    } else {
      // Its own server, with the runtime's client settings (offline queue on, 2 retries per request).
      const server = await startRedis({ mode: 'test' });
      if (!server.owned) ctx.skip('REDIS_URL points at a server this test cannot stop');
      client = createRedis(server.url, 'client', 'outbox-brokers-test');
      client.on('error', () => undefined);
      broker = createRedisStreamsBroker({ redis: client, prefix });
      stop = () => server.stop();
    }
    try {
      expect(await broker.send([msg(topic, 'a', 1)])).toEqual([{ ok: true }]);
      await stop();
      const started = Date.now();
      const error = await broker.send([msg(topic, 'a', 2), msg(topic, 'b', 1)]).then(
        () => undefined,
        (err: unknown) => err,
      );
      const elapsed = Date.now() - started;
      console.log(`[${kind}] unavailable after ${elapsed} ms: ${error instanceof Error ? error.message : String(error)}`);
      expect(error).toBeInstanceOf(BrokerUnavailableError);
      expect((error as BrokerUnavailableError).cause).toBeDefined();
      expect(elapsed).toBeLessThan(UNAVAILABLE_WITHIN_MS);
    } finally {
      await broker.close();
      client?.disconnect();
    }
  }, 60_000);
});

/** A loopback port nothing listens on (bound, read, released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address !== 'object') throw new Error('could not read a free port');
  return address.port;
}
