import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import {
  getSagaDefinition,
  getSagaStatus,
  isDigest,
  listSagas,
  parseSagaSteps,
  putSagaDefinition,
  QueueRegistry,
  requestSagaCancel,
  retrySaga,
  sagaStepQueue,
  sagaTypeSchema,
  startSagaRecord,
  stepsDigest,
  type SagaFilter,
  type SagaStatusView,
  type SagaStep,
  type SagaStepInput,
} from '../../queues/index.js';
import { startSagaRecords, type NewSaga } from '../../queues/sagas.js';
import { createLogger, createPgPool, createRedis, DeadLetters, errorMessage, Mailbox, Metrics, QueueSet, ValidationError, type Logger } from '../../runtime/index.js';
import { Batcher } from './batcher.js';
import { ServiceBreakers } from './breaker.js';
import { DEFAULT_SAGA_CONFIG, type SagaConfig } from './config.js';
import { SagaEngine } from './engine.js';
import type { StepHandler } from './invoke.js';
import { sagaMetrics, type SagaMetrics } from './metrics.js';
import { staleSagas } from './store.js';

export type SagaTuning = Omit<SagaConfig, 'enabled' | 'handlersModule'>;

export interface SagaOrchestratorOptions extends Partial<SagaTuning> {
  /** PostgreSQL holding the saga tables (migrations/postgres). One of databaseUrl or pool. */
  databaseUrl?: string;
  pool?: pg.Pool;
  /** Redis for the step queue. One of redisUrl or (connection for workers + client for producers). */
  redisUrl?: string;
  workerConnection?: Redis;
  connection?: Redis;
  /** BullMQ key prefix. @defaultValue 'concord' */
  prefix?: string;
  log?: Logger;
  /** Metrics of the hosting runtime; a private registry otherwise. */
  metrics?: Metrics;
  /** Identifies this process as a lease holder. @defaultValue a random id */
  processId?: string;
}

export interface StartSagaInput {
  sagaType: string;
  /** Omitted: the steps of the type registered with defineSaga. */
  steps?: SagaStepInput[];
  context?: Record<string, unknown>;
  /** The same key returns the same saga (and starts nothing new). */
  idempotencyKey?: string;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;
const DEFINITION_CACHE_MS = 1_000;

/**
 * The saga coordinator's library API (the seed's SagaOrchestrator): register handlers,
 * define saga types, start sagas, read their status, cancel and retry them. `start()`
 * makes this process a worker of the `saga.step` queue; without it the orchestrator
 * only produces (starts sagas for workers elsewhere).
 */
export class SagaOrchestrator {
  readonly options: SagaTuning;
  readonly processId: string;
  private readonly actions = new Map<string, StepHandler>();
  private readonly compensations = new Map<string, StepHandler>();
  private readonly versions = new Map<string, string>();
  private readonly definitions = new Map<string, { def: { version: string; steps: SagaStep[] }; at: number }>();
  private readonly reading = new Map<string, Promise<{ version: string; steps: SagaStep[] } | undefined>>();
  private readonly owned: Array<{ close(): Promise<unknown> | void }> = [];
  private readonly pool: pg.Pool;
  private readonly connection: Redis;
  private readonly workerConnection: Redis;
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  readonly sagaMetrics: SagaMetrics;
  readonly breakers: ServiceBreakers;
  private queue: Queue | undefined;
  private mailbox: Mailbox<unknown> | undefined;
  private engine: SagaEngine | undefined;
  private timers: NodeJS.Timeout[] = [];
  /** startSaga calls made together share one INSERT and one queue round trip. */
  private starts: Batcher<NewSaga, { id: string; created: boolean }> | undefined;

