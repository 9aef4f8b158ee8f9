import { CompressionTypes, Kafka, Partitioners, logLevel, type LogEntry, type Message, type Producer } from 'kafkajs';
import { DependencyError, errorMessage, withTimeout } from '../../runtime/index.js';
import { BrokerUnavailableError, OK, blockedOutcome, permanent, serialisePayload, topicNameProblem, type Broker, type OutboundMessage, type SendOutcome } from './broker.js';

export interface KafkaBrokerOptions {
  brokers: string[];
  clientId?: string;
  log?: (msg: string, extra?: object) => void;
  /** Client-side limit per request; the broker's ack timeout is a little lower. @defaultValue 5000 */
  requestTimeoutMs?: number;
}

/**
 * Few, short retries: an outage must surface as BrokerUnavailableError in seconds (the relay
 * retries later) instead of holding the relay's transaction open for kafkajs's default minutes.
 */
const RETRY = { retries: 2, initialRetryTime: 200, maxRetryTime: 2_000 };
/** The record itself is refused; the rest of the request would have been accepted. */
const RECORD_ERRORS = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE', 'INVALID_TIMESTAMP']);
/** Every record for that topic is refused, whatever it holds. */
const TOPIC_ERRORS = new Set(['INVALID_TOPIC_EXCEPTION', 'TOPIC_AUTHORIZATION_FAILED']);

export type Refusal = { kind: 'record' | 'topic'; error: string };
/** `bug`: not an error of kafkajs at all, so no broker condition to wait out. */
export type Verdict = Refusal | { kind: 'unavailable' } | { kind: 'bug' };

/**
 * Kafka through a kafkajs idempotent producer (acks=all, one request in flight).
 * A whole batch is sent at once; only when the broker refuses a record does it fall back
 * to one message at a time, to find the poison and hold back the later events of its key.
 */
export function createKafkaBroker(opts: KafkaBrokerOptions): Broker {
  const requestTimeout = opts.requestTimeoutMs ?? 5_000;
  const ackTimeout = Math.max(1_000, requestTimeout - 500);
  // Backstop over kafkajs's own timeouts (its internal locks wait up to 65 s): every attempt plus
  // every backoff, and some slack. A send must never hold the relay (and this broker's queue) forever.
  const sendDeadline = (RETRY.retries + 1) * (requestTimeout + RETRY.maxRetryTime) + 5_000;
  const log = opts.log;
  const kafka = new Kafka({
    clientId: opts.clientId ?? 'concord-outbox-relay',
    brokers: opts.brokers,
    connectionTimeout: 3_000,
    requestTimeout,
    retry: RETRY,
    logLevel: log ? logLevel.WARN : logLevel.NOTHING,
    logCreator:
      () =>
      ({ namespace, log: { message, timestamp: _t, ...extra } }: LogEntry) => {
        // Deliberate (see RETRY) and repeated on every new producer: not worth a log line.
        if (message.startsWith('Limiting retries for the idempotent producer')) return;
        log?.(`kafkajs ${namespace}: ${message}`, extra);
      },
  });
  let producer: Producer | undefined;
  let connecting: Promise<Producer> | undefined;
  let closed = false;
  // send() calls run one at a time: a failing call replaces the producer, which must not
  // pull the rug from under another call's request.
  let tail: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const run = tail.then(work, work);
    tail = run.catch(() => undefined);
    return run;
  };

  function ensureProducer(): Promise<Producer> {
    if (closed) return Promise.reject(new BrokerUnavailableError('kafka', 'the broker was closed', 'connect'));
    if (producer) return Promise.resolve(producer);
    connecting ??= (async () => {
      const p = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: true,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: RETRY,
      });
      try {
        await withTimeout('kafka connect', sendDeadline, p.connect());
        producer = p;
        return p;
      } catch (err) {
        await withTimeout('kafka disconnect', requestTimeout, p.disconnect()).catch(() => undefined);
        throw new BrokerUnavailableError('kafka', err, 'connect');
      } finally {
        connecting = undefined;
      }
    })();
    return connecting;
  }

  /**
   * After a failed request kafkajs's idempotence sequence numbers may disagree with the broker
   * (it rolls back every partition of the request, also those the broker appended), which later
   * yields OUT_OF_ORDER_SEQUENCE_NUMBER or, worse, a new batch dropped as a "duplicate".
   * A new producer gets a new producer id and starts its sequences afresh.
   */
  async function resetProducer(): Promise<void> {
    const old = producer;
    producer = undefined;
    // Bounded: kafkajs's disconnect waits for in-flight requests, which a hung broker never answers.
    if (old) await withTimeout('kafka disconnect', requestTimeout, old.disconnect()).catch(() => undefined);
  }

  async function sendAll(messages: readonly OutboundMessage[]): Promise<SendOutcome[]> {
    const records = messages.map(toRecord);
    // Every index is overwritten below; the placeholder only keeps the array dense.
    const outcomes: SendOutcome[] = messages.map(() => blockedOutcome());
    const topicFailures = new Map<string, string>();
    let blocked = new Set<string>();
    // A message that fails before it is sent blocks its key; undefined means "send it".
    const precheck = (i: number, keys: Set<string>): SendOutcome | undefined => {
      const { key, topic } = messages[i]!;
      if (keys.has(key)) return blockedOutcome();
      const problem = records[i]!.problem ?? topicFailures.get(topic);
      if (problem === undefined) return undefined;
      keys.add(key);
      return permanent(problem);
    };

    for (const segment of segments(messages)) {
      let keys = new Set(blocked);
      const batch: number[] = [];
      for (const i of segment) {
        const verdict = precheck(i, keys);
        if (verdict) outcomes[i] = verdict;
        else batch.push(i);
      }
      const refused = batch.length > 0 ? await sendBatch(batch.map((i) => ({ topic: messages[i]!.topic, record: records[i]!.record! }))) : undefined;
      if (refused === undefined) {
        for (const i of batch) outcomes[i] = OK;
      } else {
        log?.('kafka refused a record of the batch; sending one by one to isolate it', { error: refused.error, messages: batch.length });
        keys = new Set(blocked);
        for (const i of segment) {
          const verdict = precheck(i, keys);
          if (verdict) {
            outcomes[i] = verdict;
            continue;
          }
          // A batch of one already was this message's own attempt.
          const failure = batch.length === 1 ? refused : await sendBatch([{ topic: messages[i]!.topic, record: records[i]!.record! }]);
          if (failure === undefined) {
            outcomes[i] = OK;
          } else {
            if (failure.kind === 'topic') topicFailures.set(messages[i]!.topic, failure.error);
            keys.add(messages[i]!.key);
            outcomes[i] = permanent(failure.error);
          }
        }
      }
      blocked = keys;
    }
    return outcomes;
  }

  /**
   * Resolves undefined once acknowledged, or with the verdict when the broker refused a record or
   * a topic; rejects with BrokerUnavailableError when it is not the records' fault.
   */
  async function sendBatch(items: Array<{ topic: string; record: Message }>): Promise<Refusal | undefined> {
    const p = await ensureProducer();
    const byTopic = new Map<string, Message[]>();
    for (const { topic, record } of items) (byTopic.get(topic) ?? byTopic.set(topic, []).get(topic)!).push(record);
    try {
      const topicMessages = [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs }));
      await withTimeout('kafka produce', sendDeadline, p.sendBatch({ topicMessages, acks: -1, timeout: ackTimeout, compression: CompressionTypes.None }));
      return undefined;
    } catch (err) {
      const verdict = classify(err);
      // A lone message's refusal leaves the sequences consistent (its partition was the only one
      // in the request); anything else may not, see resetProducer.
      if (verdict.kind !== 'record' || items.length > 1) await resetProducer();
      if (verdict.kind === 'unavailable') throw new BrokerUnavailableError('kafka', err, 'send');
      if (verdict.kind === 'bug') throw err;
      return verdict;
    }
  }

  return {
    kind: 'kafka',
    connect: () => exclusive(async () => void (await ensureProducer())),
    send: (messages) => exclusive(() => sendAll(messages)),
    close: async () => {
      closed = true;
      await exclusive(resetProducer);
    },
  };
}

