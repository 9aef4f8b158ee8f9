import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { cdcAppliedLsnKey, type CdcApplyBatch, type CdcChange, type CdcRelation, type CdcText } from '../../queues/cdc.js';
import { FIELD_SEP, packedWidth, packRow } from '../../queues/cdc-rows.js';
import { createPgPool, errorMessage, type Logger } from '../../runtime/index.js';
import { Backfill, type BackfillTask } from './backfill.js';
import { TxBatcher, type DecodedChange, type ReadyBatch } from './batcher.js';
import type { CdcConfig } from './config.js';
import { lsnToString, parseLsn } from './lsn.js';
import type { CdcMetrics } from './metrics.js';
import { PgoutputDecoder } from './pgoutput.js';
import { loadCatalog, RelationTracker, type CatalogTable, type ShapeVerdict, type TableState } from './relations.js';
import { ReplicationConnection } from './replication.js';
import { BatchSender } from './sender.js';
import { ensurePublication, preflight, readTableStates, setTableState, slotInfo } from './setup.js';
import { HEARTBEAT_PREFIX, StreamSink } from './sink.js';
import { copyTablesAtSnapshot, relationOf, snapshotClient } from './snapshot.js';
import { readerStatusKey, type ReaderStatus } from './status.js';

export interface ReaderOptions {
  config: CdcConfig;
  databaseUrl: string;
  redis: Redis;
  prefix: string;
  queue: Queue;
  epoch: number;
  /** Throws when this reader's lease epoch is no longer current. */
  fence: () => Promise<void>;
  log: Logger;
  metrics: CdcMetrics;
  /** The reader cannot go on (stream ended, lease lost, decode error): the actor fails. */
  onFatal: (err: Error) => void;
  /** Test seam: runs after a backfill chunk was selected, before its high watermark is written. */
  afterChunkSelect?: (table: string, rows: CdcText[][]) => Promise<void>;
}

/** Decoded batches held in memory (not yet in Redis) at which reading pauses, and resumes. */
const BACKLOG_PAUSE = 16;
const BACKLOG_RESUME = 4;
const DEPTH_POLL_MS = 100;
const STATUS_EVERY_MS = 1000;

/**
 * One slot's reader: preflight, publication and slot, initial snapshot or
 * backfill, then the stream, batched on transaction boundaries into `cdc.apply`,
 * acknowledged only up to what the applier has committed.
 */
export class CdcReader {
  private pool!: pg.Pool;
  private repl: ReplicationConnection | undefined;
  private tracker!: RelationTracker;
  private batcher!: TxBatcher;
  private sink!: StreamSink;
  private sender!: BatchSender;
  private backfill!: Backfill;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly quarantined = new Map<string, string>();
  private stopping = false;
  private depth = 0;
  private received = 0;
  private idleLsn = 0;
  private lastAcked = 0;
  private applied = 0;
  private heartbeatLagMs = 0;
  private phase: ReaderStatus['phase'] = 'starting';
  private consistentPoint: string | null = null;

  constructor(private readonly o: ReaderOptions) {}

  async start(): Promise<void> {
    const { config, log } = this.o;
    this.pool = createPgPool(this.o.databaseUrl, 3);
    const pf = await preflight(this.pool);
    const addedToPublication = await ensurePublication(this.pool, config, pf.role);
    const states = await readTableStates(this.pool, config.slot);
    const slot = await slotInfo(this.pool, config.slot);
    const catalog = await loadCatalog(this.pool, config.tables);
    for (const [t, s] of states) if (s.state === 'quarantined' && config.tables.includes(t)) this.quarantined.set(t, s.reason ?? 'quarantined');
    this.o.metrics.quarantined.set(this.quarantined.size);
    this.tracker = new RelationTracker(catalog);
    this.sender = new BatchSender(
      this.o.queue,
      this.o.fence,
      log,
      this.o.onFatal,
      () => this.tracker.resolveTypes(this.pool),
      () => this.updatePause(),
    );
    this.batcher = new TxBatcher(config.maxBatchSize, (b) => this.pushStream(b));
    const monitored = new Set(config.tables.filter((t) => !this.quarantined.has(t)));
    const tableOf = (name: string) => catalog.get(name)!;
    this.backfill = new Backfill(this.o.databaseUrl, this.pool, config.slot, config.snapshotChunkSize, (t, rows, lsn) => this.emitChunk(t, rows, lsn), log, this.o.afterChunkSelect);
    const bf = this.backfill;
    this.sink = new StreamSink(config.slot, monitored, this.tracker, this.batcher, {
      relation: (state, verdict) => this.onRelation(state, verdict),
      watermark: (mark, lsn) => this.backfill.watermark(mark, lsn, tableOf),
      heartbeat: (lsn, writtenMs) => {
        this.idleLsn = Math.max(this.idleLsn, lsn);
        this.heartbeatLagMs = Math.max(0, Date.now() - writtenMs);
      },
      get watchedTable() {
        return bf.watchedTable;
      },
      seenKey: (key) => this.backfill.seenKey(key),
      truncated: (table) => this.backfill.truncated(table),
    });

    let tasks: BackfillTask[] = [];
    const redo = !slot.exists || [...states.values()].some((s) => s.state === 'snapshot');
    if (redo) {
      await this.initialSnapshot(slot.exists, [...monitored].map(tableOf));
    } else {
      this.consistentPoint = slot.confirmedFlush;
      tasks = [...monitored]
        .filter((t) => !states.has(t) || states.get(t)!.state === 'backfill')
        .map((t) => ({ table: tableOf(t), lastKey: states.get(t)?.last_key ?? null, rows: Number(states.get(t)?.rows_copied ?? 0) }));
      for (const t of tasks) await setTableState(this.pool, config.slot, t.table.table, 'backfill', { lastKey: t.lastKey, rows: t.rows });
    }
    this.lastAcked = parseLsn((await slotInfo(this.pool, config.slot)).confirmedFlush ?? '0/0');
    await this.stream();
    if (tasks.length > 0) {
      log.info({ tables: tasks.map((t) => t.table.table), addedToPublication }, 'tables added after the slot was created: backfilling while streaming');
      this.backfill.run(tasks).catch((err: unknown) => this.fatal(err, 'backfill failed'));
    }
  }

