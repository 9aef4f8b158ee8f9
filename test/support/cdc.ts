import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { Registry } from 'prom-client';
import { cdcAppliedLsnKey, compareLsn, type CdcApplyBatch, type CdcText } from '../../queues/cdc.js';
import { unpackBatch, type UnpackedBatch } from '../../queues/cdc-rows.js';
import { createLogger } from '../../runtime/index.js';
import { loadCdcConfig, type CdcConfig } from '../../actors/cdc-reader/config.js';
import { cdcMetrics, type CdcMetrics } from '../../actors/cdc-reader/metrics.js';
import { CdcReader } from '../../actors/cdc-reader/reader.js';

export interface ReaderHandle {
  reader: CdcReader;
  queue: Queue;
  metrics: CdcMetrics;
  registry: Registry;
  config: CdcConfig;
  fatal: Error[];
  stop(): Promise<void>;
}

/** A CdcReader in this process, on a real slot, feeding a real BullMQ queue. */
export async function startReader(opts: {
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  env: Record<string, string>;
  afterChunkSelect?: (table: string, rows: CdcText[][]) => Promise<void>;
}): Promise<ReaderHandle> {
  const config = loadCdcConfig({ CDC_ENABLED: 'true', DATABASE_URL: opts.databaseUrl, CDC_ACK_INTERVAL_MS: '100', CDC_FLUSH_INTERVAL_MS: '20', ...opts.env });
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 2 });
  const queue = new Queue('cdc.apply', { connection: redis, prefix: opts.prefix });
  const registry = new Registry();
  const metrics = cdcMetrics(registry);
  const fatal: Error[] = [];
  const reader = new CdcReader({
    config,
    databaseUrl: opts.databaseUrl,
    redis,
    prefix: opts.prefix,
    queue,
    epoch: 1,
    fence: async () => undefined,
    log: createLogger(process.env.TEST_LOG === '1' ? 'debug' : 'silent'),
    metrics,
    onFatal: (err) => fatal.push(err),
    afterChunkSelect: opts.afterChunkSelect,
  });
  const stop = async () => {
    await reader.stop(2000);
    await queue.close();
    redis.disconnect();
  };
  try {
    await reader.start();
  } catch (err) {
    await stop();
    throw err;
  }
  return { reader, queue, metrics, registry, config, fatal, stop };
}

/** Batches in the queue, oldest first, with their packed rows unpacked into values. */
export async function queuedBatches(queue: Queue): Promise<UnpackedBatch[]> {
  const jobs = await queue.getJobs(['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized'], 0, -1, true);
  jobs.sort((a, b) => Number(a.id) - Number(b.id));
  return jobs.map((j) => unpackBatch(j.data as CdcApplyBatch));
}

/**
 * A reference applier in memory, following the contract's rules (queues/cdc.ts):
 * stream changes with `lsn <= stored` are skipped one by one; a snapshot batch is
 * applied whole and leaves the stored LSN alone (as the dual-writer does). Used to
 * check what the reader emits, independently of the DuckDB applier.
 */
export class ModelCopy {
  readonly tables = new Map<string, Map<string, CdcText[]>>();
  stored = '0/0';
  applied = 0;

  apply(batch: CdcApplyBatch): void {
    for (const c of unpackBatch(batch).changes) {
      if (batch.kind === 'stream' && compareLsn(c.lsn, this.stored) <= 0) continue;
      if (c.op === 'truncate') {
        for (const t of c.tables) this.tables.set(t, new Map());
        continue;
      }
      const rel = batch.relations[c.table]!;
      const keyIdx = rel.columns.flatMap((col, i) => (col.isKey ? [i] : []));
      const rows = this.tables.get(c.table) ?? new Map<string, CdcText[]>();
      this.tables.set(c.table, rows);
      if (c.op === 'delete') rows.delete(JSON.stringify(c.key));
      else {
        const key = JSON.stringify(keyIdx.map((i) => c.values[i]));
        const prev = rows.get(key);
        const next = c.values.map((v, i) => (c.unchanged?.includes(i) ? (prev?.[i] ?? null) : v));
        rows.set(key, next);
      }
    }
    if (batch.kind === 'stream' && compareLsn(batch.lastLsn, this.stored) > 0) this.stored = batch.lastLsn;
    this.applied++;
  }

  /** Applies the queue's batches not applied yet and publishes the LSN like the dual-writer does. */
  private tail: Promise<void> = Promise.resolve();

  catchUp(queue: Queue, redis: Redis, prefix: string, slot: string): Promise<void> {
    // One catch-up at a time, so concurrent callers never apply a batch twice.
    const run = this.tail.then(() => this.catchUpNow(queue, redis, prefix, slot));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Every batch applied, in order. */
  readonly seen: CdcApplyBatch[] = [];

  /** Applies the waiting jobs in order and removes them (so the queue's depth falls, as with a real worker). */
  private async catchUpNow(queue: Queue, redis: Redis, prefix: string, slot: string): Promise<void> {
    const jobs = await queue.getJobs(['waiting'], 0, -1, true);
    jobs.sort((a, b) => Number(a.id) - Number(b.id));
    for (const job of jobs) {
      this.apply(job.data as CdcApplyBatch);
      this.seen.push(job.data as CdcApplyBatch);
      await job.remove();
    }
    if (this.stored !== '0/0') await redis.set(cdcAppliedLsnKey(prefix, slot), this.stored);
  }

  rows(table: string): CdcText[][] {
    return [...(this.tables.get(table)?.values() ?? [])].sort(byFirst);
  }
}

function byFirst(a: CdcText[], b: CdcText[]): number {
  return Number(a[0]) - Number(b[0]) || String(a[0]).localeCompare(String(b[0]));
}

/** The table's rows as text, the way the reader spells them, ordered by the first column. */
export async function sourceRows(db: pg.Pool, table: string, columns = '*'): Promise<CdcText[][]> {
  const client = new pg.Client({ connectionString: (db as unknown as { options: { connectionString: string } }).options.connectionString, options: '-c DateStyle=ISO,MDY -c TimeZone=UTC -c extra_float_digits=3' });
  await client.connect();
  try {
    const { rows } = await client.query<CdcText[]>({ text: `SELECT ${columns} FROM ${table}`, rowMode: 'array', types: { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig });
    return rows.sort(byFirst);
  } finally {
    await client.end();
  }
}

export async function dropSlot(db: pg.Pool, slot: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    try {
      await db.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100)); // still active: its walsender is going away
    }
  }
}
