import { DependencyError, errorMessage } from '../../runtime/index.js';

/** One outbox event as it goes to the broker. */
export interface OutboundMessage {
  /** uuid; consumers deduplicate on it (delivery is at-least-once). */
  eventId: string;
  topic: string;
  /** The aggregate id: per-key order must be kept. */
  key: string;
  eventType: string;
  aggregateType: string;
  /** A JSON value. */
  payload: unknown;
  /** The payload already as JSON text (from a jsonb column): sent as is instead of serialising `payload`. */
  payloadJson?: string;
  headers: Record<string, string>;
}

export type SendOutcome = { ok: true } | { ok: false; retriable: boolean; error: string };

export type BrokerKind = 'kafka' | 'redis-streams';

export interface Broker {
  readonly kind: BrokerKind;
  connect(): Promise<void>;
  /**
   * Publishes `messages` (given in per-key order) and resolves once the broker has
   * acknowledged them, with one outcome per message, in input order.
   * - Broker unreachable / timed out / not enough replicas / leader not available / any
   *   retriable transport error affecting the whole request: REJECTS with BrokerUnavailableError
   *   (nothing can be assumed delivered; the caller retries later without counting attempts).
   * - Message-specific permanent errors (message too large, invalid topic name, corrupt record,
   *   a payload that cannot be serialised): that message gets {ok:false, retriable:false, error},
   *   and every LATER message with the same key gets {ok:false, retriable:true, error: BLOCKED}
   *   and is NOT sent (a later event of a key must never overtake an earlier one).
   *   Messages of other keys still go out.
   */
  send(messages: readonly OutboundMessage[]): Promise<SendOutcome[]>;
  close(): Promise<void>;
}

/**
 * The whole request failed for a reason that is not the messages' fault (broker down, timed
 * out, no leader, producer state lost): nothing may be assumed delivered, and the relay retries
 * later without counting an attempt against the events.
 */
export class BrokerUnavailableError extends DependencyError {
  constructor(
    readonly broker: BrokerKind,
    cause: unknown,
    what = 'request failed',
  ) {
    super(`${broker} broker unavailable (${what}): ${errorMessage(cause)}`, { broker }, { cause });
  }
}

export const BLOCKED = 'blocked by an earlier failed event of the same key';

export const OK: SendOutcome = { ok: true };
export const blockedOutcome = (): SendOutcome => ({ ok: false, retriable: true, error: BLOCKED });
export const permanent = (error: string): SendOutcome => ({ ok: false, retriable: false, error });

/** Kafka's own rule (kafka.common.internals.Topic.validate), applied to Redis streams too. */
export function topicNameProblem(topic: string): string | undefined {
  if (topic === '.' || topic === '..') return `invalid topic name "${topic}": "." and ".." are reserved`;
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(topic)) {
    return `invalid topic name ${JSON.stringify(topic.slice(0, 300))}: 1-249 characters from [a-zA-Z0-9._-]`;
  }
  return undefined;
}

/** JSON text of a payload, or why it cannot be serialised (BigInt, cycles, undefined, functions). */
export function serialisePayload(m: Pick<OutboundMessage, 'payload' | 'payloadJson'>): { ok: true; json: string } | { ok: false; error: string } {
  if (m.payloadJson !== undefined) return { ok: true, json: m.payloadJson };
  const payload = m.payload;
  try {
    const json: unknown = JSON.stringify(payload);
    if (typeof json !== 'string') return { ok: false, error: `payload is not a JSON value (${typeof payload})` };
    return { ok: true, json };
  } catch (err) {
    return { ok: false, error: `payload cannot be serialised as JSON: ${errorMessage(err)}` };
  }
}