  private fatal(err: unknown, what: string): void {
    if (this.stopping) return;
    this.o.log.error({ err: errorMessage(err) }, what);
    this.o.onFatal(err instanceof Error ? err : new Error(String(err)));
  }

  /** Drops (when redoing) and creates the slot, and copies every table at its exported snapshot. */
  private async initialSnapshot(dropFirst: boolean, tables: CatalogTable[]): Promise<void> {
    const { config, log } = this.o;
    this.phase = 'snapshot';
    const repl = new ReplicationConnection(this.o.databaseUrl);
    await repl.connect();
    const client = await snapshotClient(this.o.databaseUrl);
    try {
      if (dropFirst) {
        log.warn({ slot: config.slot }, 'an earlier initial snapshot did not finish: dropping the slot and starting over');
        await repl.dropSlot(config.slot);
      }
      for (const t of tables) await setTableState(this.pool, config.slot, t.table, 'snapshot', { rows: 0 });
      const { consistentPoint, snapshotName } = await repl.createSlot(config.slot, true);
      const lsn = lsnToString(consistentPoint);
      this.consistentPoint = lsn;
      log.info({ slot: config.slot, consistentPoint: lsn, tables: tables.map((t) => t.table) }, 'slot created; copying the tables at its snapshot');
      const copied = await copyTablesAtSnapshot(client, snapshotName!, tables, config.snapshotChunkSize, lsn, (changes, relation) =>
        this.sendSnapshot(changes, { [relation.table]: relation }, consistentPoint),
      );
      for (const t of tables) await setTableState(this.pool, config.slot, t.table, 'streaming', { rows: copied.get(t.table) ?? 0 });
      log.info({ rows: Object.fromEntries(copied) }, 'initial snapshot queued');
    } finally {
      await client.end().catch(() => undefined);
      await repl.end();
    }
  }

  /** Queues a snapshot batch and waits until it is in Redis and the queue has room. */
  private async sendSnapshot(changes: CdcChange[], relations: Record<string, CdcRelation>, lsn: number): Promise<void> {
    await new Promise<void>((onSent) => this.sender.push({ batch: this.batch('snapshot', lsn, relations, changes), lastLsn: lsn, firstCommitMs: Date.now(), onSent }));
    this.o.metrics.batches.inc({ kind: 'snapshot' });
    while (!this.stopping && (await this.o.queue.getWaitingCount()) >= this.o.config.maxQueuedBatches) await sleep(DEPTH_POLL_MS);
  }

  private batch(kind: CdcApplyBatch['kind'], lsn: number, relations: Record<string, CdcRelation>, changes: DecodedChange[]): CdcApplyBatch {
    return { slot: this.o.config.slot, epoch: this.o.epoch, kind, lastLsn: lsnToString(lsn), relations, changes };
  }

