import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { SagaOrchestrator } from '../../actors/saga-coordinator/index.js';
import { ConflictError, Metrics, ValidationError } from '../../runtime/index.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';
import { EFFECTS_DDL, ORDER_STEPS, SagaKit, settled } from '../support/saga-kit.js';

/** The library API over real PostgreSQL and Redis, one worker orchestrator in this process. */
describe('saga orchestrator', () => {
  let db: pg.Pool;
  let kit: SagaKit;
  let worker: SagaOrchestrator;
  const customer = { id: 'c1', is_premium: false };
  const metrics = new Metrics({ defaultMetrics: false });

  beforeAll(async () => {
    const { redisUrl, databaseUrl } = testServices();
    const dbUrl = await freshDatabase(databaseUrl, uniquePrefix('saga').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 4 });
    await db.query(EFFECTS_DDL);
    kit = new SagaKit(db);
    worker = kit.orchestrator('order-processing', { databaseUrl: dbUrl, redisUrl, prefix: uniquePrefix('saga'), metrics });
    await worker.defineSaga('order', { version: 'v1', steps: ORDER_STEPS });
    await worker.start({ workerCount: 8 });
  });
  afterAll(async () => {
    await worker?.stop(5_000);
    await db?.end();
  });

  it('happy path: a parallel group runs concurrently, a false condition skips its step, results flow into the context', async () => {
    const id = await worker.startSaga({ sagaType: 'order', context: { order_id: 'o-1', customer, check_concurrency: true } });
    const s = await settled(worker, id);
    expect(s.status).toBe('completed');
    expect(s.steps.map((x) => [x.step_name, x.state, x.attempts])).toEqual([
      ['reserve', 'completed', 1],
      ['check_credit', 'completed', 1],
      ['check_stock', 'completed', 1],
      ['gift', 'skipped', 0],
      ['charge', 'completed', 1],
      ['ship', 'completed', 1],
    ]);
    expect(s.results.ship).toEqual({ shipped_with: `res-${id.slice(0, 8)}` });
    expect(s.definition_version).toBe('v1');
    expect(s.finished_at).not.toBeNull();
    expect(await kit.effects(id)).toHaveLength(5);
    // The premium customer gets the gift step.
    const premium = await worker.startSaga({ sagaType: 'order', context: { customer: { is_premium: true } } });
    expect((await settled(worker, premium)).steps.find((x) => x.step_name === 'gift')!.state).toBe('completed');
  });

  it('a step failing after its retries: completed steps are compensated in reverse order, status compensated', async () => {
    const id = await worker.startSaga({ sagaType: 'order', context: { customer: { is_premium: true }, fail_step: 'charge' } });
    const s = await settled(worker, id);
    expect(s.status).toBe('compensated');
    expect(s.failed_step).toBe('charge');
    expect(s.last_error).toContain('charge refused');
    const charge = s.steps.find((x) => x.step_name === 'charge')!;
    expect([charge.state, charge.attempts, charge.compensation_state]).toEqual(['failed', 3, null]);
    const comp = kit.eventsOf(id).filter((e) => e.startsWith('c|'));
    // gift (stage 3), then the validation group together (stage 2), then reserve (stage 1).
    expect(comp[0]).toBe('c|gift');
    expect(new Set(comp.slice(1, 3))).toEqual(new Set(['c|check_credit', 'c|check_stock']));
    expect(comp[3]).toBe('c|reserve');
    expect(comp).toHaveLength(4);
    expect(s.steps.find((x) => x.step_name === 'ship')!.state).toBe('cancelled');
  });

  it('a step that times out is compensated too, with the steps before it', async () => {
    const steps = ORDER_STEPS.map((x) => (x.step_name === 'ship' ? { ...x, timeout_ms: 150, retry_attempts: 0 } : x));
    const id = await worker.startSaga({ sagaType: 'order', steps, context: { customer, slow_step: 'ship', slow_ms: 5_000 } });
    const s = await settled(worker, id);
    expect(s.status).toBe('compensated');
    const ship = s.steps.find((x) => x.step_name === 'ship')!;
    expect([ship.state, ship.uncertain, ship.compensation_state]).toEqual(['failed', true, 'compensated']);
    expect(ship.last_error).toContain('timed out after 150 ms');
    const comp = kit.eventsOf(id).filter((e) => e.startsWith('c|'));
    expect(comp[0]).toBe('c|ship');
    expect(comp[1]).toBe('c|charge');
    expect(comp.at(-1)).toBe('c|reserve');
    // The timed-out attempt's transaction was rolled back: its effect never landed.
    expect((await kit.effects(id)).filter((e) => e === 'a|ship')).toEqual([]);
    // Inline steps that differ from the registered ones run under their own digest.
    expect(s.definition_version).toMatch(/^sha256:/);
  });

  it('a compensation that keeps failing: status failed naming the step, listed; a retry finishes it', async () => {
    const id = await worker.startSaga({ sagaType: 'order', context: { customer, fail_step: 'ship', fail_comp: 'check_stock' } });
    kit.brokenCompensations.add(id);
    const s = await settled(worker, id);
    expect(s.status).toBe('failed');
    expect(s.failed_step).toBe('check_stock');
    expect(s.attention).toBe('compensation_failed');
    const stock = s.steps.find((x) => x.step_name === 'check_stock')!;
    expect([stock.compensation_state, stock.compensation_attempts]).toEqual(['failed', 3]);
    expect(s.steps.find((x) => x.step_name === 'reserve')!.compensation_state).toBeNull();
    const listed = await worker.listSagas({ status: 'failed' });
    expect(listed.sagas.map((x) => x.saga_id)).toContain(id);
    expect((await worker.listSagas({ attention: true })).sagas.map((x) => x.saga_id)).toContain(id);

    kit.brokenCompensations.delete(id);
    await worker.retrySaga(id);
    const after = await settled(worker, id, ['compensated']);
    expect(after.attention).toBeNull();
    expect(after.steps.find((x) => x.step_name === 'reserve')!.compensation_state).toBe('compensated');
    await expect(worker.retrySaga(id)).rejects.toBeInstanceOf(ConflictError);
  });

  it('the same idempotency key returns the same saga; with another request it is a conflict', async () => {
    const key = `order-${uniquePrefix('k')}`;
    const a = await worker.startSaga({ sagaType: 'order', context: { customer, n: 1 }, idempotencyKey: key });
    const b = await worker.startSaga({ sagaType: 'order', context: { customer, n: 1 }, idempotencyKey: key });
    expect(b).toBe(a);
    await expect(worker.startSaga({ sagaType: 'order', context: { customer, n: 2 }, idempotencyKey: key })).rejects.toBeInstanceOf(ConflictError);
    await settled(worker, a);
    expect((await kit.effects(a)).filter((e) => e === 'a|reserve')).toHaveLength(1);
  });

  it('cancelSaga compensates what completed', async () => {
    const id = await worker.startSaga({ sagaType: 'order', context: { customer, slow_step: 'charge', slow_ms: 600 } });
    await eventually(async () => (await worker.getSagaStatus(id)).current_step === 'charge', 10_000, 20, 'charge under way');
    await worker.cancelSaga(id);
    const s = await settled(worker, id);
    expect(s.status).toBe('compensated');
    expect(s.last_error).toBe('cancelled by request');
    expect(s.steps.find((x) => x.step_name === 'charge')!.compensation_state).toBe('compensated');
    expect(s.steps.find((x) => x.step_name === 'ship')!.state).toBe('cancelled');
    await expect(worker.cancelSaga(id)).rejects.toBeInstanceOf(ConflictError);
  });

  it('an open circuit makes steps of that service wait instead of spending their attempts', async () => {
    kit.failingServices.add('payments');
    // charge has 3 attempts: its failures open the payments circuit (threshold 3).
    const a = await worker.startSaga({ sagaType: 'order', context: { customer } });
    expect((await settled(worker, a)).status).toBe('compensated');
    expect(worker.breakers.isOpen('payments')).toBe(true);
    const steps = ORDER_STEPS.map((x) => (x.step_name === 'charge' ? { ...x, retry_attempts: 0 } : x));
    const b = await worker.startSaga({ sagaType: 'order', steps, context: { customer } });
    await eventually(async () => (await worker.getSagaStatus(b)).current_step === 'charge', 10_000, 20, 'b reached charge');
    await new Promise((r) => setTimeout(r, 200));
    // Waiting: no attempt spent although the service is still failing.
    expect((await worker.getSagaStatus(b)).steps.find((x) => x.step_name === 'charge')!.attempts).toBe(0);
    kit.failingServices.delete('payments');
    const s = await settled(worker, b);
    expect(s.status).toBe('completed');
    expect(s.steps.find((x) => x.step_name === 'charge')!.attempts).toBe(1);
  });

  it('metrics: started, finished by status, durations, retries, active sagas', async () => {
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/concord_sagas_started_total\{saga_type="order"\} \d+/);
    expect(text).toMatch(/concord_sagas_finished_total\{saga_type="order",status="completed"\} [1-9]/);
    expect(text).toMatch(/concord_sagas_finished_total\{saga_type="order",status="compensated"\} [1-9]/);
    expect(text).toMatch(/concord_saga_duration_seconds_count\{saga_type="order",status="completed"\} [1-9]/);
    expect(text).toMatch(/concord_saga_step_retries_total\{service="payments",phase="action"\} [1-9]/);
    expect(text).toMatch(/concord_sagas_active\{status="running"\} \d+/);
  });

  it('bad input is refused naming the field: unknown type, bad step, invalid condition, missing handler', async () => {
    const issues = async (p: Promise<unknown>) => {
      const err = await p.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      return (err as ValidationError).issues.map((i) => `${i.field}: ${i.reason}`).join('\n');
    };
    expect(await issues(worker.startSaga({ sagaType: 'nope' }))).toContain('sagaType');
    expect(await issues(worker.startSaga({ sagaType: 'x', steps: [{ ...ORDER_STEPS[0]!, condition: 'customer.is_premium(' }] }))).toContain('steps.0.condition: invalid condition');
    expect(await issues(worker.startSaga({ sagaType: 'x', steps: [{ ...ORDER_STEPS[0]!, condition: 'constructor.constructor("x")()' }] }))).toContain('steps.0.condition');
    expect(await issues(worker.startSaga({ sagaType: 'x', steps: [{ ...ORDER_STEPS[0]!, step_name: 'unhandled' }] }))).toContain('steps.0.step_name: no step handler registered');
  });
});