  constructor(
    readonly name: string,
    opts: SagaOrchestratorOptions,
  ) {
    this.options = { ...DEFAULT_SAGA_CONFIG, ...stripUndefined(opts, Object.keys(DEFAULT_SAGA_CONFIG)) } as SagaTuning;
    const o = this.options;
    for (const [k, min] of Object.entries({ workerCount: 1, stepTimeoutMs: 1, stepRetryAttempts: 0, retryDelayMs: 1, compensationRetryAttempts: 0, leaseTtlMs: 200, recoveryIntervalMs: 100, staleAfterMs: 100, breakerThreshold: 1, breakerHalfOpenMs: 10, pgPoolSize: 1 })) {
      const v = o[k as keyof SagaTuning] as number;
      if (!Number.isInteger(v) || v < min) throw new RangeError(`SagaOrchestrator ${name}: ${k} must be an integer >= ${min}, got ${v}`);
    }
    if (o.retryMaxDelayMs < o.retryDelayMs) throw new RangeError(`SagaOrchestrator ${name}: retryMaxDelayMs must be >= retryDelayMs`);
    if (!/^[A-Za-z0-9_.-]{1,100}$/.test(name)) throw new RangeError(`SagaOrchestrator name ${JSON.stringify(name)}: 1 to 100 letters, digits, _ . -`);
    this.processId = opts.processId ?? `${name}-${randomUUID().slice(0, 8)}`;
    this.prefix = opts.prefix ?? 'concord';
    this.log = (opts.log ?? createLogger('info')).child({ orchestrator: name });
    this.metrics = opts.metrics ?? new Metrics({ defaultMetrics: false });
    if (opts.pool) this.pool = opts.pool;
    else if (opts.databaseUrl) this.pool = this.own(createPgPool(opts.databaseUrl, o.pgPoolSize), (p) => p.end());
    else throw new RangeError(`SagaOrchestrator ${name}: databaseUrl or pool is required`);
    if (opts.connection && opts.workerConnection) {
      this.connection = opts.connection;
      this.workerConnection = opts.workerConnection;
    } else if (opts.redisUrl) {
      this.connection = this.own(createRedis(opts.redisUrl, 'client', `saga-${name}`), (r) => r.disconnect());
      this.workerConnection = this.own(createRedis(opts.redisUrl, 'worker', `saga-${name}-worker`), (r) => r.disconnect());
    } else throw new RangeError(`SagaOrchestrator ${name}: redisUrl, or connection and workerConnection, is required`);
    this.sagaMetrics = sagaMetrics(this.metrics.registry, () => this.activeCounts());
    this.breakers = new ServiceBreakers(o.breakerThreshold, o.breakerHalfOpenMs, (service, open) => {
      this.sagaMetrics.circuitOpen.set({ service }, open ? 1 : 0);
      this.log.warn({ service, open }, open ? 'circuit opened: steps of this service wait' : 'circuit closed');
    });
  }

  private own<T>(thing: T, close: (t: T) => Promise<unknown> | void): T {
    this.owned.push({ close: () => close(thing) });
    return thing;
  }

  private stepQueue(): Queue {
    this.queue ??= this.own(new Queue(sagaStepQueue.name, { connection: this.connection, prefix: this.prefix, defaultJobOptions: { ...sagaStepQueue.jobOptions } }), (q) => q.close());
    return this.queue;
  }

  registerStepHandler(stepName: string, handler: StepHandler): this {
    if (typeof handler !== 'function') throw new TypeError(`registerStepHandler(${stepName}): handler must be a function`);
    this.actions.set(stepName, handler);
    return this;
  }

  registerCompensationHandler(stepName: string, handler: StepHandler): this {
    if (typeof handler !== 'function') throw new TypeError(`registerCompensationHandler(${stepName}): handler must be a function`);
    this.compensations.set(stepName, handler);
    return this;
  }

  /**
   * Registers a saga type under a version, here (sagas recorded under another version
   * are reported, not resumed, by this process) and in PostgreSQL (so the HTTP API can
   * start it by name).
   */
  async defineSaga(sagaType: string, def: { version: string; steps: SagaStepInput[] }): Promise<void> {
    const type = sagaTypeSchema.safeParse(sagaType);
    if (!type.success) throw new ValidationError('invalid saga type', [{ field: 'sagaType', reason: type.error.issues[0]!.message }]);
    if (typeof def.version !== 'string' || def.version.length === 0 || def.version.length > 100 || isDigest(def.version)) {
      throw new ValidationError('invalid version', [{ field: 'version', reason: '1 to 100 characters, not starting with sha256: (reserved for inline steps)' }]);
    }
    const steps = parseSagaSteps(def.steps);
    this.checkHandlers(steps);
    await putSagaDefinition(this.pool, sagaType, def.version, steps);
    this.versions.set(sagaType, def.version);
    this.definitions.set(sagaType, { def: { version: def.version, steps }, at: Date.now() });
  }

