import type { QueueDefinition } from '../../queues/definition.js';
import { UnrecoverableError } from 'bullmq';
import type { DuckDBConnection } from '@duckdb/node-api';
import pg from 'pg';
import { dualWriteQueue } from '../../queues/dual-write.js';
import { validateDuckQueue, validatePgQueue, validateRunQueue, type SideWork, type ValidateRunJob } from '../../queues/validate.js';
import { ConcordError, errorMessage, Mailbox, type Actor, type ActorContext } from '../../runtime/index.js';
import type { ValidatorConfig } from './config.js';
import { validatorMetrics, type ValidatorMetrics } from './metrics.js';
import { processRun } from './run.js';
import { ChecksumCache } from './checksum-cache.js';
import { SideClient } from './side-client.js';
import { duckSideWork, pgSideWork, PG_SESSION_OPTIONS, type SideResult } from './side-work.js';
import { deleteOldRuns } from './store.js';

export const VALIDATOR = 'validator';
export const SCHEDULER_ID = 'validator-schedule';
const LEASE_POLL_MS = 500;
const RETENTION_EVERY_MS = 3600_000;

type Stoppable = Pick<Mailbox<unknown>, 'start' | 'stop'>;

/** Bad input and missing tables fail a side job at once; anything else is retried. */
async function sideJob(work: () => Promise<SideResult>, m: ValidatorMetrics, side: string): Promise<SideResult> {
  try {
    const out = await work();
    if (out.rows) m.sideRows.inc({ side }, out.rows.length);
    return out;
  } catch (err) {
    if (err instanceof ConcordError && !err.retryable) throw new UnrecoverableError(err.message);
    // DuckDB/PostgreSQL say the SQL is wrong (a bad rule, a missing column): retrying will not help.
    if (/^(Binder|Parser|Catalog|Conversion) Error|syntax error|does not exist/.test(errorMessage(err))) throw new UnrecoverableError(errorMessage(err));
    throw err;
  }
}

/**
 * The validator, in every worker process that runs it:
 * - `validate` runs (scheduled by a BullMQ job scheduler, or on demand), two at a time;
 *   a run takes each table's lock, so one run at a time checks a table;
 * - `validate.segment`, the PostgreSQL side of segment work;
 * - `validate.duckdb`, the DuckDB side, consumed ONLY while this process holds the DuckDB
 *   lease (`services.duckDbLease.held`, set by the dual-writer): DuckDB has one process that
 *   may open the file, and the validator reads it there through its own connection of
 *   that process's instance (DuckDB's MVCC lets it read beside the writer's transactions).
 */
