import pg from 'pg';
import { backoffDelay, createLogger, errorMessage, type Logger } from '../runtime/index.js';
import { LogReader } from './log-reader.js';
import { checkProjection, relevant, type Projection } from './projection.js';
import type { QueryCache } from './query-cache.js';
import type { StoredEvent } from './types.js';
import { Upcasters } from './upcasters.js';

/** Advisory lock class of projection runners ("prjn"): one runner per projection across processes. */
const LOCK_CLASS = 0x70726a6e;

export interface ProjectionRunnerOptions {
  connectionString: string;
  projection: Projection;
  upcasters?: Upcasters;
  /** Invalidated with the projection's `cacheTags` after each committed batch. */
  cache?: QueryCache;
  /** Events per transaction. @defaultValue 1000 */
  batchSize?: number;
  /** Idle poll when caught up. @defaultValue 100 (ms) */
  pollMs?: number;
  /** Tries of a failing event before its dead letter. @defaultValue 3 */
  maxAttempts?: number;
  log?: Logger;
  /** Told after each committed batch (metrics). */
  onBatch?: (applied: number) => void;
}

/** The checkpoint row changed under the batch (a rebuild was requested): the batch rolled back, the next step sees why. */
class CheckpointMovedError extends Error {}

type Row = { status: 'running' | 'rebuilding' | 'stopped'; checkpoint: number; rebuildFrom: number | null };

/**
 * Keeps one async projection up to date from the global log. The runner holds
 * a session advisory lock on a dedicated connection and does all its writes
 * on it, so exactly one runner works a projection; others wait as standby and
 * take over when the holder's session ends (a killed process included).
 *
 * Each batch is one transaction: the read model changes and the checkpoint
 * commit together, so an event is applied exactly once. A rebuild resets the
 * read model and the checkpoint in one transaction and then replays as normal
 * batches: killed midway, it resumes from its last committed batch. During a
 * rebuild the live projection is paused in place: queries see the read model
 * refilling (status `rebuilding`).
 */
export class ProjectionRunner {
  readonly name: string;
  private readonly opts: Required<Omit<ProjectionRunnerOptions, 'cache' | 'onBatch'>> & Pick<ProjectionRunnerOptions, 'cache' | 'onBatch'>;
  private client: pg.Client | undefined;
  private locked = false;
  private running = false;
  private loopDone: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private reader = new LogReader();
  private last = { checkpoint: 0, safe: 0, head: 0 };