/** The Kafka record, or why the message cannot become one. */
function toRecord(m: OutboundMessage): { record?: Message; problem?: string } {
  const topicProblem = topicNameProblem(m.topic);
  if (topicProblem) return { problem: topicProblem };
  const value = serialisePayload(m);
  if (!value.ok) return { problem: value.error };
  // Headers come from a JSON column: a non-string value would crash kafkajs's encoder mid-request.
  const bad = Object.entries(m.headers).find(([, v]) => typeof v !== 'string');
  if (bad) return { problem: `header ${JSON.stringify(bad[0])} is not a string` };
  // Ours last: consumers deduplicate on event_id, which a caller's header must not override.
  const headers = { ...m.headers, event_id: m.eventId, event_type: m.eventType, aggregate_type: m.aggregateType, aggregate_id: m.key };
  return { record: { key: m.key, value: value.json, headers } };
}

/**
 * Splits the batch so that within a part every key goes to one topic, hence one partition,
 * whose records the broker appends all-or-nothing. A key spread over topics in one request
 * could otherwise see its later event appended while the earlier one was refused.
 */
function segments(messages: readonly OutboundMessage[]): number[][] {
  const parts: number[][] = [];
  let current: number[] = [];
  let topicOf = new Map<string, string>();
  messages.forEach((m, i) => {
    const seen = topicOf.get(m.key);
    if (seen !== undefined && seen !== m.topic) {
      parts.push(current);
      current = [];
      topicOf = new Map();
    }
    topicOf.set(m.key, m.topic);
    current.push(i);
  });
  if (current.length > 0) parts.push(current);
  return parts;
}

/**
 * kafkajs wraps the broker's error code (`type`) in KafkaJSProtocolError, itself possibly in
 * KafkaJSNumberOfRetriesExceeded (`cause`): CORRUPT_MESSAGE is retriable for kafkajs, so it
 * arrives wrapped after the retries. Any other kafkajs error is not a record's or topic's fault.
 */
export function classify(err: unknown): Verdict {
  if (err instanceof DependencyError) return { kind: 'unavailable' }; // our own deadline
  if (!(err instanceof Error) || !err.name.startsWith('KafkaJS')) return { kind: 'bug' };
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const type: unknown = Reflect.get(e, 'type');
    if (typeof type !== 'string') continue;
    if (RECORD_ERRORS.has(type)) return { kind: 'record', error: `${type}: ${errorMessage(e)}` };
    if (TOPIC_ERRORS.has(type)) return { kind: 'topic', error: `${type}: ${errorMessage(e)}` };
  }
  return { kind: 'unavailable' };
}
