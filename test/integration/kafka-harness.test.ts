import { mkdtemp, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { Kafka, Partitioners, logLevel, type Consumer, type Message } from 'kafkajs';
import { startKafka, type KafkaAvailability, type KafkaHandle } from '../../scripts/services/kafka.js';

const MESSAGE_COUNT = 100;
// The first run fetches the broker jars through Maven; later runs only start the JVM.
const START_TIMEOUT_MS = 5 * 60_000;

interface Received {
  partition: number;
  offset: bigint;
  key: string;
  value: string;
}

describe('kafka harness (real single-node KRaft broker)', () => {
  let availability: KafkaAvailability | undefined;

  beforeAll(async () => {
    availability = await startKafka({ log: (msg) => console.log(`[kafka] ${msg}`) });
    if (!availability.ok) console.warn(`kafka harness tests skipped: ${availability.reason}`);
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    // Idempotent, so this is safe even after the stop() test ran.
    if (availability?.ok) await availability.handle.stop();
  }, 30_000);

  /** The availability is only known once beforeAll ran, hence a runtime skip instead of skipIf. */
  function requireBroker(ctx: TestContext): KafkaHandle {
    if (!availability?.ok) return ctx.skip(availability?.reason ?? 'kafka did not start');
    return availability.handle;
  }

  it('round-trips 100 messages in order within the partition', async (ctx) => {
    const { brokers } = requireBroker(ctx);
    const kafka = new Kafka({ clientId: 'kafka-harness-test', brokers, logLevel: logLevel.NOTHING });
    const topic = `harness-${Date.now()}`;
    const expected = Array.from({ length: MESSAGE_COUNT }, (_, i) => ({ key: `key-${i % 7}`, value: `message-${i}` }));

    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
    } finally {
      await admin.disconnect();
    }

    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    try {
      await producer.send({ topic, messages: expected });
    } finally {
      await producer.disconnect();
    }

    const received = await consumeAll(kafka.consumer({ groupId: `${topic}-group` }), topic, MESSAGE_COUNT);

    expect(received.map(({ key, value }) => ({ key, value }))).toEqual(expected);
    expect(new Set(received.map((m) => m.partition))).toEqual(new Set([0]));
    const offsets = received.map((m) => m.offset);
    expect(offsets).toEqual([...offsets].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  }, 60_000);

  it('stop() kills the broker and frees its port', async (ctx) => {
    const handle = requireBroker(ctx);
    if (handle.external) ctx.skip('KAFKA_BROKERS points at an external broker; its stop() is a no-op');
    const [host, port] = hostAndPort(handle.brokers[0] ?? '');

    expect(await accepts(host, port)).toBe(true);
    await handle.stop();
    expect(await accepts(host, port)).toBe(false);
  }, 30_000);
});

describe('kafka harness pause()/resume() (a broker outage)', () => {
  const OUTAGE_BATCH = 10;
  let availability: KafkaAvailability | undefined;
  let parentDir: string | undefined;

  beforeAll(async () => {
    // A broker of its own in a parent dir of its own: the test ends by stopping it and checking
    // that stop() left nothing behind.
    parentDir = await mkdtemp(path.join(os.tmpdir(), 'kafka-harness-outage-'));
    availability = await startKafka({ dataDir: parentDir, log: (msg) => console.log(`[kafka] ${msg}`) });
    if (!availability.ok) console.warn(`kafka harness pause/resume test skipped: ${availability.reason}`);
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    if (availability?.ok) await availability.handle.stop();
    if (parentDir) await rm(parentDir, { recursive: true, force: true });
  }, 30_000);

  it('keeps topics and messages across pause()/resume(); producing fails while paused', async (ctx) => {
    if (!availability?.ok) return ctx.skip(availability?.reason ?? 'kafka did not start');
    const handle = availability.handle;
    if (handle.external) ctx.skip('KAFKA_BROKERS points at an external broker; pause()/resume() only work on owned brokers');
    const { brokers } = handle;
    const [host, port] = hostAndPort(brokers[0] ?? '');
    const kafka = new Kafka({ clientId: 'kafka-harness-outage-test', brokers, logLevel: logLevel.NOTHING });
    const topic = `harness-outage-${Date.now()}`;
    const before = batch('before', OUTAGE_BATCH);
    const after = batch('after', OUTAGE_BATCH);

    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
    } finally {
      await admin.disconnect();
    }
    await produce(kafka, topic, before);

    // A producer that is connected when the outage starts and gives up quickly.
    const impatient = new Kafka({
      clientId: 'kafka-harness-outage-impatient',
      brokers,
      logLevel: logLevel.NOTHING,
      connectionTimeout: 500,
      requestTimeout: 1_000,
      retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 200 },
    }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await impatient.connect();

    let t = Date.now();
    await handle.pause();
    console.log(`[kafka-harness] pause() took ${Date.now() - t}ms`);
    expect(await accepts(host, port)).toBe(false);

    t = Date.now();
    await expect(impatient.send({ topic, messages: [{ value: 'during-outage' }] })).rejects.toThrow(/ECONNREFUSED|connect/i);
    expect(Date.now() - t).toBeLessThan(15_000);
    await impatient.disconnect().catch(() => {});

    t = Date.now();
    await handle.resume();
    console.log(`[kafka-harness] resume() took ${Date.now() - t}ms`);
    expect(await accepts(host, port)).toBe(true);

    const survivors = await consumeAll(kafka.consumer({ groupId: `${topic}-after-resume` }), topic, OUTAGE_BATCH);
    expect(survivors.map(({ key, value }) => ({ key, value }))).toEqual(before);

    await produce(kafka, topic, after);
    const all = await consumeAll(kafka.consumer({ groupId: `${topic}-all` }), topic, 2 * OUTAGE_BATCH);
    expect(all.map(({ key, value }) => ({ key, value }))).toEqual([...before, ...after]);

    // Pause again and stop without awaiting in between: the calls run in order, and stop() of a
    // paused broker still removes its whole temp dir.
    const paused = handle.pause();
    const stopped = handle.stop();
    await Promise.all([paused, stopped]);
    expect(await accepts(host, port)).toBe(false);
    expect(await readdir(parentDir ?? '')).toEqual([]);
    await expect(handle.resume()).rejects.toThrow(/stop\(\) is final/);
  }, 120_000);
});

function batch(prefix: string, count: number): { key: string; value: string }[] {
  return Array.from({ length: count }, (_, i) => ({ key: `${prefix}-key-${i}`, value: `${prefix}-message-${i}` }));
}

async function produce(kafka: Kafka, topic: string, messages: Message[]): Promise<void> {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    await producer.send({ topic, messages });
  } finally {
    await producer.disconnect();
  }
}

/** Reads from the beginning until `count` messages arrived (or the consumer crashes / times out). */
async function consumeAll(consumer: Consumer, topic: string, count: number): Promise<Received[]> {
  const received: Received[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${received.length}/${count} messages within 30s`)), 30_000);
      // kafkajs restarts the consumer itself after retriable errors; only a final crash is fatal.
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        if (payload.restart) return;
        clearTimeout(timer);
        reject(payload.error);
      });
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            received.push({
              partition,
              offset: BigInt(message.offset),
              key: message.key?.toString() ?? '',
              value: message.value?.toString() ?? '',
            });
            if (received.length === count) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return received;
}

function hostAndPort(broker: string): [string, number] {
  const separator = broker.lastIndexOf(':');
  return [broker.slice(0, separator), Number(broker.slice(separator + 1))];
}

/** True if a TCP connection to host:port is accepted within 2 s. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
