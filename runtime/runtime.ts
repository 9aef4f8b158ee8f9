import { hostname } from 'node:os';
import type pg from 'pg';
import type { Redis } from 'ioredis';
import { QueueRegistry, type QueueDefinition } from '../queues/index.js';
import type { Actor } from './actor.js';
import type { Config } from './config.js';
import { createPgPool, createRedis, openDuckDb, type DuckDb } from './connections.js';
import { DeadLetters } from './dead-letters.js';
import { errorMessage } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { ProcessRegistry, newProcessId, type Role, type DependencyStatus, type ProcessRecord } from './process-registry.js';
import { QueueSet } from './queue-set.js';
import type { RuntimeServices } from './services.js';
import { Supervisor } from './supervisor.js';

export interface RuntimeOptions {
  config: Config;
  role: Role;
  /** Actors this process runs (roles `all` and `worker`), in start order. */
  actors?: readonly Actor[];
  /** Queues known to this process besides those the actors register. */
  queues?: ReadonlyArray<QueueDefinition<unknown>>;
  log?: Logger;
  /** Called once when an actor exceeds its restart intensity. */
  onEscalate?: (actor: string, err: Error) => void;
}

/**
 * One process of Concord: its connections, queues, supervised actors and
 * heartbeat. HTTP is layered on top (http/server.ts); the CLI wires signals.
 */
export class ConcordRuntime {
  readonly services: RuntimeServices;
  readonly processes: ProcessRegistry;
  readonly supervisor: Supervisor | undefined;
  private readonly startedAt = Date.now();
  private pool: pg.Pool | undefined;
  private duck: Promise<DuckDb> | undefined;
  private duckStatus: DependencyStatus | undefined;
  private readonly connections: Redis[];

  constructor(private readonly opts: RuntimeOptions) {
    const { config, role } = opts;
    const processId = newProcessId(role);
    const log = (opts.log ?? createLogger(config.logLevel)).child({ role, processId });
    const metrics = new Metrics();
    const registry = new QueueRegistry(opts.queues ?? []);
    const redis = createRedis(config.redisUrl, 'client');
    const workerConnection = createRedis(config.redisUrl, 'worker');
    for (const c of [redis, workerConnection]) c.on('error', (err) => log.debug({ err: errorMessage(err) }, 'redis connection error'));
    this.connections = [redis, workerConnection];
    const queues = new QueueSet(registry, redis, config.queuePrefix);
    metrics.setDepthSource(queues);
    this.services = {
      config,
      role,
      processId,
      log,
      metrics,
      registry,
      queues,
      deadLetters: new DeadLetters(queues),
      redis,
      workerConnection,
      pg: () => {
        if (!config.databaseUrl) throw new Error('DATABASE_URL is not set: PostgreSQL is needed here');
        this.pool ??= createPgPool(config.databaseUrl);
        return this.pool;
      },
      duckdb: () => {
        this.duck ??= openDuckDb(config.duckdb).then(
          (db) => {
            this.duckStatus = { ok: true };
            return db;
          },
          (err: unknown) => {
            this.duck = undefined; // let a later call try again
            this.duckStatus = { ok: false, error: errorMessage(err) };
            throw err;
          },
        );
        return this.duck;
      },
      hasDuckDb: () => this.duckStatus?.ok === true,
      duckDbLease: { governed: false, held: false },
      releaseDuckDb: async () => {
        const open = this.duck;
        this.duck = undefined;
        this.duckStatus = undefined;
        if (open) await open.then((db) => db.close()).catch(() => undefined);
      },
    };
    const runsActors = role !== 'api';
    this.supervisor = runsActors
      ? new Supervisor(opts.actors ?? [], {
          services: this.services,
          onEscalate: (actor, err) => (opts.onEscalate ?? (() => undefined))(actor, err),
        })
      : undefined;
    this.processes = new ProcessRegistry(redis, config.queuePrefix, () => this.record(), log);
  }

  private record(): Omit<ProcessRecord, 'heartbeatAt'> {
    return {
      id: this.services.processId,
      pid: process.pid,
      host: hostname(),
      role: this.services.role,
      startedAt: this.startedAt,
      actors: this.supervisor?.snapshot() ?? [],
      dependencies: this.duckStatus ? { duckdb: this.duckStatus } : ({} as Record<string, DependencyStatus>),
    };
  }

  /** Every live process's record, this one's read live rather than from its last heartbeat. */
  async liveProcesses(): Promise<ProcessRecord[]> {
    const records = await this.processes.list();
    const self: ProcessRecord = { ...this.record(), heartbeatAt: Date.now() };
    return [self, ...records.filter((r) => r.id !== self.id)];
  }

  get uptimeSeconds(): number {
    return (Date.now() - this.startedAt) / 1000;
  }

  async start(): Promise<void> {
    const log = this.services.log;
    log.info({ actors: (this.opts.actors ?? []).map((a) => a.name) }, 'starting');
    await this.processes.start();
    await this.supervisor?.start();
    await this.processes.beat();
    log.info('started');
  }

  /** Drain actors (reverse order), then close connections. */
  async stop(): Promise<void> {
    const log = this.services.log;
    log.info('stopping: draining actors');
    await this.supervisor?.stop();
    await this.processes.stop();
    await this.services.queues.close();
    await this.pool?.end().catch(() => undefined);
    if (this.duck) await this.duck.then((db) => db.close()).catch(() => undefined);
    for (const c of this.connections) c.disconnect();
    log.info('stopped');
  }
}
