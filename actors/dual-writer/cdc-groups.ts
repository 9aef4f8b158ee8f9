import type { Job, Queue } from 'bullmq';
import { batchSize, compareLsn, type CdcApplyBatch } from '../../queues/cdc.js';
import { coalesceBatches } from './coalesce.js';

/** What one DuckDB transaction applies: the head job's batch joined with the jobs waiting behind it. */
export interface CdcGroup {
  batch: CdcApplyBatch;
  /** Ids of the waiting jobs joined in: removed once the transaction has committed. */
  joinedIds: string[];
}

interface Ahead {
  /** The job the group starts with: the prefetched group is used only when this job comes next. */
  headId: string;
  group: CdcGroup;
}

const MAX_PEEK = 100;

/**
 * Reads the groups of `cdc.apply` batches the dual-writer applies, one DuckDB transaction each,
 * and reads the NEXT group while DuckDB applies the current one: fetching and parsing the
 * waiting jobs is JavaScript and Redis work, the transaction is DuckDB's threads, so the two
 * overlap instead of taking turns (the writer's JavaScript thread was idle two thirds of a
 * catch-up).
 *
 * Positions: BullMQ lists waiting jobs oldest first, counted from the oldest end, so jobs the
 * reader adds meanwhile do not move them. The current group's joined jobs are the first
 * `skip` waiting jobs until they are removed, so the next group starts at position `skip`.
 * The caller removes them only after `settled()`, i.e. after the prefetch has read its
 * positions. A prefetched group is used only if its head is the job BullMQ hands over next;
 * anything else (a failed removal, a job moved back to the head on stop, a retry) drops it
 * and the group is read afresh. Jobs never change, so the data read ahead is the queue's.
 */
export class CdcGroupReader {
  private ahead: Promise<Ahead | undefined> | undefined;

  constructor(
    private readonly queue: Queue,
    private readonly maxChanges: number,
    private readonly onCoalesced: (joined: number) => void,
  ) {}

  /**
   * The group headed by `job` (its batch `batch`). `applied` is the slot's last applied LSN: a
   * batch at or below it is skipped by the applier, so it is returned alone, without peeking,
   * or every skipped job would re-join the rest of the run and apply one new batch at a time.
   */
  async take(batch: CdcApplyBatch, job: Job, applied: string | null | undefined): Promise<CdcGroup> {
    const alone: CdcGroup = { batch, joinedIds: [] };
    const ahead = await this.drop();
    if (batch.kind !== 'stream' || batchSize(batch) >= this.maxChanges) return alone;
    if (applied && compareLsn(batch.lastLsn, applied) <= 0) return alone;
    let group: CdcGroup;
    if (ahead && ahead.headId === job.id) group = await this.topUp(ahead.group);
    else {
      const peek = Math.min(MAX_PEEK, Math.ceil(this.maxChanges / Math.max(1, batchSize(batch))));
      group = this.join(batch, await this.waiting(0, peek));
    }
    if (group.joinedIds.length > 0) this.onCoalesced(group.joinedIds.length);
    return group;
  }

  /**
   * Starts reading the group after the first `skip` waiting jobs (the current group's joined
   * ones), sized as if its batches were as big as `batchChanges`. A failed read only means
   * the next group is read when its head comes.
   */
  prefetch(skip: number, batchChanges: number): void {
    const peek = Math.min(MAX_PEEK, Math.ceil(this.maxChanges / Math.max(1, batchChanges))) + 1;
    this.ahead = this.waiting(skip, peek).then(
      ([head, ...rest]): Ahead | undefined => (head?.id ? { headId: head.id, group: this.join(head.data, rest) } : undefined),
      () => undefined,
    );
  }

  /**
   * The group read ahead, joined with the batches queued since it was read: they wait right
   * behind its joined jobs. Read ahead at the start of the previous transaction, the group
   * holds only what was waiting then; joining what arrived during that transaction makes
   * fewer, bigger transactions, and each one scans the copy once to delete its keys (in the
   * CDC bench a catch-up's groups were half the size the cap allows). A failed read leaves
   * the group as it was read.
   */
  private async topUp(group: CdcGroup): Promise<CdcGroup> {
    const size = batchSize(group.batch);
    const joined = group.joinedIds.length;
    if (size >= this.maxChanges || joined >= MAX_PEEK) return group;
    const perBatch = Math.max(1, size / (joined + 1));
    const peek = Math.min(MAX_PEEK - joined, Math.ceil((this.maxChanges - size) / perBatch));
    const more = await this.waiting(joined, peek).then(
      (jobs) => this.join(group.batch, jobs),
      () => undefined,
    );
    return more && more.joinedIds.length > 0 ? { batch: more.batch, joinedIds: [...group.joinedIds, ...more.joinedIds] } : group;
  }

  /** Resolves once a prefetch in flight has read the queue (before the caller removes jobs). */
  async settled(): Promise<void> {
    await this.ahead;
  }

  /** Forgets the group read ahead (a retry, a stop). */
  async drop(): Promise<Ahead | undefined> {
    const ahead = this.ahead;
    this.ahead = undefined;
    return ahead;
  }

  /** Waiting jobs from position `from`, oldest first, up to the first without a usable batch. */
  private async waiting(from: number, count: number): Promise<Array<Job<CdcApplyBatch>>> {
    const jobs = (await this.queue.getJobs(['wait'], from, from + count - 1, true)) as Array<Job<CdcApplyBatch>>;
    // A job without a batch ends the run: what follows it must not be applied before it is dealt with.
    const bad = jobs.findIndex((j) => !j.data || !Array.isArray(j.data.changes) || !j.id);
    return bad < 0 ? jobs : jobs.slice(0, bad);
  }

  /** coalesceBatches decides what joins (nothing behind a snapshot batch or a full head). */
  private join(head: CdcApplyBatch, followers: ReadonlyArray<Job<CdcApplyBatch>>): CdcGroup {
    const { batch, joined } = coalesceBatches(head, followers.map((j) => j.data), this.maxChanges);
    return { batch, joinedIds: followers.slice(0, joined).map((j) => j.id!) };
  }
}
