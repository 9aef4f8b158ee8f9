import type { Redis } from 'ioredis';
import { withTimeout } from '../../runtime/index.js';
import { BrokerUnavailableError, OK, blockedOutcome, permanent, serialisePayload, topicNameProblem, type Broker, type OutboundMessage, type SendOutcome } from './broker.js';

export interface RedisStreamsBrokerOptions {
  /** Connected and owned by the caller: close() leaves it open. */
  redis: Redis;
  prefix: string;
  /** A record whose fields add up to more is refused, like Kafka's message.max.bytes. @defaultValue 1_000_000 */
  maxMessageBytes?: number;
  /** Approximate MAXLEN per stream (XADD MAXLEN ~); unbounded when unset. */
  maxLen?: number;
  /**
   * Upper bound for one request: a client that queues commands while Redis is down
   * (maxRetriesPerRequest null) would otherwise hold the relay's transaction open. @defaultValue 10_000
   */
  timeoutMs?: number;
}

/** The stream of a topic: `${prefix}:stream:${topic}`. */
export function streamKey(prefix: string, topic: string): string {
  return `${prefix}:stream:${topic}`;
}

/**
 * A topic as a Redis stream, for deployments without Kafka. The valid messages of a send go out
 * in one MULTI, in input order, so the batch lands as a whole and per-key order is the stream's.
 */
export function createRedisStreamsBroker(opts: RedisStreamsBrokerOptions): Broker {
  const maxBytes = opts.maxMessageBytes ?? 1_000_000;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const request = async <T>(what: string, work: Promise<T>): Promise<T> => {
    try {
      return await withTimeout(`redis ${what}`, timeoutMs, work);
    } catch (err) {
      throw new BrokerUnavailableError('redis-streams', err, what);
    }
  };

  return {
    kind: 'redis-streams',
    connect: async () => {
      await request('PING', opts.redis.ping());
    },
    send: async (messages) => {
      const blocked = new Set<string>();
      const adds: Array<{ stream: string; fields: string[] }> = [];
      const outcomes = messages.map((m): SendOutcome => {
        if (blocked.has(m.key)) return blockedOutcome();
        const fields = toFields(m, maxBytes);
        if (typeof fields === 'string') {
          blocked.add(m.key);
          return permanent(fields);
        }
        adds.push({ stream: streamKey(opts.prefix, m.topic), fields });
        return OK;
      });
      if (adds.length === 0) return outcomes;

      const tx = opts.redis.multi();
      for (const { stream, fields } of adds) {
        if (opts.maxLen === undefined) tx.xadd(stream, '*', ...fields);
        else tx.xadd(stream, 'MAXLEN', '~', opts.maxLen, '*', ...fields);
      }
      const results = await request('XADD', tx.exec());
      // null: the transaction was discarded; a per-command error (e.g. WRONGTYPE on the key) is a
      // store problem, not the message's. Either way the caller retries the whole batch later.
      if (results === null) throw new BrokerUnavailableError('redis-streams', 'MULTI was discarded', 'XADD');
      const failed = results.find(([err]) => err !== null)?.[0];
      if (failed) throw new BrokerUnavailableError('redis-streams', failed, 'XADD');
      return outcomes;
    },
    // The connection is the caller's.
    close: async () => undefined,
  };
}

/** The XADD field list, or why the message cannot be one. */
function toFields(m: OutboundMessage, maxBytes: number): string[] | string {
  const topicProblem = topicNameProblem(m.topic);
  if (topicProblem) return topicProblem;
  const payload = serialisePayload(m);
  if (!payload.ok) return payload.error;
  const headers = serialisePayload({ payload: m.headers });
  if (!headers.ok) return `headers: ${headers.error}`;
  const fields = ['event_id', m.eventId, 'key', m.key, 'event_type', m.eventType, 'aggregate_type', m.aggregateType, 'headers', headers.json, 'payload', payload.json];
  const size = fields.reduce((sum, f) => sum + Buffer.byteLength(f), 0);
  if (size > maxBytes) return `MESSAGE_TOO_LARGE: record of ${size} bytes exceeds the limit of ${maxBytes} bytes`;
  return fields;
}