  /** A backfill chunk at its high watermark: everything decoded before it goes first. */
  private emitChunk(t: CatalogTable, rows: CdcText[][], hwLsn: number): Promise<void> {
    this.batcher.flush();
    const lsn = lsnToString(hwLsn);
    const changes: CdcChange[] = rows.map((values) => ({ op: 'upsert', table: t.table, lsn, values }));
    const relation = this.tracker.get(t.table)?.relation ?? relationOf(t);
    this.o.metrics.batches.inc({ kind: 'snapshot' });
    return new Promise<void>((onSent) => this.sender.push({ batch: this.batch('snapshot', hwLsn, { [t.table]: relation }, changes), lastLsn: hwLsn, firstCommitMs: Date.now(), onSent }));
  }

  private pushStream(b: ReadyBatch): void {
    for (const c of b.changes) {
      // Rows decoded before an ADD COLUMN in the same batch are shorter than the
      // batch's relation: the new columns are marked unchanged, not NULL.
      if (b.shapeChanged && c.op === 'upsert') padRow(c, b.relations[c.table]!.columns.length);
    }
    this.sender.push({ batch: this.batch('stream', b.lastLsn, b.relations, b.changes), lastLsn: b.lastLsn, firstCommitMs: b.firstCommitMs });
    this.o.metrics.batches.inc({ kind: 'stream' });
    this.o.metrics.changes.inc(b.changes.length);
    if (this.sender.backlog >= BACKLOG_PAUSE) this.repl?.pause();
  }

  private onRelation(state: TableState, verdict: ShapeVerdict): void {
    const { log, metrics } = this.o;
    if (verdict.kind === 'added') log.warn({ table: state.table, columns: verdict.columns }, 'columns added to a monitored table: the new shape goes to the applier');
    if (state.quarantined && !this.quarantined.has(state.table)) {
      this.quarantined.set(state.table, state.quarantined);
      const kind = verdict.kind === 'incompatible' ? (verdict.reason.includes('type') ? 'retyped_column' : 'dropped_or_renamed_column') : 'no_primary_key';
      metrics.schemaErrors.inc({ kind });
      metrics.quarantined.set(this.quarantined.size);
      log.error(
        { table: state.table, reason: state.quarantined, alert: 'cdc_schema_drift' },
        `CDC: ${state.table} can no longer be mirrored (${state.quarantined}); its changes are held back from the copy. ` +
          'Fix: drop its copy in DuckDB, then delete its row from concord_cdc_tables and restart the reader to backfill it again.',
      );
      void setTableState(this.pool, this.o.config.slot, state.table, 'quarantined', { reason: state.quarantined }).catch((err: unknown) =>
        log.error({ err: errorMessage(err) }, 'could not record the quarantine'),
      );
    }
  }