  /** With handlers registered here, a step without its handler is refused at start rather than failing later. */
  private checkHandlers(steps: SagaStep[]): void {
    if (this.actions.size === 0) return;
    const issues = steps.flatMap((s, i) => [
      ...(this.actions.has(s.step_name) ? [] : [{ field: `steps.${i}.step_name`, reason: `no step handler registered for ${s.step_name}` }]),
      ...(s.compensation_action === undefined || this.compensations.has(s.step_name) ? [] : [{ field: `steps.${i}.compensation_action`, reason: `no compensation handler registered for ${s.step_name}` }]),
    ]);
    if (issues.length > 0) throw new ValidationError('saga steps without handlers', issues);
  }

  /**
   * A registered definition, read at most once a second per type: a start does not pay
   * a query for it, and a definition changed elsewhere is seen within DEFINITION_CACHE_MS.
   */
  private async definition(sagaType: string): Promise<{ version: string; steps: SagaStep[] } | undefined> {
    const hit = this.definitions.get(sagaType);
    if (hit && Date.now() - hit.at < DEFINITION_CACHE_MS) return hit.def;
    // Starts that find the entry stale together share one read.
    let reading = this.reading.get(sagaType);
    if (!reading) {
      reading = getSagaDefinition(this.pool, sagaType).finally(() => this.reading.delete(sagaType));
      this.reading.set(sagaType, reading);
    }
    const def = await reading;
    if (def) this.definitions.set(sagaType, { def, at: Date.now() });
    return def;
  }

  /** Records the saga and enqueues its first step(s); returns its id. */
  async startSaga(input: StartSagaInput): Promise<string> {
    const type = sagaTypeSchema.safeParse(input.sagaType);
    if (!type.success) throw new ValidationError('invalid saga type', [{ field: 'sagaType', reason: type.error.issues[0]!.message }]);
    if (input.idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(input.idempotencyKey)) throw new ValidationError('invalid idempotency key', [{ field: 'idempotencyKey', reason: '1 to 200 visible ASCII characters' }]);
    let steps: SagaStep[];
    let version: string;
    if (input.steps) {
      steps = parseSagaSteps(input.steps);
      version = stepsDigest(steps);
      // Inline steps of a defined type run under the defined version only if they are its steps.
      const registered = this.versions.get(input.sagaType);
      if (registered !== undefined) {
        const def = await this.definition(input.sagaType);
        if (def && stepsDigest(def.steps) === version) version = registered;
      }
    } else {
      const def = await this.definition(input.sagaType);
      if (!def) throw new ValidationError('unknown saga type', [{ field: 'sagaType', reason: `${input.sagaType} is not registered (defineSaga) and no steps were given` }]);
      steps = def.steps;
      version = def.version;
    }
    this.checkHandlers(steps);
    this.starts ??= new Batcher<NewSaga, { id: string; created: boolean }>({
      run: (ss) => startSagaRecords(this.pool, this.stepQueue(), ss),
      runOne: (s) => startSagaRecord(this.pool, this.stepQueue(), s),
      shape: () => 'start',
      // No key: replays of one idempotency key may share a batch (the first creates, the rest replay it).
      maxBatch: 100,
      maxInFlight: Math.max(1, Math.floor(this.options.pgPoolSize / 4)),
    });
    const r = await this.starts.add({ sagaType: input.sagaType, orchestrator: this.name, version, steps, context: input.context ?? {}, idempotencyKey: input.idempotencyKey });
    if (r.created) this.sagaMetrics.started.inc({ saga_type: input.sagaType });
    return r.id;
  }

  getSagaStatus(sagaId: string): Promise<SagaStatusView> {
    return getSagaStatus(this.pool, sagaId);
  }

  listSagas(filter: Partial<SagaFilter> = {}) {
    return listSagas(this.pool, { limit: 50, offset: 0, ...filter });
  }

