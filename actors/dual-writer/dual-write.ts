import { randomUUID } from 'node:crypto';
import { QueueEvents, type JobsOptions } from 'bullmq';
import type pg from 'pg';
import type { Redis } from 'ioredis';
import { dualWriteQueue, type DualWriteJob } from '../../queues/dual-write.js';
import type { CdcRelation } from '../../queues/cdc.js';
import { createRedis, errorMessage, ValidationError, type RuntimeServices } from '../../runtime/index.js';
import type { ConsistencyLevel, DualWriterConfig, SyncStrategy } from './config.js';
import { localLegs } from './local.js';
import { insertOp, markOp } from './ops-log.js';
import { readRelation } from './pg-source.js';
import { buildWrite, keyValues, pgErrorToConcord, type PrimaryKey, type WriteKind } from './sql-write.js';

export type { PrimaryKey } from './sql-write.js';

export interface DualWriteOptions {
  consistency?: ConsistencyLevel;
  strategy?: SyncStrategy;
}

export interface DualWriteResult {
  /** Whether the requested consistency was met (strong: both stores written). */
  success: boolean;
  operationId: string;
  consistency: ConsistencyLevel;
  /** The strategy as resolved (`hybrid` picks one by consistency). */
  strategy: SyncStrategy;
  postgres: 'committed' | 'not_written';
  /** applied: DuckDB has it; queued: its leg waits in `dualwrite` (retried, then DLQ); deferred: the enqueue failed, the lease holder re-enqueues it from the operation log. */
  duckdb: 'applied' | 'queued' | 'deferred';
  /** Primary-key values (PostgreSQL text) of the row written. */
  key: Record<string, string | null>;
  error?: string;
}

const PRIORITY: Record<Exclude<SyncStrategy, 'hybrid'>, number> = { real_time: 1, recovery: 3, near_real_time: 5, batch: 10 };

/** hybrid: strong → real_time, eventual → near_real_time, weak → batch. */
export function resolveStrategy(strategy: SyncStrategy, consistency: ConsistencyLevel): Exclude<SyncStrategy, 'hybrid'> {
  if (strategy !== 'hybrid') return strategy;
  return consistency === 'strong' ? 'real_time' : consistency === 'eventual' ? 'near_real_time' : 'batch';
}

/**
 * `dualWrite.create|update|delete(table, primaryKey, data, { consistency, strategy })`:
 * PostgreSQL is written in the call, in one transaction with the operation log; the
 * DuckDB leg then copies the key's row from PostgreSQL into the copy. Only the lease
 * holder may write DuckDB: in that process a real-time leg runs in the call; anywhere
 * else the leg goes through the `dualwrite` queue, and a strong call waits for that job
 * (BullMQ QueueEvents, up to DATA_SYNC_STRONG_TIMEOUT_MS).
 */
export class DualWrite {
  private readonly relations = new Map<string, { at: number; relation: CdcRelation }>();
  private events: { queueEvents: QueueEvents; connection: Redis } | undefined;

  constructor(
    private readonly services: RuntimeServices,
    private readonly config: DualWriterConfig,
    private readonly pool: () => pg.Pool = () => services.pg(),
  ) {}

  create(table: string, primaryKey: PrimaryKey | null | undefined, data: Record<string, unknown>, opts: DualWriteOptions = {}): Promise<DualWriteResult> {
    return this.write('create', table, primaryKey, data, opts);
  }

  update(table: string, primaryKey: PrimaryKey, data: Record<string, unknown>, opts: DualWriteOptions = {}): Promise<DualWriteResult> {
    return this.write('update', table, primaryKey, data, opts);
  }

  delete(table: string, primaryKey: PrimaryKey, data?: Record<string, unknown> | null, opts: DualWriteOptions = {}): Promise<DualWriteResult> {
    return this.write('delete', table, primaryKey, data ?? {}, opts);
  }

  /** The table's shape (cached for a minute; a failed write drops it). */
  async relation(table: string): Promise<CdcRelation> {
    const hit = this.relations.get(table);
    if (hit && Date.now() - hit.at < 60_000) return hit.relation;
    const relation = await readRelation(this.pool(), table);
    this.relations.set(table, { at: Date.now(), relation });
    return relation;
  }