  private async stream(): Promise<void> {
    const { config, log } = this.o;
    this.phase = 'streaming';
    const repl = (this.repl = new ReplicationConnection(this.o.databaseUrl, config.readPauseMs));
    await repl.connect();
    const decoder = new PgoutputDecoder(this.sink);
    const ended = repl.start(config.slot, config.publication, {
      data: (buf, at, walStart) => {
        if (walStart > this.received) this.received = walStart;
        try {
          decoder.decode(buf, at);
        } catch (err) {
          repl.pause();
          this.fatal(err, 'decoding the replication stream failed');
        }
      },
      keepalive: (walEnd, replyNow) => {
        if (walEnd > this.received) this.received = walEnd;
        this.idleLsn = Math.max(this.idleLsn, walEnd);
        if (replyNow) void this.ack();
      },
    });
    ended.then(
      () => this.fatal(new Error('the replication stream ended'), 'replication stream ended'),
      (err: unknown) => this.fatal(err, 'replication stream failed'),
    );
    const every = (ms: number, fn: () => Promise<void> | void) => {
      const t = setInterval(() => void Promise.resolve(fn()).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'cdc reader tick failed')), ms);
      this.timers.push(t);
    };
    every(config.flushIntervalMs, () => this.batcher.flush());
    every(config.ackIntervalMs, () => this.ack());
    every(config.heartbeatIntervalMs, () => this.heartbeat());
    every(DEPTH_POLL_MS, () => this.pollDepth());
    every(STATUS_EVERY_MS, () => this.publishStatus());
    this.o.metrics.setLagSource({ lagBytes: () => this.lagBytes(), lagSeconds: () => this.lagSeconds() });
    await this.heartbeat();
    log.info({ slot: config.slot, publication: config.publication, from: lsnToString(this.lastAcked) }, 'streaming from the slot');
  }

  private async pollDepth(): Promise<void> {
    this.depth = await this.o.queue.getWaitingCount();
    this.updatePause();
  }

  /** Pauses or resumes the socket from the queue depth (last poll) and the batches held here. */
  private updatePause(): void {
    const { maxQueuedBatches } = this.o.config;
    const repl = this.repl;
    if (!repl) return;
    if (!repl.isPaused && (this.depth >= maxQueuedBatches || this.sender.backlog >= BACKLOG_PAUSE)) repl.pause();
    else if (repl.isPaused && this.depth <= maxQueuedBatches / 2 && this.sender.backlog <= BACKLOG_RESUME) repl.resume();
    this.o.metrics.paused.set(repl.isPaused ? 1 : 0);
    this.o.metrics.queuedBatches.set(this.sender.backlog);
  }

  /**
   * Confirms to the slot what DuckDB has committed (the applier's LSN in Redis),
   * never more. When nothing at all is pending (no open transaction, nothing
   * batched, queued or unapplied), the position of the last keepalive/heartbeat
   * is confirmed too, so a quiet publication does not pin WAL.
   */
  async ack(): Promise<void> {
    const repl = this.repl;
    if (!repl) return;
    const raw = await this.o.redis.get(cdcAppliedLsnKey(this.o.prefix, this.o.config.slot));
    if (raw) this.applied = parseLsn(raw);
    this.sender.applied(this.applied);
    let flush = Math.max(this.applied, this.lastAcked);
    const idle = this.sender.inFlight.length === 0 && this.sender.backlog === 0 && this.batcher.size === 0 && !this.batcher.inTransaction && !this.backfill.busy;
    if (idle && this.idleLsn > flush) flush = this.idleLsn;
    this.lastAcked = flush;
    if (!this.stopping) repl.sendStatus(Math.max(this.received, flush), flush);
  }

  private async heartbeat(): Promise<void> {
    await this.pool.query('SELECT pg_logical_emit_message(false, $1, $2)', [HEARTBEAT_PREFIX, `${this.o.config.slot}:${Date.now()}`]);
  }

  private async lagBytes(): Promise<number | null> {
    const { rows } = await this.pool.query<{ lag: string | null }>(
      'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag FROM pg_replication_slots WHERE slot_name = $1',
      [this.o.config.slot],
    );
    return rows[0]?.lag == null ? null : Number(rows[0].lag);
  }

  private lagSeconds(): number {
    const oldest = this.sender.oldestPendingCommitMs();
    return (oldest === null ? this.heartbeatLagMs : Math.max(0, Date.now() - oldest)) / 1000;
  }

  status(): ReaderStatus {
    return {
      phase: this.phase,
      epoch: this.o.epoch,
      consistentPoint: this.consistentPoint,
      receivedLsn: lsnToString(this.received),
      confirmedLsn: lsnToString(this.lastAcked),
      appliedLsn: lsnToString(this.applied),
      lagSeconds: this.lagSeconds(),
      paused: this.repl?.isPaused ?? false,
      pendingBatches: this.sender?.backlog ?? 0,
      unappliedBatches: this.sender?.inFlight.length ?? 0,
      batchesSent: this.sender?.sent ?? 0,
      changesRead: this.sink?.changes ?? 0,
      transactionsRead: this.sink?.transactions ?? 0,
      backfilling: this.backfill?.watchedTable ?? null,
      quarantined: Object.fromEntries(this.quarantined),
      updatedAt: new Date().toISOString(),
    };
  }

  private async publishStatus(): Promise<void> {
    await this.o.redis.set(readerStatusKey(this.o.prefix, this.o.config.slot), JSON.stringify(this.status()), 'PX', STATUS_EVERY_MS * 10);
  }

  async stop(timeoutMs: number): Promise<void> {
    this.batcher?.flush();
    const drained = this.sender ? Promise.race([this.sender.drain(), sleep(Math.max(100, timeoutMs - 500))]) : Promise.resolve();
    await drained;
    await this.ack().catch(() => undefined);
    this.stopping = true;
    this.phase = 'stopped';
    for (const t of this.timers) clearInterval(t);
    this.o.metrics.setLagSource(undefined);
    this.sender?.stop();
    await this.backfill?.stop();
    await this.repl?.end();
    await this.pool?.end().catch(() => undefined);
  }
}

/**
 * A row decoded before an ADD COLUMN, in a batch that carries the new shape, gets the new
 * columns as unchanged (not NULL: the applier leaves the copy's value, which ADD COLUMN set).
 */
export function padRow(c: Extract<DecodedChange, { op: 'upsert' }>, n: number): void {
  const width = 'row' in c ? packedWidth(c.row) : c.values.length;
  if (width >= n) return;
  const unchanged = c.unchanged ? [...c.unchanged] : [];
  for (let i = width; i < n; i++) unchanged.push(i);
  if ('row' in c) c.row += FIELD_SEP + packRow(new Array<CdcText>(n - width).fill(null));
  else for (let i = width; i < n; i++) c.values.push(null);
  c.unchanged = unchanged;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
