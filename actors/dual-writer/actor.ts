import { DelayedError, UnrecoverableError, WaitingError, type Job, type Queue } from 'bullmq';
import type pg from 'pg';
import { batchSize, cdcApplyQueue, compareLsn, type CdcApplyBatch } from '../../queues/cdc.js';
import { dualWriteQueue, tableSyncQueue, type DualWriteJob, type TableSyncJob } from '../../queues/dual-write.js';
import { backoffDelay, collectGarbageAbove, ConcordError, createPgPool, errorMessage, Mailbox, singleton, type Actor, type ActorContext, type Logger } from '../../runtime/index.js';
import { CdcApplier, type ApplyOutcome } from './cdc-apply.js';
import { CdcGroupReader } from './cdc-groups.js';
import type { DualWriterConfig } from './config.js';
import { KeyRefresher } from './legs.js';
import { localLegs } from './local.js';
import { dualWriterMetrics, type DualWriterMetrics } from './metrics.js';
import { deleteOldOps, markOp, stalePendingOps } from './ops-log.js';
import { syncTable } from './table-sync.js';
import { BrokenCircuitError, DuckWriter, isDataError, type BreakerState } from './writer.js';

export const DUAL_WRITER = 'dual-writer';
/** The lease that decides which process opens the DuckDB file. */
export const DUCKDB_WRITER_LEASE = 'duckdb-writer';
const SWEEP_EVERY_MS = 10_000;
const PENDING_GRACE_MS = 30_000;
const OPS_RETENTION_HOURS = 24;
const REPORT_EVERY_MS = 2_000;
const BREAKER_CODE: Record<BreakerState, number> = { closed: 0, open: 1, half_open: 2, isolated: 1 };

/** Redis key where the holder publishes its WriterReport (read by GET /sync/status and the stats section). */
export function writerReportKey(prefix: string): string {
  return `${prefix}:dual-writer:report`;
}

/** What the holder publishes every 2 s and on breaker changes (also its `describe`). */
export interface WriterReport {
  processId?: string;
  epoch?: number;
  at?: number;
  breaker: BreakerState;
  duckdbOpen: boolean;
  appliedLsn: Record<string, string | null>;
  lastApplyError?: string | undefined;
  batchesApplied: number;
  legsApplied: number;
}

/**
 * The lease holder's work: everything that writes DuckDB, in one process.
 * - `cdc.apply` in order, concurrency 1 (queue-wide too), each batch joined with the stream
 *   batches waiting behind it up to CDC_APPLY_MAX_CHANGES (one DuckDB transaction); a failing batch is retried
 *   in place with backoff, never passed by a later one (the LSN filter would then drop
 *   it). On stop the batch goes back to the FRONT of the queue (moveToWait).
 * - `dualwrite` legs, up to MAX_CONCURRENT_SYNC_OPERATIONS at once (coalesced per table).
 * - `datasync.table` full/incremental syncs, one at a time.
 * - a sweep re-enqueueing operation-log entries whose leg job was lost.
 */