export function validatorActor(config: ValidatorConfig): Actor {
  let mailboxes: Stoppable[] = [];
  let duckMailbox: Stoppable | undefined;
  let duckConn: DuckDBConnection | undefined;
  let sidePool: pg.Pool | undefined;
  let sides: SideClient | undefined;
  let leaseTimer: NodeJS.Timeout | undefined;
  let retentionTimer: NodeJS.Timeout | undefined;
  let following: Promise<void> = Promise.resolve();

  async function followLease(ctx: ActorContext, m: ValidatorMetrics): Promise<void> {
    const { services } = ctx;
    const held = services.duckDbLease.held;
    if (held && !duckMailbox) {
      const conn = await (await services.duckdb()).instance.connect();
      duckConn = conn;
      const mb = new Mailbox<SideWork>(validateDuckQueue, (w) => sideJob(() => duckSideWork(conn, w), m, 'duckdb'), mailboxDeps(ctx), { concurrency: config.segmentConcurrency });
      await mb.start((err) => ctx.fail(err));
      duckMailbox = mb;
      ctx.log.info('validator serves DuckDB-side work (this process holds the DuckDB lease)');
    } else if (!held && duckMailbox) {
      await stopDuck(10_000);
      ctx.log.info('validator stopped DuckDB-side work (DuckDB lease not held here)');
    }
  }

  async function stopDuck(timeoutMs: number): Promise<void> {
    const mb = duckMailbox;
    duckMailbox = undefined;
    await mb?.stop(timeoutMs);
    duckConn?.closeSync();
    duckConn = undefined;
  }

  const mailboxDeps = (ctx: ActorContext) => ({ connection: ctx.services.workerConnection, prefix: ctx.services.config.queuePrefix, metrics: ctx.services.metrics, deadLetters: ctx.services.deadLetters, log: ctx.log });

  return {
    name: VALIDATOR,
    spec: { restart: 'permanent', shutdownMs: 20_000 },
    async start(ctx) {
      const { services } = ctx;
      const m = validatorMetrics(services.metrics.registry);
      for (const q of [validateRunQueue, validatePgQueue, validateDuckQueue, dualWriteQueue] as Array<QueueDefinition<unknown>>) services.registry.register(q);
      sidePool = new pg.Pool({ connectionString: services.config.databaseUrl!, max: config.segmentConcurrency + 1, options: PG_SESSION_OPTIONS, connectionTimeoutMillis: 5_000 });
      sidePool.on('error', () => undefined);
      const pool = sidePool;
      const checksumCache = new ChecksumCache(config.checksumCacheBuckets);
      sides = new SideClient(services, config.sideTimeoutMs);
      const runDeps = { db: services.pg(), redis: services.redis, prefix: services.config.queuePrefix, sides, dualwrite: services.queues.queue(dualWriteQueue.name), config, metrics: m };
      const deps = mailboxDeps(ctx);
      // A run waits on its side jobs for long stretches: a long lock, renewed by BullMQ meanwhile.
      const runs = new Mailbox<ValidateRunJob>(validateRunQueue, (data, job, log) => processRun(data, job, log, runDeps), deps, { concurrency: 2, lockDurationMs: 60_000 });
      const pgSide = new Mailbox<SideWork>(validatePgQueue, (w) => sideJob(() => pgSideWork(pool, w, checksumCache), m, 'postgres'), deps, { concurrency: config.segmentConcurrency, lockDurationMs: 60_000 });
      mailboxes = [pgSide, runs];
      for (const mb of mailboxes) await mb.start((err) => ctx.fail(err));
      const runQueue = services.queues.queue(validateRunQueue.name);
      if (config.intervalSeconds > 0) {
        const data: ValidateRunJob = { trigger: 'schedule', tables: [], checkTypes: config.scheduledCheckTypes, repair: false };
        await runQueue.upsertJobScheduler(SCHEDULER_ID, { every: config.intervalSeconds * 1000 }, { name: 'scheduled', data });
      } else {
        await runQueue.removeJobScheduler(SCHEDULER_ID);
      }
      const follow = () => {
        following = following.then(() => followLease(ctx, m)).catch((err: unknown) => ctx.log.warn({ err: errorMessage(err) }, 'validator could not follow the DuckDB lease; will try again'));
      };
      follow();
      leaseTimer = setInterval(follow, LEASE_POLL_MS);
      leaseTimer.unref();
      const sweep = () => void deleteOldRuns(services.pg(), config.retentionDays).catch((err: unknown) => ctx.log.warn({ err: errorMessage(err) }, 'report retention sweep failed'));
      sweep();
      retentionTimer = setInterval(sweep, RETENTION_EVERY_MS);
      retentionTimer.unref();
    },
    async stop(timeoutMs) {
      clearInterval(leaseTimer);
      clearInterval(retentionTimer);
      await following;
      // Runs first (they wait on side jobs), then the side work.
      for (const mb of [...mailboxes].reverse()) await mb.stop(timeoutMs);
      mailboxes = [];
      await stopDuck(timeoutMs);
      await sides?.close();
      sides = undefined;
      await sidePool?.end().catch(() => undefined);
      sidePool = undefined;
    },
    describe: () => ({ servesDuckDb: duckMailbox !== undefined, scheduleSeconds: config.intervalSeconds }),
  };
}
