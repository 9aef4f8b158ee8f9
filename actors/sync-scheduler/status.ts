/**
 * The life of a queue entry, and so of its portfolio transaction:
 *
 *   pending -> processing -> completed | failed | cancelled
 *   pending -> completed | failed | cancelled   (a step may be skipped)
 *
 * A transaction only moves forward. A move backwards (processing -> pending) or
 * out of a final state (completed -> failed) is a conflict: the portfolio row is
 * left as it is and the conflict is recorded.
 */
export const STATUSES = ['pending', 'processing', 'completed', 'failed', 'cancelled'] as const;
export type Status = (typeof STATUSES)[number];

const RANK: Record<Status, number> = { pending: 0, processing: 1, completed: 2, failed: 2, cancelled: 2 };

export function isStatus(s: string): s is Status {
  return (STATUSES as readonly string[]).includes(s);
}

export type Transition = 'same' | 'forward' | 'backward';

export function transition(from: Status, to: Status): Transition {
  if (from === to) return 'same';
  return RANK[to] > RANK[from] ? 'forward' : 'backward';
}
