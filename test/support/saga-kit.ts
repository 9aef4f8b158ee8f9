import type pg from 'pg';
import { createLogger } from '../../runtime/index.js';
import { SagaOrchestrator, type SagaOrchestratorOptions, type StepHandlerContext } from '../../actors/saga-coordinator/index.js';
import type { SagaStatusView, SagaStepInput } from '../../queues/index.js';
import { eventually } from './child.js';

/** An order saga: a parallel validation group, a conditional gift, a retried charge. */
export const ORDER_STEPS: SagaStepInput[] = [
  { step_name: 'reserve', service_name: 'inventory', action: 'reserve', compensation_action: 'release' },
  { step_name: 'check_credit', service_name: 'customers', action: 'check', compensation_action: 'uncheck', parallel_group: 'validation' },
  { step_name: 'check_stock', service_name: 'inventory', action: 'check', compensation_action: 'uncheck', parallel_group: 'validation' },
  { step_name: 'gift', service_name: 'gifts', action: 'add_gift', compensation_action: 'remove_gift', condition: 'customer.is_premium' },
  { step_name: 'charge', service_name: 'payments', action: 'charge', compensation_action: 'refund', retry_attempts: 2 },
  { step_name: 'ship', service_name: 'shipping', action: 'ship', compensation_action: 'cancel_shipment' },
];

export const EFFECTS_DDL = `CREATE TABLE IF NOT EXISTS test_effects (saga_id uuid NOT NULL, step text NOT NULL, phase text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`;

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    });
  });

/**
 * In-process handlers driven by the saga context: `fail_step` makes that step's action
 * throw, `slow_step`/`slow_ms` makes it slow, `check_concurrency` makes the two checks
 * wait for each other (they deadlock unless run concurrently). Effects are written
 * through the step's transaction; `events` keeps the order handlers ran in.
 */
export class SagaKit {
  readonly events: string[] = [];
  /** Saga ids whose `fail_comp` compensation keeps failing while listed here. */
  readonly brokenCompensations = new Set<string>();
  /** Services whose actions fail while listed here. */
  readonly failingServices = new Set<string>();
  private readonly arrivals = new Map<string, { n: number; release: () => void; all: Promise<void> }>();

  constructor(private readonly db: pg.Pool) {}

  orchestrator(name: string, opts: SagaOrchestratorOptions): SagaOrchestrator {
    const o = new SagaOrchestrator(name, {
      retryDelayMs: 10,
      retryMaxDelayMs: 50,
      leaseTtlMs: 2_000,
      recoveryIntervalMs: 500,
      staleAfterMs: 3_000,
      breakerThreshold: 3,
      breakerHalfOpenMs: 600,
      compensationRetryAttempts: 2,
      stepRetryAttempts: 1,
      log: createLogger((process.env.SAGA_TEST_LOG as 'info' | undefined) ?? 'silent'),
      ...opts,
    });
    for (const s of ORDER_STEPS) {
      o.registerStepHandler(s.step_name, (ctx) => this.act(ctx));
      o.registerCompensationHandler(s.step_name, (ctx) => this.compensate(ctx));
    }
    return o;
  }

  private async effect(ctx: StepHandlerContext): Promise<void> {
    const tx = await ctx.transaction();
    await tx.query('INSERT INTO test_effects (saga_id, step, phase) VALUES ($1, $2, $3)', [ctx.sagaId, ctx.stepName, ctx.phase]);
  }

  private async act(ctx: StepHandlerContext): Promise<unknown> {
    const c = ctx.context;
    this.events.push(`${ctx.sagaId}|a|${ctx.stepName}`);
    if (c.check_concurrency && ctx.stepName.startsWith('check_')) await this.meet(ctx.sagaId);
    if (c.fail_step === ctx.stepName) throw new Error(`${ctx.stepName} refused`);
    if (this.failingServices.has(ctx.serviceName)) throw new Error(`${ctx.serviceName} is down`);
    if (c.slow_step === ctx.stepName) await sleep(Number(c.slow_ms), ctx.signal);
    await this.effect(ctx);
    if (ctx.stepName === 'reserve') return { reservation_id: `res-${ctx.sagaId.slice(0, 8)}` };
    if (ctx.stepName === 'ship') return { shipped_with: c.reservation_id ?? null };
    return { [`${ctx.stepName}_ok`]: true };
  }

  private async compensate(ctx: StepHandlerContext): Promise<unknown> {
    this.events.push(`${ctx.sagaId}|c|${ctx.stepName}`);
    if (ctx.context.fail_comp === ctx.stepName && this.brokenCompensations.has(ctx.sagaId)) throw new Error(`${ctx.action} of ${ctx.stepName} refused`);
    await this.effect(ctx);
    return { undone: true };
  }

  /** Both checks of a saga must arrive before either goes on. */
  private meet(sagaId: string): Promise<void> {
    let m = this.arrivals.get(sagaId);
    if (!m) {
      let release!: () => void;
      const all = new Promise<void>((r) => (release = r));
      m = { n: 0, release, all };
      this.arrivals.set(sagaId, m);
    }
    if (++m.n === 2) m.release();
    return Promise.race([m.all, sleep(3_000).then(() => Promise.reject(new Error('parallel steps did not run concurrently')))]);
  }

  eventsOf(sagaId: string): string[] {
    return this.events.filter((e) => e.startsWith(sagaId)).map((e) => e.slice(sagaId.length + 1));
  }

  async effects(sagaId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ step: string; phase: string }>('SELECT step, phase FROM test_effects WHERE saga_id = $1 ORDER BY at', [sagaId]);
    return rows.map((r) => `${r.phase === 'action' ? 'a' : 'c'}|${r.step}`);
  }
}

export async function settled(o: SagaOrchestrator, id: string, statuses = ['completed', 'compensated', 'failed'], timeoutMs = 20_000): Promise<SagaStatusView> {
  return eventually(
    async () => {
      const s = await o.getSagaStatus(id);
      return statuses.includes(s.status) && !(s.status === 'running' && s.attention === null) ? s : undefined;
    },
    timeoutMs,
    50,
    `saga ${id} ${statuses.join('|')}`,
  );
}
