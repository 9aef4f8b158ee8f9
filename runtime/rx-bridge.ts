import { BehaviorSubject, Observable, bufferTime, filter, firstValueFrom, mergeMap, type Subscription } from 'rxjs';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { QueueSet } from './queue-set.js';
import { backoffDelay } from './backoff.js';
import { errorMessage } from './errors.js';

export interface RxBridgeOptions<I, T> {
  /** Names the bridge in logs and metrics. */
  name: string;
  /** Registered queue the batches go to. */
  queue: string;
  /** @defaultValue 'batch' */
  jobName: string;
  /** Turns one item into what is batched; a throw drops that item only (counted, logged). @defaultValue identity */
  mapItem: (item: I) => T;
  /** Builds a job's data from a batch; `seq` numbers batches from 0 in source order. */
  toJobData: (batch: T[], seq: number) => unknown;
  /** Items per job at most. @defaultValue 1000 */
  batchSize: number;
  /** A partial batch is sent after this long. @defaultValue 50 (ms) */
  batchTimeMs: number;
  /** Adds to Redis in flight at once. @defaultValue 4 */
  maxInFlight: number;
  /** Waiting jobs in the queue at which the source is paused. @defaultValue 1000 */
  highWaterMark: number;
  /** Waiting jobs at which a paused source resumes. @defaultValue highWaterMark / 2 */
  lowWaterMark: number;
  /** How often queue depth is read while running. @defaultValue 200 (ms) */
  depthPollMs: number;
  /** Items held in the bridge (not yet in Redis) at which the source is paused. @defaultValue batchSize * maxInFlight * 4 */
  maxBuffered: number;
  /** Called for an item `mapItem` threw on. */
  onItemError?: (item: I, err: unknown) => void;
}

/** A source that can be told to wait: it should stop emitting while `paused$` is true. */
export type PausableSource<I> = (paused$: Observable<boolean>) => Observable<I>;

export interface BridgeResult {
  items: number;
  batches: number;
  itemErrors: number;
}

/**
 * Feeds a queue from an Observable in batches (`bufferTime` by time and count,
 * one job per batch), with a bounded number of adds in flight. Backpressure: when
 * the queue's waiting jobs pass the high-water mark, or items held here pass
 * `maxBuffered`, `paused$` turns true and a pausable source stops; it resumes
 * below the low-water mark. A failing add is retried with backoff, never dropped.
 */
export class RxQueueBridge<I, T = I> {
  readonly options: RxBridgeOptions<I, T>;
  readonly paused$ = new BehaviorSubject<boolean>(false);
  private buffered = 0;
  private depth = 0;
  private addedSincePoll = 0;
  private seq = 0;
  private result: BridgeResult = { items: 0, batches: 0, itemErrors: 0 };
  private subscription: Subscription | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly log: Logger;

  constructor(
    private readonly queues: QueueSet,
    private readonly metrics: Metrics,
    log: Logger,
    opts: Partial<RxBridgeOptions<I, T>> & Pick<RxBridgeOptions<I, T>, 'name' | 'queue' | 'toJobData'>,
  ) {
    const batchSize = opts.batchSize ?? 1000;
    const maxInFlight = opts.maxInFlight ?? 4;
    const highWaterMark = opts.highWaterMark ?? 1000;
    this.options = {
      jobName: 'batch',
      mapItem: (item: I) => item as unknown as T,
      batchTimeMs: 50,
      depthPollMs: 200,
      lowWaterMark: Math.floor(highWaterMark / 2),
      maxBuffered: batchSize * maxInFlight * 4,
      ...opts,
      batchSize,
      maxInFlight,
      highWaterMark,
    };
    const o = this.options;
    const where = `rx bridge ${o.name}`;
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new RangeError(`${where}: batchSize must be an integer >= 1, got ${o.batchSize}`);
    if (!Number.isInteger(o.maxInFlight) || o.maxInFlight < 1) throw new RangeError(`${where}: maxInFlight must be an integer >= 1, got ${o.maxInFlight}`);
    if (!(o.highWaterMark >= 1)) throw new RangeError(`${where}: highWaterMark must be >= 1, got ${o.highWaterMark}`);
    if (!(o.lowWaterMark >= 0 && o.lowWaterMark < o.highWaterMark)) throw new RangeError(`${where}: lowWaterMark must be in [0, highWaterMark), got ${o.lowWaterMark}`);
    if (!(o.maxBuffered >= o.batchSize)) throw new RangeError(`${where}: maxBuffered must be >= batchSize, got ${o.maxBuffered}`);
    queues.definition(o.queue); // unknown queue: fail now, not on the first batch
    this.log = log.child({ bridge: o.name, queue: o.queue });
  }

  get stats(): BridgeResult & { buffered: number; depth: number; paused: boolean } {
    return { ...this.result, buffered: this.buffered, depth: this.depth + this.addedSincePoll, paused: this.paused$.value };
  }