  private async write(kind: WriteKind, table: string, primaryKey: PrimaryKey | null | undefined, data: Record<string, unknown>, opts: DualWriteOptions): Promise<DualWriteResult> {
    if (!this.config.dualWriteEnabled) throw new ValidationError('dual writes are off (ENABLE_DUAL_WRITE=false)', [{ field: 'operation_type', reason: 'dual writes are disabled' }]);
    if (!this.config.tables.includes(table)) {
      throw new ValidationError(`table ${table} may not be dual-written`, [{ field: 'table_name', reason: `not one of DATA_SYNC_TABLES: ${this.config.tables.join(', ') || '(none configured)'}` }]);
    }
    const consistency = opts.consistency ?? this.config.consistency;
    const strategy = resolveStrategy(opts.strategy ?? this.config.strategy, consistency);
    const relation = await this.relation(table);
    const operationId = randomUUID();
    const operation = strategy === 'recovery' ? 'recovery' : kind;
    let key: Array<string | null>;
    const client = await this.pool().connect();
    try {
      await client.query('BEGIN');
      if (operation === 'recovery') {
        key = keyValues(relation, primaryKey, 'primary_key');
      } else {
        const stmt = buildWrite(kind, relation, primaryKey, data);
        const res = await client.query<Array<string | null>>(stmt.query);
        if (res.rowCount === 0) stmt.notFound();
        key = res.rows[0]!;
      }
      await insertOp(client, { operationId, table, operation, key, consistency, strategy });
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      this.relations.delete(table);
      throw pgErrorToConcord(err);
    } finally {
      client.release();
    }
    const job: DualWriteJob = { operationId, table, operation, key, consistency, strategy };
    const keyObject = Object.fromEntries(relation.columns.filter((c) => c.isKey).map((c, i) => [c.name, key[i] ?? null]));
    const base = { operationId, consistency, strategy, postgres: operation === 'recovery' ? ('not_written' as const) : ('committed' as const), key: keyObject };
    return { ...base, ...(await this.duckLeg(job)) };
  }

  private async duckLeg(job: DualWriteJob): Promise<Pick<DualWriteResult, 'success' | 'duckdb' | 'error'>> {
    const local = localLegs.get(this.services);
    if (job.consistency === 'strong' && local && job.strategy === 'real_time') {
      try {
        await local.refresh(job.table, job.key);
        await markOp(this.pool(), job.operationId, 'applied').catch(() => undefined);
        return { success: true, duckdb: 'applied' };
      } catch (err) {
        // Open breaker or DuckDB failure: the leg becomes a recovery job, retried when DuckDB is back.
        const delay = Math.max(0, local.retryAt() - Date.now());
        return this.enqueue({ ...job, strategy: 'recovery' }, delay).then(
          (duckdb) => ({ success: false, duckdb, error: `DuckDB write failed, queued for recovery: ${errorMessage(err)}` }),
          (qErr: unknown) => ({ success: false, duckdb: 'deferred', error: `DuckDB write failed (${errorMessage(err)}) and the recovery job could not be queued (${errorMessage(qErr)})` }),
        );
      }
    }
    let duckdb: 'queued' | 'deferred';
    try {
      duckdb = await this.enqueue(job, job.strategy === 'batch' ? this.config.batchDelayMs : 0);
    } catch (err) {
      // The operation log holds the leg; the lease holder's sweep enqueues it again.
      return { success: job.consistency !== 'strong', duckdb: 'deferred', error: `could not queue the DuckDB write: ${errorMessage(err)}` };
    }
    if (job.consistency !== 'strong') return { success: true, duckdb };
    try {
      const events = await this.queueEvents();
      const queued = await this.services.queues.queue(dualWriteQueue.name).getJob(job.operationId);
      if (!queued) throw new Error('the job vanished before it finished');
      await queued.waitUntilFinished(events, this.config.strongTimeoutMs);
      return { success: true, duckdb: 'applied' };
    } catch (err) {
      return { success: false, duckdb: 'queued', error: `DuckDB write not confirmed: ${errorMessage(err)}; it stays queued and is retried` };
    }
  }

  private async enqueue(job: DualWriteJob, delayMs: number): Promise<'queued'> {
    this.services.registry.register(dualWriteQueue);
    const opts: JobsOptions = { jobId: job.operationId, priority: PRIORITY[job.strategy === 'hybrid' ? 'near_real_time' : job.strategy] };
    if (delayMs > 0) opts.delay = delayMs;
    if (job.consistency === 'weak') opts.attempts = 1;
    await this.services.queues.queue(dualWriteQueue.name).add(job.operation, job, opts);
    return 'queued';
  }

  private async queueEvents(): Promise<QueueEvents> {
    if (!this.events) {
      const connection = createRedis(this.services.config.redisUrl, 'worker', 'concord-dualwrite-events');
      const queueEvents = new QueueEvents(dualWriteQueue.name, { connection, prefix: this.services.config.queuePrefix });
      this.events = { queueEvents, connection };
      await queueEvents.waitUntilReady();
    }
    return this.events.queueEvents;
  }

  async close(): Promise<void> {
    const e = this.events;
    this.events = undefined;
    await e?.queueEvents.close().catch(() => undefined);
    e?.connection.disconnect();
  }
}
