import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { CdcText } from '../../queues/cdc.js';
import type { Logger } from '../../runtime/index.js';
import type { CatalogTable } from './relations.js';
import { setTableState } from './setup.js';
import { selectChunk, snapshotClient } from './snapshot.js';

interface Window {
  table: string;
  chunkId: string;
  /** Between the low and the high watermark in the stream: keys seen are collected. */
  open: boolean;
  seen: Set<string>;
  truncated: boolean;
  rows: CdcText[][] | null;
  done: (emitted: number | PromiseLike<number>) => void;
  fail: (err: Error) => void;
}

/** Puts a chunk in the output at the current stream position; resolves once it is in Redis. */
export type EmitChunk = (table: CatalogTable, rows: CdcText[][], hwLsn: number) => Promise<void>;

export interface BackfillTask {
  table: CatalogTable;
  lastKey: string[] | null;
  rows: number;
}

/**
 * Backfill of tables added after the slot was created, while the stream runs,
 * with DBLog's watermarks (Andreas Andreakis, Ioannis Papapanagiotou, 2019):
 * 1. write a low watermark (`low:<chunk>`) to concord_cdc_watermark (published);
 * 2. select the next chunk of rows by primary key;
 * 3. write a high watermark (`high:<chunk>`);
 * 4. in the stream, keys of that table changed between the two watermarks are
 *    removed from the chunk (the stream has newer values for them), and the
 *    rest is emitted as a `snapshot` batch at the high watermark's position.
 * Progress (last key copied) is stored after each chunk is in Redis, so a
 * restarted reader resumes at the next chunk; watermarks it did not write in this
 * session (replays) are ignored.
 */
export class Backfill {
  private window: Window | undefined;
  private stopped = false;
  private client: pg.Client | undefined;

  constructor(
    private readonly databaseUrl: string,
    private readonly pool: pg.Pool,
    private readonly slot: string,
    private readonly chunkSize: number,
    private readonly emit: EmitChunk,
    private readonly log: Logger,
    private readonly afterSelect?: (table: string, rows: CdcText[][]) => Promise<void>,
  ) {}

  get watchedTable(): string | null {
    return this.window?.table ?? null;
  }

  get busy(): boolean {
    return this.window !== undefined;
  }

  seenKey(key: string): void {
    if (this.window?.open) this.window.seen.add(key);
  }

  truncated(table: string): void {
    if (this.window?.open && this.window.table === table) this.window.truncated = true;
  }

  /** Called from the stream sink at the watermark's position (synchronously). */
  watermark(mark: string, lsn: number, tableOf: (name: string) => CatalogTable): void {
    const w = this.window;
    if (!w) return;
    if (mark === `low:${w.chunkId}`) w.open = true;
    else if (mark === `high:${w.chunkId}` && w.open && w.rows) {
      const t = tableOf(w.table);
      const keyIdx = t.columns.flatMap((c, i) => (c.isKey ? [i] : []));
      const rows = w.truncated ? [] : w.rows.filter((r) => !w.seen.has(keyIdx.map((i) => r[i]).join('\u0000')));
      this.window = undefined;
      w.done(this.emit(t, rows, lsn).then(() => rows.length));
    }
  }

  async run(tasks: BackfillTask[]): Promise<void> {
    for (const task of tasks) {
      let { lastKey, rows } = task;
      const t = task.table;
      this.log.info({ table: t.table, from: lastKey }, 'backfill started');
      for (;;) {
        if (this.stopped) return;
        const chunk = await this.chunk(t, lastKey);
        if (chunk.selected.length > 0) lastKey = t.columns.flatMap((c, i) => (c.isKey ? [chunk.selected.at(-1)![i] ?? ''] : []));
        rows += chunk.emitted;
        const finished = chunk.selected.length < this.chunkSize;
        await setTableState(this.pool, this.slot, t.table, finished ? 'streaming' : 'backfill', { lastKey, rows });
        if (finished) break;
      }
      this.log.info({ table: t.table, rows }, 'backfill finished');
    }
  }

  private async chunk(t: CatalogTable, afterKey: string[] | null): Promise<{ selected: CdcText[][]; emitted: number }> {
    const chunkId = randomUUID();
    const emitted = new Promise<number>((done, fail) => {
      this.window = { table: t.table, chunkId, open: false, seen: new Set(), truncated: false, rows: null, done, fail };
    });
    // stop() may reject this while the chunk is still being selected, before it is
    // awaited below; the await still throws, this only keeps that from counting as unhandled.
    emitted.catch(() => undefined);
    this.client ??= await snapshotClient(this.databaseUrl);
    const mark = (m: string) =>
      this.client!.query(`INSERT INTO concord_cdc_watermark (slot, mark, at) VALUES ($1, $2, now()) ON CONFLICT (slot) DO UPDATE SET mark = EXCLUDED.mark, at = now()`, [this.slot, m]);
    await mark(`low:${chunkId}`);
    const selected = await selectChunk(this.client, t, afterKey, this.chunkSize);
    this.window!.rows = selected;
    await this.afterSelect?.(t.table, selected);
    await mark(`high:${chunkId}`);
    return { selected, emitted: await emitted };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.window?.fail(new Error('reader stopped'));
    this.window = undefined;
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}