  /** Runs until the source completes and every batch is in Redis, or until `stop()`. */
  run(source: Observable<I> | PausableSource<I>): Promise<BridgeResult> {
    const o = this.options;
    const input$ = typeof source === 'function' ? source(this.paused$.asObservable()) : source;
    const label = { bridge: o.name };
    this.startPolling();
    return new Promise<BridgeResult>((resolve, reject) => {
      const mapped$ = new Observable<T>((sub) =>
        input$.subscribe({
          next: (item) => {
            let value: T;
            try {
              value = o.mapItem(item);
            } catch (err) {
              this.result.itemErrors++;
              this.metrics.bridgeItemErrors.inc(label);
              this.log.warn({ err: errorMessage(err) }, 'item dropped: could not be mapped');
              o.onItemError?.(item, err);
              return;
            }
            this.buffered++;
            this.updateGate();
            sub.next(value);
          },
          error: (err: unknown) => sub.error(err),
          complete: () => sub.complete(),
        }),
      );
      this.subscription = mapped$
        .pipe(
          bufferTime(o.batchTimeMs, null, o.batchSize),
          filter((batch) => batch.length > 0),
          mergeMap((batch) => this.addBatch(batch, this.seq++), o.maxInFlight),
        )
        .subscribe({
          error: (err: unknown) => {
            this.finish();
            reject(err);
          },
          complete: () => {
            this.finish();
            resolve({ ...this.result });
          },
        });
    });
  }

  private async addBatch(batch: T[], seq: number): Promise<void> {
    const o = this.options;
    const data = o.toJobData(batch, seq);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.queues.queue(o.queue).add(o.jobName, data);
        break;
      } catch (err) {
        if (this.stopped) throw err;
        const delay = backoffDelay(attempt, { minMs: 100, maxMs: 5_000, jitter: 0.2 });
        this.log.warn({ err: errorMessage(err), attempt, delayMs: delay, seq }, 'add failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    this.buffered -= batch.length;
    this.addedSincePoll++;
    this.result.items += batch.length;
    this.result.batches++;
    this.metrics.bridgeItems.inc({ bridge: o.name }, batch.length);
    this.updateGate();
  }

  private startPolling(): void {
    const poll = async () => {
      try {
        const waiting = await this.queues.queue(this.options.queue).getWaitingCount();
        this.depth = waiting;
        this.addedSincePoll = 0;
        this.updateGate();
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'queue depth read failed');
      }
      if (!this.stopped) this.pollTimer = setTimeout(() => void poll(), this.options.depthPollMs);
    };
    void poll();
  }

  /** Hysteresis between the two marks keeps the source from flapping. */
  private updateGate(): void {
    const o = this.options;
    const depth = this.depth + this.addedSincePoll;
    const shouldPause = depth >= o.highWaterMark || this.buffered >= o.maxBuffered;
    const mayResume = depth <= o.lowWaterMark && this.buffered < o.maxBuffered / 2;
    const paused = this.paused$.value;
    if (!paused && shouldPause) {
      this.paused$.next(true);
      this.metrics.bridgePaused.set({ bridge: o.name }, 1);
      this.log.debug({ depth, buffered: this.buffered }, 'source paused');
    } else if (paused && mayResume) {
      this.paused$.next(false);
      this.metrics.bridgePaused.set({ bridge: o.name }, 0);
      this.log.debug({ depth, buffered: this.buffered }, 'source resumed');
    }
    this.metrics.bridgeBuffered.set({ bridge: o.name }, this.buffered);
  }

  private finish(): void {
    this.stopped = true;
    clearTimeout(this.pollTimer);
    // Completing the gate releases a source still waiting for a resume.
    this.paused$.complete();
  }

  /** Stops reading the source. Items not yet in Redis are dropped: sources must not acknowledge before a batch lands. */
  stop(): void {
    this.finish();
    this.subscription?.unsubscribe();
  }
}

/**
 * An Observable over an (async) iterable that honours a pause signal: it waits
 * while paused and yields to the event loop every `yieldEvery` items so timers
 * and Redis replies are not starved.
 */
export function pausableFrom<I>(iterable: Iterable<I> | AsyncIterable<I>, yieldEvery = 500): PausableSource<I> {
  return (paused$) =>
    new Observable<I>((sub) => {
      let cancelled = false;
      let paused = false;
      const gate = paused$.subscribe((p) => (paused = p));
      const resumed = () => firstValueFrom(paused$.pipe(filter((p) => !p)));
      (async () => {
        let n = 0;
        for await (const item of iterable as AsyncIterable<I>) {
          if (cancelled) return;
          while (paused && !cancelled) await resumed();
          if (cancelled) return;
          sub.next(item);
          if (++n % yieldEvery === 0) await new Promise<void>((r) => setImmediate(r));
        }
        sub.complete();
      })().catch((err: unknown) => sub.error(err));
      return () => {
        cancelled = true;
        gate.unsubscribe();
      };
    });
}