function writerActor(config: DualWriterConfig, epoch: number): Actor {
  let stopping = false;
  let pool: pg.Pool | undefined;
  let writer: DuckWriter | undefined;
  let mailboxes: Array<Pick<Mailbox<unknown>, 'start' | 'stop'>> = [];
  let sweeper: NodeJS.Timeout | undefined;
  let reporter: NodeJS.Timeout | undefined;
  let publish: () => void = () => undefined;
  let retentionAt = 0;
  const report: WriterReport = { breaker: 'closed', duckdbOpen: false, appliedLsn: {}, batchesApplied: 0, legsApplied: 0 };

  /**
   * Removes jobs whose batches were applied inside an earlier job's transaction. Only jobs
   * still waiting are removed (BullMQ refuses active ones); `cdc.apply` runs one job at a time
   * queue-wide, so none of these is being worked on. A failed removal only costs a skip later.
   */
  async function joinedApplied(queue: Queue, ids: readonly string[]): Promise<void> {
    await Promise.all(ids.map((id) => queue.remove(id, { removeChildren: false }).catch(() => 0)));
  }

  /**
   * One group per job (CdcGroupReader): the head batch joined with the stream batches waiting
   * behind it, one DuckDB transaction; the next group is read while it runs. Once the joined
   * transaction has committed their jobs are removed (joinedApplied), so they are neither
   * fetched nor parsed a second time. A crash in between leaves them queued; when their turn
   * comes they are skipped as already applied (their lastLsn is at or below the stored one).
   */
  async function applyInOrder(batch: CdcApplyBatch, job: Job, log: Logger, applier: CdcApplier, m: DualWriterMetrics, queue: Queue, groups: CdcGroupReader): Promise<ApplyOutcome> {
    for (let attempt = 0; ; attempt++) {
      if (stopping) {
        await groups.drop();
        // Back to the head of the queue, unconsumed: the next holder applies it first.
        await job.moveToWait(job.token);
        throw new WaitingError();
      }
      const end = m.cdcApplySeconds.startTimer();
      try {
        // Coalescing is an optimisation: if the peek fails, the head batch alone is applied; a
        // retry applies the head alone too, so a bad batch behind it does not hold it back.
        const alone = { batch, joinedIds: [] };
        const applied = report.appliedLsn[batch.slot];
        const { batch: work, joinedIds } = attempt === 0 ? await groups.take(batch, job, applied).catch(() => alone) : alone;
        // Read the next group while DuckDB applies this one (not for a batch it will skip as applied).
        if (attempt === 0 && !(applied && compareLsn(work.lastLsn, applied) <= 0)) groups.prefetch(joinedIds.length, batchSize(batch));
        const out = await applier.apply(work);
        end();
        // The prefetch reads positions that assume the joined jobs are still waiting.
        await groups.settled();
        await joinedApplied(queue, joinedIds);
        // Between transactions nearly all of the batch is garbage: collect it now rather than
        // let old space grow to several times the live data (the writer's peak memory).
        if (collectGarbageAbove(config.cdcApplyHeapSoftLimitMb * 1_048_576)) m.heapCollections.inc();
        m.cdcChanges.inc({ result: 'applied' }, out.applied);
        m.cdcChanges.inc({ result: 'skipped' }, out.skipped);
        m.cdcRowsWritten.inc(out.written);
        m.cdcBatches.inc({ kind: batch.kind });
        report.appliedLsn[out.slot] = out.appliedLsn;
        report.batchesApplied++;
        report.lastApplyError = undefined;
        return out;
      } catch (err) {
        await groups.drop(); // its positions assumed this group's jobs would be removed now
        m.cdcApplyFailures.inc();
        report.lastApplyError = errorMessage(err);
        const wait = err instanceof BrokenCircuitError ? config.breakerHalfOpenMs : backoffDelay(attempt, { minMs: 200, maxMs: 30_000, jitter: 0.3 });
        log.error({ err: errorMessage(err), slot: batch.slot, lastLsn: batch.lastLsn, attempt, retryInMs: wait }, 'cdc batch not applied; retrying it in place (later batches wait)');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  async function applyLeg(data: DualWriteJob, job: Job, refresher: KeyRefresher, m: DualWriterMetrics): Promise<{ applied: true } | { skipped: string }> {
    // No pre-check of the breaker: an open breaker turns half-open only when called, so the call is the probe.
    try {
      await refresher.refresh(data.table, data.key);
    } catch (err) {
      const reason = errorMessage(err);
      if (err instanceof BrokenCircuitError) {
        m.legs.inc({ result: 'delayed' });
        await job.moveToDelayed(Date.now() + config.breakerHalfOpenMs, job.token);
        throw new DelayedError();
      }
      m.legs.inc({ result: 'failed' });
      if (data.consistency === 'weak') {
        await markOp(pool!, data.operationId, 'skipped', reason);
        return { skipped: reason };
      }
      const permanent = isDataError(err) || (err instanceof ConcordError && !err.retryable);
      if (permanent || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) await markOp(pool!, data.operationId, 'failed', reason);
      throw permanent ? new UnrecoverableError(reason) : err;
    }
    m.legs.inc({ result: 'applied' });
    report.legsApplied++;
    await markOp(pool!, data.operationId, 'applied');
    return { applied: true };
  }

  async function sweep(ctx: ActorContext): Promise<void> {
    try {
      const queue = ctx.services.queues.queue(dualWriteQueue.name);
      const lost = await stalePendingOps(pool!, PENDING_GRACE_MS, 500);
      // jobId = operationId: an add for a job that still exists is ignored by BullMQ.
      for (const op of lost) await queue.add(op.operation, { ...op, strategy: 'recovery' }, { jobId: op.operationId, priority: 3 });
      if (lost.length > 0) ctx.log.info({ requeued: lost.length }, 'pending dual-write legs re-enqueued from the operation log');
      if (Date.now() > retentionAt) {
        retentionAt = Date.now() + 600_000;
        await deleteOldOps(pool!, OPS_RETENTION_HOURS);
      }
    } catch (err) {
      ctx.log.warn({ err: errorMessage(err) }, 'operation-log sweep failed; will try again');
    }
    if (!stopping) sweeper = setTimeout(() => void sweep(ctx), SWEEP_EVERY_MS);
  }

  return {
    name: DUAL_WRITER,
    async start(ctx) {
      const { services } = ctx;
      stopping = false;
      const m = dualWriterMetrics(services.metrics.registry);
      pool = createPgPool(services.config.databaseUrl!, config.maxConcurrentOperations + 2);
      services.duckDbLease.held = true;
      const w = new DuckWriter({
        open: () => services.duckdb(),
        breakerThreshold: config.breakerThreshold,
        breakerHalfOpenMs: config.breakerHalfOpenMs,
        onBreakerState: (s) => {
          report.breaker = s;
          m.breakerState.set(BREAKER_CODE[s]);
          ctx.log.warn({ breaker: s }, 'DuckDB circuit breaker changed state');
          publish();
        },
      });
      writer = w;
      m.breakerState.set(0);
      const applier = new CdcApplier(w, services.redis, services.config.queuePrefix);
      const refresher = new KeyRefresher(w, pool);
      let openedAt = 0;
      w.breaker.onBreak(() => (openedAt = Date.now()));
      localLegs.set(services, {
        refresh: (table, key) => refresher.refresh(table, key),
        breakerState: () => w.breakerState,
        retryAt: () => (w.breakerState === 'open' ? openedAt + config.breakerHalfOpenMs : Date.now()),
      });
      services.registry.register(cdcApplyQueue);
      services.registry.register(dualWriteQueue);
      services.registry.register(tableSyncQueue);
      const cdcQueue = services.queues.queue(cdcApplyQueue.name);
      await cdcQueue.setGlobalConcurrency(1);
      const deps = { connection: services.workerConnection, prefix: services.config.queuePrefix, metrics: services.metrics, deadLetters: services.deadLetters, log: ctx.log };
      const groups = new CdcGroupReader(cdcQueue, config.cdcApplyMaxChanges, (n) => m.cdcBatchesCoalesced.inc(n));
      const cdc = new Mailbox<CdcApplyBatch>(cdcApplyQueue, (batch, job, log) => applyInOrder(batch, job, log, applier, m, cdcQueue, groups), deps, {
        concurrency: 1,
        // A dead holder's batch returns to the head of the queue once its lock lapses; it must never fail for stalling.
        lockDurationMs: 10_000,
        stalledIntervalMs: 5_000,
        maxStalledCount: 1_000_000,
      });
      const legs = new Mailbox<DualWriteJob>(dualWriteQueue, (data, job) => applyLeg(data, job, refresher, m), deps, { concurrency: config.maxConcurrentOperations });
      const syncs = new Mailbox<TableSyncJob>(
        tableSyncQueue,
        async (data, job, log) => {
          try {
            const result = await syncTable(w, pool!, data, (p) => job.updateProgress({ ...p }));
            m.tableSyncRows.inc({ mode: data.mode }, result.rows);
            log.info(result, 'table sync done');
            return result;
          } catch (err) {
            if (err instanceof ConcordError && !err.retryable) throw new UnrecoverableError(err.message);
            throw err;
          }
        },
        deps,
        { concurrency: 1, lockDurationMs: 60_000 },
      );
      mailboxes = [cdc, legs, syncs];
      for (const mb of mailboxes) await mb.start((err) => ctx.fail(err));
      // Open DuckDB now (not at the first job) so readiness and the heartbeat see it; a failure is the breaker's business.
      await w.exclusive(async () => undefined).catch((err: unknown) => ctx.log.error({ err: errorMessage(err) }, 'DuckDB did not open; work waits in the queues'));
      publish = () => {
        report.duckdbOpen = services.hasDuckDb();
        const body = JSON.stringify({ ...report, processId: services.processId, epoch, at: Date.now(), breaker: w.breakerState });
        services.redis.set(writerReportKey(services.config.queuePrefix), body, 'PX', REPORT_EVERY_MS * 5).catch(() => undefined);
      };
      publish();
      reporter = setInterval(() => publish(), REPORT_EVERY_MS);
      reporter.unref();
      void sweep(ctx);
      ctx.log.info({ epoch }, 'dual-writer holds DuckDB');
    },
    async stop(timeoutMs) {
      stopping = true;
      clearTimeout(sweeper);
      clearInterval(reporter);
      publish = () => undefined;
      await Promise.all(mailboxes.map((mb) => mb.stop(timeoutMs)));
      mailboxes = [];
      await writer?.close();
      writer = undefined;
      await pool?.end().catch(() => undefined);
      pool = undefined;
    },
    describe: () => ({ ...report, breaker: writer?.breakerState ?? report.breaker }),
  };
}

/** The DuckDB writer: a singleton across processes (lease `duckdb-writer`), failing over when its holder dies. */
export function dualWriterActor(config: DualWriterConfig): Actor {
  const inner = singleton({ name: DUAL_WRITER, lease: DUCKDB_WRITER_LEASE, ttlMs: config.leaseTtlMs, spec: { restart: 'permanent', shutdownMs: 20_000 } }, (grant) => writerActor(config, grant.epoch));
  let services: ActorContext['services'] | undefined;
  return {
    ...inner,
    async start(ctx) {
      services = ctx.services;
      // From now on only the lease holder opens the DuckDB file in this process.
      services.duckDbLease.governed = true;
      await inner.start(ctx);
    },
    async stop(timeoutMs) {
      await inner.stop(timeoutMs);
      if (services) {
        localLegs.delete(services);
        services.duckDbLease.held = false;
        await services.releaseDuckDb();
      }
    },
  };
}
