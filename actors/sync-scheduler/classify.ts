import type { QueueEntry, Source } from './entries.js';
import { isStatus, transition } from './status.js';

/** A portfolio transaction's fields that the sync compares. */
export interface PortfolioRow {
  id: string;
  user_id: string;
  type: string;
  amount: string;
  currency: string;
  status: string;
}

export type ConflictKind = 'immutable_mismatch' | 'backward_transition' | 'unknown_status';

export interface Conflict {
  entry: QueueEntry;
  existing: PortfolioRow | undefined;
  kind: ConflictKind;
  fields: string[];
}

export interface Plan {
  create: QueueEntry[];
  update: QueueEntry[];
  unchanged: QueueEntry[];
  conflicts: Conflict[];
}

/**
 * Decides, for each entry of a page, what the portfolio needs. Immutable fields
 * (user, type, amount, currency) are never overwritten; a status may only move
 * forward. Anything else is a conflict, and the rest of the page goes ahead.
 */
export function classify(source: Source, entries: readonly QueueEntry[], existing: ReadonlyMap<string, PortfolioRow>): Plan {
  const plan: Plan = { create: [], update: [], unchanged: [], conflicts: [] };
  for (const entry of entries) {
    if (!isStatus(entry.status)) {
      plan.conflicts.push({ entry, existing: existing.get(entry.id), kind: 'unknown_status', fields: ['status'] });
      continue;
    }
    const row = existing.get(entry.id);
    if (!row) {
      plan.create.push(entry);
      continue;
    }
    const mismatched = [
      row.user_id !== entry.user_id && 'user_id',
      row.type !== source.type && 'type',
      !sameAmount(row.amount, entry.amount) && 'amount',
      row.currency.trim() !== entry.currency.trim() && 'currency',
    ].filter((f): f is string => typeof f === 'string');
    if (mismatched.length > 0) {
      plan.conflicts.push({ entry, existing: row, kind: 'immutable_mismatch', fields: mismatched });
      continue;
    }
    const move = isStatus(row.status) ? transition(row.status, entry.status) : 'forward';
    if (move === 'same') plan.unchanged.push(entry);
    else if (move === 'forward') plan.update.push(entry);
    else plan.conflicts.push({ entry, existing: row, kind: 'backward_transition', fields: ['status'] });
  }
  return plan;
}

/** numeric text compared by value: '10.5' equals '10.50000000'. */
function sameAmount(a: string, b: string): boolean {
  const norm = (s: string) => {
    const [int = '0', frac = ''] = s.trim().replace(/^\+/, '').split('.');
    const i = int.replace(/^(-?)0+(?=\d)/, '$1');
    const f = frac.replace(/0+$/, '');
    return f ? `${i}.${f}` : i;
  };
  return norm(a) === norm(b);
}