  constructor(options: ProjectionRunnerOptions) {
    this.opts = { upcasters: new Upcasters(), batchSize: 1000, pollMs: 100, maxAttempts: 3, log: createLogger('silent'), ...options };
    checkProjection(options.projection);
    this.name = options.projection.name;
    const { batchSize, pollMs, maxAttempts } = this.opts;
    if (!(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 100_000)) throw new RangeError(`projection ${this.name}: batchSize must be an integer 1..100000, got ${batchSize}`);
    if (!(Number.isInteger(pollMs) && pollMs >= 1)) throw new RangeError(`projection ${this.name}: pollMs must be an integer >= 1, got ${pollMs}`);
    if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) throw new RangeError(`projection ${this.name}: maxAttempts must be an integer >= 1, got ${maxAttempts}`);
  }

  describe(): Record<string, unknown> {
    return { role: this.locked ? 'active' : 'standby', ...this.last };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wakeUp?.();
    await this.loopDone;
    await this.disconnect();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    });
  }

  private async disconnect(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.locked = false;
    await c?.end().catch(() => undefined);
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.running) {
      try {
        if (!(await this.acquire())) {
          await this.sleep(Math.max(1_000, this.opts.pollMs));
          continue;
        }
        const progressed = await this.step(this.client!);
        failures = 0;
        if (!progressed) await this.sleep(this.opts.pollMs);
      } catch (err) {
        if (err instanceof CheckpointMovedError) continue;
        this.opts.log.error({ projection: this.name, err: errorMessage(err) }, 'projection batch failed; reconnecting');
        await this.disconnect();
        await this.sleep(backoffDelay(failures++, { minMs: 250, maxMs: 15_000, jitter: 0.3 }));
      }
    }
  }

  /** Connects, takes the projection's lock, sets its read model up and registers it. False: another runner holds it. */
  private async acquire(): Promise<boolean> {
    if (this.locked) return true;
    if (!this.client) {
      const c = new pg.Client({ connectionString: this.opts.connectionString, connectionTimeoutMillis: 5_000 });
      c.on('error', () => undefined); // surfaced by the next query, which ends this session
      await c.connect();
      this.client = c;
    }
    const c = this.client;
    const got = (await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [LOCK_CLASS, this.name])).rows[0]!.ok;
    if (!got) return false;
    this.locked = true;
    const p = this.opts.projection;
    await this.tx(c, async () => {
      await p.setup?.(c);
      await c.query(
        `INSERT INTO concord_projections (name, failure_policy, partial_reset) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET failure_policy = EXCLUDED.failure_policy, partial_reset = EXCLUDED.partial_reset`,
        [this.name, p.failurePolicy ?? 'stop', p.partialReset ?? false],
      );
    });
    this.opts.log.info({ projection: this.name }, 'projection runner active');
    return true;
  }

  private async tx<T>(c: pg.Client, work: () => Promise<T>): Promise<T> {
    await c.query('BEGIN');
    try {
      const r = await work();
      await c.query('COMMIT');
      return r;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  private async readRow(c: pg.Client): Promise<Row> {
    const r = (await c.query<{ status: Row['status']; checkpoint: string; from: string | null }>('SELECT status, checkpoint::text AS checkpoint, rebuild_requested_from::text AS from FROM concord_projections WHERE name = $1', [this.name])).rows[0];
    if (!r) throw new Error(`projection ${this.name} is not registered`);
    return { status: r.status, checkpoint: Number(r.checkpoint), rebuildFrom: r.from === null ? null : Number(r.from) };
  }

  /** One unit of work; false when there was nothing to do. */
  private async step(c: pg.Client): Promise<boolean> {
    const row = await this.readRow(c);
    if (row.rebuildFrom !== null) {
      await this.reset(c, row.rebuildFrom);
      return true;
    }
    if (row.status === 'stopped') return false;
    const { safe, head } = await this.reader.safePosition(c);
    this.last = { checkpoint: row.checkpoint, safe, head };
    if (row.checkpoint >= safe) return false;
    const events = await LogReader.read(c, row.checkpoint, safe, this.opts.batchSize, this.opts.upcasters);
    // A short batch reached `safe`: positions up to it are final, gaps included.
    const next = events.length < this.opts.batchSize ? safe : events[events.length - 1]!.position;
    await this.applyBatch(c, row.checkpoint, next, events);
    return true;
  }

  private async reset(c: pg.Client, from: number): Promise<void> {
    await this.tx(c, async () => {
      await this.opts.projection.reset(c, from);
      await c.query('DELETE FROM concord_projection_dead_letters WHERE projection = $1 AND position > $2', [this.name, from]);
      await c.query(
        `UPDATE concord_projections p SET checkpoint = $2, rebuild_requested_from = NULL, rebuild_started_at = now(), last_error = NULL, events_applied = 0, updated_at = now(),
                rebuild_target = h.head, status = CASE WHEN h.head > $2 THEN 'rebuilding' ELSE 'running' END
           FROM (SELECT coalesce(max(position), 0) AS head FROM concord_events) h WHERE p.name = $1`,
        [this.name, from],
      );
    });
    this.opts.log.info({ projection: this.name, fromPosition: from }, 'projection rebuild started');
    await this.invalidate([`projection:${this.name}`]);
  }

  /** Moves the checkpoint from `from` to `to`, refusing if it moved meanwhile (a second writer). */
  private async advance(c: pg.Client, from: number, to: number, applied: number, stopError?: string): Promise<void> {
    const { rowCount } = await c.query(
      `UPDATE concord_projections SET checkpoint = $3, events_applied = events_applied + $4, updated_at = now(),
              status = CASE WHEN $5::text IS NOT NULL THEN 'stopped' WHEN status = 'rebuilding' AND $3 >= rebuild_target THEN 'running' ELSE status END,
              rebuild_target = CASE WHEN status = 'rebuilding' AND $3 >= rebuild_target AND $5::text IS NULL THEN NULL ELSE rebuild_target END,
              last_error = coalesce($5::text, last_error)
        WHERE name = $1 AND checkpoint = $2 AND rebuild_requested_from IS NULL`,
      [this.name, from, to, applied, stopError ?? null],
    );
    if (!rowCount) throw new CheckpointMovedError(`projection ${this.name}: checkpoint moved or a rebuild was requested during the batch; batch rolled back`);
  }

  private async applyBatch(c: pg.Client, from: number, to: number, events: StoredEvent[]): Promise<void> {
    const p = this.opts.projection;
    const rel = events.filter((e) => relevant(p, e));
    try {
      await this.tx(c, async () => {
        if (rel.length > 0) {
          if (p.applyBatch) await p.applyBatch(c, rel);
          else for (const e of rel) await p.apply(c, e);
        }
        await this.advance(c, from, to, rel.length);
      });
    } catch (err) {
      if (err instanceof CheckpointMovedError) return;
      // Connection gone: nothing to learn from single events; the loop reconnects.
      await c.query('SELECT 1');
      this.opts.log.warn({ projection: this.name, err: errorMessage(err) }, 'batch failed; applying its events one by one');
      await this.applyOneByOne(c, from, to, events);
      return;
    }
    this.opts.onBatch?.(rel.length);
    await this.invalidate(rel.flatMap((e) => p.cacheTags?.(e) ?? []));
  }

  private async applyOneByOne(c: pg.Client, from: number, to: number, events: StoredEvent[]): Promise<void> {
    const p = this.opts.projection;
    const done: StoredEvent[] = [];
    await this.tx(c, async () => {
      let last = from;
      for (const e of events) {
        if (relevant(p, e)) {
          let error: unknown;
          for (let attempt = 1; attempt <= this.opts.maxAttempts; attempt++) {
            await c.query('SAVEPOINT concord_event');
            try {
              await p.apply(c, e);
              await c.query('RELEASE SAVEPOINT concord_event');
              error = undefined;
              break;
            } catch (err) {
              await c.query('ROLLBACK TO SAVEPOINT concord_event');
              error = err;
            }
          }
          if (error !== undefined) {
            const reason = errorMessage(error).slice(0, 2000);
            await c.query(
              `INSERT INTO concord_projection_dead_letters (projection, position, event_id, stream_id, event_type, reason, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (projection, position) DO UPDATE SET reason = EXCLUDED.reason, attempts = concord_projection_dead_letters.attempts + EXCLUDED.attempts, created_at = now()`,
              [this.name, e.position, e.id, e.streamId, e.type, reason, this.opts.maxAttempts],
            );
            const policy = p.failurePolicy ?? 'stop';
            this.opts.log.error({ projection: this.name, position: e.position, eventId: e.id, eventType: e.type, policy, err: reason }, 'projection event dead-lettered');
            if (policy === 'stop') {
              await this.advance(c, from, last, done.length, `event at position ${e.position} (${e.type}) failed: ${reason}`);
              return;
            }
          } else {
            done.push(e);
          }
        }
        last = e.position;
      }
      await this.advance(c, from, to, done.length);
    });
    this.opts.onBatch?.(done.length);
    await this.invalidate(done.flatMap((e) => p.cacheTags?.(e) ?? []));
  }

  private async invalidate(tags: string[]): Promise<void> {
    if (!this.opts.cache || tags.length === 0) return;
    // The batch is committed; a cache outage must not replay it. Entries expire by TTL meanwhile.
    await this.opts.cache.invalidate(tags).catch((err: unknown) => this.opts.log.warn({ projection: this.name, err: errorMessage(err) }, 'query cache invalidation failed'));
  }
}
