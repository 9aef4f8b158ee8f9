/**
 * Group commit for PostgreSQL round trips: calls that arrive while earlier batches of the
 * same shape are in flight wait and then go together as one statement (one round trip,
 * one commit). A call that finds nothing in flight goes on the next turn of the event
 * loop with whatever else arrived in that turn, so a lone call waits for nothing.
 *
 * `run` gets items of one shape, at most one per `key` (two writes of one saga never
 * share a statement: the second waits for the next batch), and returns one result per
 * item, in order: a value, or an Error for that item alone. When `run` itself throws (a
 * deadlock, a lost connection), each item is retried alone through `runOne`, so one bad
 * item fails only its own caller.
 */
export interface BatcherOptions<I, O> {
  run: (items: I[]) => Promise<Array<O | Error>>;
  runOne: (item: I) => Promise<O>;
  shape: (item: I) => string;
  /** Items with the same key never share a batch (none: any items may). */
  key?: ((item: I) => string) | undefined;
  maxBatch: number;
  /** Batches of one shape in flight at once. */
  maxInFlight: number;
}

interface Waiting<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class Batcher<I, O> {
  private readonly waiting = new Map<string, Array<Waiting<I, O>>>();
  private readonly inFlight = new Map<string, number>();
  private readonly scheduled = new Set<string>();

  constructor(private readonly o: BatcherOptions<I, O>) {}

  add(item: I): Promise<O> {
    const shape = this.o.shape(item);
    return new Promise<O>((resolve, reject) => {
      let list = this.waiting.get(shape);
      if (!list) this.waiting.set(shape, (list = []));
      list.push({ item, resolve, reject });
      this.schedule(shape);
    });
  }

  private schedule(shape: string): void {
    if (this.scheduled.has(shape) || (this.inFlight.get(shape) ?? 0) >= this.o.maxInFlight) return;
    this.scheduled.add(shape);
    setImmediate(() => {
      this.scheduled.delete(shape);
      this.flush(shape);
    });
  }

  private flush(shape: string): void {
    const list = this.waiting.get(shape);
    if (!list || list.length === 0 || (this.inFlight.get(shape) ?? 0) >= this.o.maxInFlight) return;
    const batch: Array<Waiting<I, O>> = [];
    const keys = new Set<string>();
    const rest: Array<Waiting<I, O>> = [];
    for (const w of list) {
      const k = this.o.key?.(w.item);
      if (batch.length < this.o.maxBatch && (k === undefined || !keys.has(k))) {
        if (k !== undefined) keys.add(k);
        batch.push(w);
      } else rest.push(w);
    }
    if (rest.length === 0) this.waiting.delete(shape);
    else this.waiting.set(shape, rest);
    this.inFlight.set(shape, (this.inFlight.get(shape) ?? 0) + 1);
    void this.send(batch).finally(() => {
      this.inFlight.set(shape, this.inFlight.get(shape)! - 1);
      if (this.waiting.get(shape)?.length) this.flush(shape);
    });
    // Another batch may go at once, up to maxInFlight, if more are waiting.
    if (rest.length > 0) this.schedule(shape);
  }

  private async send(batch: Array<Waiting<I, O>>): Promise<void> {
    let results: Array<O | Error>;
    try {
      results = batch.length === 1 ? [await this.o.runOne(batch[0]!.item)] : await this.o.run(batch.map((w) => w.item));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // The statement failed as a whole (nothing of it committed): each item goes alone.
      await Promise.all(batch.map((w) => this.o.runOne(w.item).then(w.resolve, w.reject)));
      return;
    }
    batch.forEach((w, i) => {
      const r = results[i]!;
      if (r instanceof Error) w.reject(r);
      else w.resolve(r);
    });
  }
}
