import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { Kafka, Partitioners, logLevel } from 'kafkajs';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import type { SequencedKline } from '../../actors/sequence-allocator/index.js';
import { startKafka, type KafkaAvailability } from '../../scripts/services/kafka.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';

const T0 = 1_704_067_200_000;
const SYMBOLS = ['BTCUSDT', 'ETHUSDT', 'BNBUSDT'];
const PER_SYMBOL = 50;
const kline = (s: string, i: number) => ({ t: T0 + i * 60_000, T: T0 + i * 60_000 + 59_999, s, o: '100.5', h: '101', l: '99', c: '100', v: String(i) });

/** market_data from a real Kafka broker into market_klines and Redis pub/sub. */
describe('klines from Kafka (market_data consumer)', () => {
  let kafka: KafkaAvailability | undefined;
  let proc: RunningProcess | undefined;
  let db: pg.Pool;
  let sub: Redis;
  const published: SequencedKline[] = [];
  const topic = uniquePrefix('market-data');
  const groupId = uniquePrefix('klines-group');
  const prefix = uniquePrefix('klkafka');

  beforeAll(async () => {
    kafka = await startKafka({ log: (m) => console.log(`[kafka] ${m}`) });
    if (!kafka.ok) {
      console.warn(`klines Kafka tests skipped: ${kafka.reason}`);
      return;
    }
    const brokers = kafka.handle.brokers;
    const admin = new Kafka({ clientId: 'klines-test', brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const { redisUrl, databaseUrl } = testServices();
    const dbUrl = await freshDatabase(databaseUrl, uniquePrefix('klkafka').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 2 });
    sub = new Redis(redisUrl);
    await sub.psubscribe(`${prefix}:klines:*`);
    sub.on('pmessage', (_p, _c, m) => published.push(JSON.parse(m) as SequencedKline));
    env = runtimeEnv({ redisUrl, databaseUrl: dbUrl, prefix }, {
      KAFKA_BROKERS: brokers.join(','),
      OUTBOX_ENABLED: 'false',
      SYNC_EVENTS_ENABLED: 'false',
      KLINES_KAFKA_TOPIC: topic,
      KLINES_KAFKA_GROUP_ID: groupId,
      KLINES_CHANNEL_PREFIX: `${prefix}:klines:`,
      // Three ingest lanes (BTCUSDT 0, BNBUSDT and XRPUSDT 1, ETHUSDT 2): a Kafka batch becomes a job per lane.
      KLINES_INGEST_LANES: '3',
    });
    proc = await start();
  }, 5 * 60_000);

  let env: Record<string, string> = {};
  const start = () => startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', 'sequence-allocator', env), onEscalate: () => undefined });

  afterAll(async () => {
    sub?.disconnect();
    await proc?.stop(15_000);
    await db?.end();
    if (kafka?.ok) await kafka.handle.stop();
  }, 60_000);

  function brokers(ctx: TestContext): string[] {
    if (!kafka?.ok) return ctx.skip(kafka?.reason ?? 'kafka did not start');
    return kafka.handle.brokers;
  }

  async function produce(list: Array<{ key: string; value: string }>, b: string[]): Promise<void> {
    const producer = new Kafka({ clientId: 'klines-test-producer', brokers: b, logLevel: logLevel.NOTHING }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    try {
      await producer.send({ topic, messages: list });
    } finally {
      await producer.disconnect();
    }
  }

  const stored = async () =>
    (await db.query<{ symbol: string; seq: string; t: string }>(`SELECT symbol, sequence AS seq, (extract(epoch FROM time) * 1000)::bigint AS t FROM market_klines ORDER BY symbol, time`)).rows;

  it('stamps, stores and publishes; redelivered messages are neither stored nor published twice; non-klines go to the DLQ', async (ctx) => {
    const b = brokers(ctx);
    const first = Array.from({ length: PER_SYMBOL }, (_, i) => SYMBOLS.map((s) => ({ key: s, value: JSON.stringify(kline(s, i)) }))).flat();
    // A Binance-style event envelope is a kline too; the two bad messages are not.
    const envelope = { key: 'XRPUSDT', value: JSON.stringify({ e: 'kline', E: T0, s: 'XRPUSDT', k: kline('XRPUSDT', 0) }) };
    const bad = [
      { key: 'BTCUSDT', value: 'not json' },
      { key: 'BTCUSDT', value: JSON.stringify({ ...kline('BTCUSDT', 999), h: '1', l: '2' }) },
    ];
    await produce([...first, envelope, ...bad], b);
    await eventually(async () => (await stored()).length === SYMBOLS.length * PER_SYMBOL + 1, 60_000, 200, 'all klines stored');

    for (const s of SYMBOLS) {
      const rows = (await stored()).filter((r) => r.symbol === s);
      // Per symbol: one partition, so arrival order is time order, and sequences follow it.
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: PER_SYMBOL }, (_, i) => i + 1));
      await eventually(async () => published.filter((p) => p.symbol === s).length === PER_SYMBOL, 10_000, 50, `${s} published`);
      expect(published.filter((p) => p.symbol === s).map((p) => p.seq)).toEqual(Array.from({ length: PER_SYMBOL }, (_, i) => i + 1));
    }
    expect(published.find((p) => p.symbol === 'BTCUSDT' && p.seq === 3)).toEqual({ seq: 3, symbol: 'BTCUSDT', timestamp: T0 + 2 * 60_000, kline: { ...kline('BTCUSDT', 2), o: 100.5, h: 101, l: 99, c: 100, v: 2 } });

    // The same messages again (a producer retry, or a replay), then one new kline per symbol.
    await produce([...first, envelope, ...SYMBOLS.map((s) => ({ key: s, value: JSON.stringify(kline(s, PER_SYMBOL)) }))], b);
    await eventually(async () => (await stored()).length === SYMBOLS.length * (PER_SYMBOL + 1) + 1, 60_000, 200, 'the new klines stored');
    await eventually(async () => published.length === SYMBOLS.length * (PER_SYMBOL + 1) + 1, 10_000, 50, 'the new klines published');
    await new Promise((r) => setTimeout(r, 300));
    expect(published).toHaveLength(SYMBOLS.length * (PER_SYMBOL + 1) + 1);
    for (const s of SYMBOLS) {
      const rows = (await stored()).filter((r) => r.symbol === s);
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: PER_SYMBOL + 1 }, (_, i) => i + 1));
    }

    const dlq = await proc!.runtime.services.deadLetters.list('klines.ingest', 0, 10);
    expect(dlq.entries.map((e) => e.failedReason).sort()).toEqual([expect.stringMatching(/^invalid kline: h: high must be >= low/), 'invalid kline: not JSON']);

    // Offsets are committed once the batches are stored: the group has nothing left to read.
    const admin = new Kafka({ clientId: 'klines-test', brokers: b, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const committedToEnd = async () => {
      const ends = await admin.fetchTopicOffsets(topic);
      await eventually(async () => {
        const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
        // An empty partition has nothing committed (-1).
        return committed!.partitions.every((p) => Math.max(0, Number(p.offset)) === Number(ends.find((e) => e.partition === p.partition)!.high));
      }, 30_000, 200, 'offsets committed to the end');
    };
    try {
      await committedToEnd();
      // A real redelivery: the group starts over from the beginning in a new process.
      await proc!.stop(15_000);
      await admin.resetOffsets({ groupId, topic, earliest: true });
      const [reset] = await admin.fetchOffsets({ groupId, topics: [topic] });
      expect(reset!.partitions.map((p) => Number(p.offset))).toEqual([-2, -2, -2]); // kafkajs: "earliest"
      proc = await start();
      await committedToEnd();
      await new Promise((r) => setTimeout(r, 300));
      expect(await stored()).toHaveLength(SYMBOLS.length * (PER_SYMBOL + 1) + 1);
      expect(published).toHaveLength(SYMBOLS.length * (PER_SYMBOL + 1) + 1);
    } finally {
      await admin.disconnect();
    }
  }, 120_000);
});
