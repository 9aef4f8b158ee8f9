import type { OutboundMessage } from './broker.js';

/** A pending event as the relay reads it. */
export interface PendingEvent {
  id: string;
  seq: string;
  aggregate_id: string;
  aggregate_type: string;
  topic: string;
  event_type: string;
  /** The jsonb payload as PostgreSQL's JSON text: sent as is, never parsed and re-serialised. */
  payload_json: string;
  headers: Record<string, string>;
  priority: number;
  attempts: number;
  max_attempts: number | null;
}

/**
 * From candidates (ordered by priority, then seq) keep, per aggregate, only the
 * events whose every earlier unpublished event is also a candidate: an event in
 * backoff, dead, or left out of this batch holds back the later ones of its
 * aggregate. `unpublished` lists each aggregate's unpublished seqs, ascending.
 */
export function eligible(candidates: readonly PendingEvent[], unpublished: ReadonlyMap<string, readonly string[]>): PendingEvent[] {
  const bySeq = new Map(candidates.map((c) => [c.seq, c]));
  const allowed = new Set<string>();
  for (const [, seqs] of unpublished) {
    for (const seq of seqs) {
      if (!bySeq.has(seq)) break;
      allowed.add(seq);
    }
  }
  return candidates.filter((c) => allowed.has(c.seq));
}

/**
 * The order to send in: aggregates by their highest priority (then oldest event),
 * each aggregate's events in seq order, so priority never reorders an aggregate.
 */
export function sendOrder(events: readonly PendingEvent[]): PendingEvent[] {
  const groups = new Map<string, PendingEvent[]>();
  for (const e of events) (groups.get(e.aggregate_id) ?? groups.set(e.aggregate_id, []).get(e.aggregate_id)!).push(e);
  const ordered = [...groups.values()].map((g) => g.sort((a, b) => cmpSeq(a.seq, b.seq)));
  ordered.sort((a, b) => maxPriority(b) - maxPriority(a) || cmpSeq(a[0]!.seq, b[0]!.seq));
  return ordered.flat();
}

function maxPriority(group: readonly PendingEvent[]): number {
  return Math.max(...group.map((e) => e.priority));
}

/** Orders decimal seq strings numerically without parsing them. */
export function cmpSeq(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

export function toMessage(e: PendingEvent): OutboundMessage {
  return { eventId: e.id, topic: e.topic, key: e.aggregate_id, eventType: e.event_type, aggregateType: e.aggregate_type, payload: undefined, payloadJson: e.payload_json, headers: e.headers };
}