  /** Compensates what completed; the saga ends `compensated` (or `failed`). */
  async cancelSaga(sagaId: string): Promise<void> {
    await requestSagaCancel(this.pool, this.stepQueue(), sagaId);
  }

  /** Operator retry of a failed saga (or one reported for a version mismatch). */
  async retrySaga(sagaId: string): Promise<void> {
    await retrySaga(this.pool, this.stepQueue(), sagaId);
  }

  /** Makes this process a worker: `workerCount` step jobs at once. */
  async start(opts: { workerCount?: number } = {}): Promise<void> {
    if (this.mailbox) throw new Error(`SagaOrchestrator ${this.name} already started`);
    const concurrency = opts.workerCount ?? this.options.workerCount;
    const engine = new SagaEngine({
      pool: this.pool,
      queue: this.stepQueue(),
      owner: this.processId,
      config: this.options,
      actions: this.actions,
      compensations: this.compensations,
      versions: this.versions,
      metrics: this.sagaMetrics,
      breakers: this.breakers,
      log: this.log,
    });
    const registry = new QueueRegistry([sagaStepQueue]);
    const deadLetters = new DeadLetters(new QueueSet(registry, this.connection, this.prefix));
    const mailbox = new Mailbox(sagaStepQueue, (data, job) => engine.handle(data, job), { connection: this.workerConnection, prefix: this.prefix, metrics: this.metrics, deadLetters, log: this.log }, {
      concurrency,
      // A dead worker's step is picked up again after the lock runs out.
      lockDurationMs: Math.max(1000, Math.min(30_000, this.options.leaseTtlMs)),
      stalledIntervalMs: Math.max(500, Math.min(30_000, Math.floor(this.options.leaseTtlMs / 2))),
      maxStalledCount: 3,
    });
    this.engine = engine;
    this.mailbox = mailbox as Mailbox<unknown>;
    await mailbox.start((err) => this.log.error({ err: errorMessage(err) }, 'saga worker stopped'));
    const every = (ms: number, fn: () => Promise<unknown>, what: string) => {
      const t = setInterval(() => void fn().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, `${what} failed; next round retries`)), ms);
      t.unref();
      this.timers.push(t);
    };
    every(Math.max(50, Math.floor(this.options.leaseTtlMs / 3)), () => engine.renew(), 'lease renewal');
    every(this.options.recoveryIntervalMs, () => this.recover(), 'recovery sweep');
    this.log.info({ workerCount: concurrency, processId: this.processId }, 'saga orchestrator running');
  }

  /** Enqueues a resume for every saga nobody has moved for staleAfterMs (its worker died). */
  async recover(): Promise<number> {
    const stale = await staleSagas(this.pool, this.options.staleAfterMs, 500);
    const queue = this.stepQueue();
    // A saga that only waits in a backlog also looks stale: its resume is a prioritized job,
    // which BullMQ takes only when no plain (step) job waits, so a backlog is not amplified.
    await queue.addBulk(stale.map((s) => ({ name: 'resume', data: { saga_id: s.id, kind: 'resume' as const }, opts: { jobId: `saga.${s.id}.resume.sweep-${s.updated_ms}`, priority: 10 } })));
    if (stale.length > 0) this.log.info({ sagas: stale.length }, 'resuming sagas nobody moved');
    return stale.length;
  }

  async stop(timeoutMs = 10_000): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.mailbox?.stop(timeoutMs);
    this.mailbox = undefined;
    await this.engine?.releaseAll();
    this.engine = undefined;
    for (const o of this.owned.splice(0).reverse()) await Promise.resolve(o.close()).catch(() => undefined);
    this.queue = undefined;
  }

  describe(): Record<string, unknown> {
    return { processId: this.processId, held: this.engine?.held ?? 0, circuits: this.breakers.states(), defined: Object.fromEntries(this.versions) };
  }

  private async activeCounts(): Promise<Record<string, number>> {
    const { rows } = await this.pool.query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM sagas WHERE status IN ('pending', 'running', 'compensating') GROUP BY status`);
    return Object.fromEntries(['pending', 'running', 'compensating'].map((s) => [s, Number(rows.find((r) => r.status === s)?.n ?? 0)]));
  }
}

function stripUndefined(o: object, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([k, v]) => keys.includes(k) && v !== undefined));
}
