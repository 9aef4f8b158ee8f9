import { batchSize, compareLsn, type CdcApplyBatch, type CdcRelation } from '../../queues/cdc.js';
import { segmentFirstLsn } from '../../queues/cdc-rows.js';

const shape = (r: CdcRelation) => r.columns.map((c) => `${c.name}:${c.pgType}:${c.isKey ? 'k' : ''}`).join('|');

/**
 * Joins `head` and the batches queued right behind it (in queue order) into ONE batch,
 * applied in one DuckDB transaction: every batch pays the fixed cost of a transaction
 * and of one scan of each copy's key column, so bigger effective batches go faster.
 * The join stops (the rest is applied later, on its own) at the first batch that is:
 * not a stream batch (snapshot rules differ), of another slot, not strictly after the
 * previous one (the last change of `head` and the joined ones must be in LSN order,
 * or applying it with the LSN filter could drop changes), carrying a different shape
 * of a table already in (values would not line up with one relation), or that would
 * take the total over `maxChanges`. The result's `lastLsn` is the last joined batch's:
 * the joined batches, when their own jobs come, are then skipped as already applied.
 */
export function coalesceBatches(head: CdcApplyBatch, following: readonly CdcApplyBatch[], maxChanges: number): { batch: CdcApplyBatch; joined: number } {
  if (head.kind !== 'stream' || following.length === 0) return { batch: head, joined: 0 };
  const relations: Record<string, CdcRelation> = { ...head.relations };
  const shapes = new Map(Object.entries(relations).map(([t, r]) => [t, shape(r)]));
  const parts = [head.changes];
  let total = batchSize(head);
  let last = head;
  for (const next of following) {
    const size = batchSize(next);
    if (next.kind !== 'stream' || next.slot !== head.slot || total + size > maxChanges) break;
    if (compareLsn(next.lastLsn, last.lastLsn) <= 0) break;
    const first = next.changes[0];
    if (first !== undefined && compareLsn(typeof first === 'string' ? segmentFirstLsn(first) : first.lsn, last.lastLsn) <= 0) break;
    const clash = Object.entries(next.relations).some(([t, r]) => shapes.has(t) && shapes.get(t) !== shape(r));
    if (clash) break;
    for (const [t, r] of Object.entries(next.relations)) {
      relations[t] = r;
      shapes.set(t, shape(r));
    }
    parts.push(next.changes);
    total += size;
    last = next;
  }
  if (last === head) return { batch: head, joined: 0 };
  // Segments join as they are: the reducer reads them one after the other.
  return { batch: { ...last, relations, changes: parts.flat(), size: total }, joined: parts.length - 1 };
}
