import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type IHeaders } from 'kafkajs';
import type { Redis } from 'ioredis';
import { streamKey } from '../../actors/outbox-relay/redis-streams-broker.js';

/** One record as a consumer sees it, the same shape for Kafka and Redis Streams. */
export interface DeliveredRecord {
  key: string;
  /** The parsed JSON value (the raw text if it is not JSON). */
  value: unknown;
  headers: Record<string, string>;
  partition: number;
  /** Kafka: the offset; Redis: the stream entry id. */
  offset: string;
}

/**
 * Reads `topic` from the beginning with a fresh consumer group until at least `expected` records
 * arrived and every partition is consumed up to its high watermark as of then (so a record that
 * should be absent cannot hide just behind the expected ones). On timeout returns what arrived,
 * so callers can poll or show the difference. Order: consumption order, i.e. per partition by offset.
 */
export async function readKafkaTopic(brokers: string[], topic: string, opts: { expected: number; timeoutMs: number }): Promise<DeliveredRecord[]> {
  const kafka = new Kafka({ clientId: 'concord-test-reader', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const consumer = kafka.consumer({ groupId: `reader-${topic}-${randomBytes(4).toString('hex')}`, maxWaitTimeInMs: 100 });
  const received: DeliveredRecord[] = [];
  const next = new Map<number, bigint>();
  let crash: unknown;
  const deadline = Date.now() + opts.timeoutMs;
  try {
    await Promise.all([admin.connect(), consumer.connect()]);
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart) crash = payload.error;
    });
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        received.push({
          key: message.key?.toString() ?? '',
          value: parseJson(message.value?.toString() ?? ''),
          headers: headerStrings(message.headers),
          partition,
          offset: message.offset,
        });
        next.set(partition, BigInt(message.offset) + 1n);
      },
    });
    let targets: Array<{ partition: number; high: bigint }> | undefined;
    while (Date.now() < deadline) {
      if (crash !== undefined) throw crash;
      if (received.length >= opts.expected) {
        targets ??= (await admin.fetchTopicOffsets(topic)).map((p) => ({ partition: p.partition, high: BigInt(p.high) }));
        if (targets.every((t) => (next.get(t.partition) ?? 0n) >= t.high)) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return [...received];
  } finally {
    await Promise.all([consumer.disconnect().catch(() => undefined), admin.disconnect().catch(() => undefined)]);
  }
}

/** Everything in the topic's stream, with headers merged the way the Kafka broker sends them. */
export async function readRedisStream(redis: Redis, prefix: string, topic: string): Promise<DeliveredRecord[]> {
  const entries = await redis.xrange(streamKey(prefix, topic), '-', '+');
  return entries.map(([id, flat]) => {
    const f = new Map<string, string>();
    for (let i = 0; i + 1 < flat.length; i += 2) f.set(flat[i]!, flat[i + 1]!);
    const key = f.get('key') ?? '';
    const extra = parseJson(f.get('headers') ?? '{}');
    const headers: Record<string, string> = {};
    if (extra && typeof extra === 'object') for (const [k, v] of Object.entries(extra)) headers[k] = String(v);
    Object.assign(headers, { event_id: f.get('event_id') ?? '', event_type: f.get('event_type') ?? '', aggregate_type: f.get('aggregate_type') ?? '', aggregate_id: key });
    return { key, value: parseJson(f.get('payload') ?? 'null'), headers, partition: 0, offset: id };
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function headerStrings(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v.map(String).join(',') : v.toString();
  }
  return out;
}
