import type { Queue } from 'bullmq';
import type { CdcApplyBatch } from '../../queues/cdc.js';
import { packBatch } from '../../queues/cdc-rows.js';
import { backoffDelay, errorMessage, type Logger } from '../../runtime/index.js';

export interface Outgoing {
  batch: CdcApplyBatch;
  lastLsn: number;
  /** Commit time of its first transaction (Unix ms), for lag. */
  firstCommitMs: number;
  /** Called once the batch is in Redis. */
  onSent?: () => void;
}

/**
 * Adds batches to `cdc.apply` one at a time, in the order they were decoded:
 * BullMQ keeps insertion order, and a single add in flight means a failed add can
 * never let a later batch overtake it. A failing add is retried with backoff,
 * never dropped; meanwhile batches pile up here and the reader pauses the slot
 * (`backlog`). Before each add the lease epoch is checked, so a reader that lost
 * its lease stops adding.
 */
export class BatchSender {
  private readonly queue: Outgoing[] = [];
  /** Batches in Redis, oldest first, not yet known to be applied: [lastLsn, firstCommitMs]. */
  readonly inFlight: Array<[number, number]> = [];
  private running: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  sent = 0;

  constructor(
    private readonly target: Queue,
    private readonly fence: () => Promise<void>,
    private readonly log: Logger,
    private readonly onFatal: (err: Error) => void,
    /** Runs before each add (resolves column type names the batch needs). */
    private readonly beforeAdd: () => Promise<void> = async () => undefined,
    /** Runs after each batch reached Redis (the reader resumes a paused slot at once, not at its next poll). */
    private readonly afterAdd: () => void = () => undefined,
  ) {}

  get backlog(): number {
    return this.queue.length;
  }

  push(out: Outgoing): void {
    this.queue.push(out);
    this.running ??= this.run().finally(() => (this.running = undefined));
  }

  /** Drops in-flight entries the applier has committed (lastLsn <= applied). */
  applied(lsn: number): void {
    while (this.inFlight.length > 0 && this.inFlight[0]![0] <= lsn) this.inFlight.shift();
  }

  /** Commit time of the oldest change queued or in flight and not yet applied. */
  oldestPendingCommitMs(): number | null {
    return this.inFlight[0]?.[1] ?? this.queue[0]?.firstCommitMs ?? null;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped && this.queue.length > 0) {
      const out = this.queue[0]!;
      try {
        await this.fence();
        await this.beforeAdd();
        // One segment per batch on the wire (queues/cdc-rows.ts): packed rows the writer stages whole.
        await this.target.add(out.batch.kind, packBatch(out.batch));
        failures = 0;
        this.queue.shift();
        this.inFlight.push([out.lastLsn, out.firstCommitMs]);
        this.sent++;
        out.onSent?.();
        this.afterAdd();
      } catch (err) {
        if ((err as { code?: string }).code === 'fenced') {
          this.onFatal(err as Error);
          return;
        }
        const delay = backoffDelay(failures++, { minMs: 100, maxMs: 5_000, jitter: 0.2 });
        this.log.warn({ err: errorMessage(err), retryInMs: delay }, 'adding a CDC batch failed; retrying');
        await new Promise<void>((r) => {
          this.wake = r;
          setTimeout(r, delay);
        });
      }
    }
  }

  /** Waits for the batches held here to reach Redis (bounded by the caller). */
  async drain(): Promise<void> {
    await this.running;
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }
}
