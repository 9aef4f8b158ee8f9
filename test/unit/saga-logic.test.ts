import { describe, expect, it } from 'vitest';
import { compileCondition, ConditionError, parseSagaSteps, sagaStages, stepsDigest } from '../../queues/index.js';
import { inlineNext, planCompensation, planForward } from '../../actors/saga-coordinator/plan.js';
import { Batcher } from '../../actors/saga-coordinator/batcher.js';
import type { StepState } from '../../actors/saga-coordinator/store.js';
import { ValidationError } from '../../runtime/index.js';

describe('saga condition (jsep AST, no eval)', () => {
  const ctx = { customer: { is_premium: true, tier: 'gold', orders: [3, 5] }, total: 120, gift: false, name: 'x' };
  it.each([
    ['customer.is_premium', true],
    ['!customer.is_premium', false],
    ['total >= 100 && !gift', true],
    ['total > 200 || customer.tier == "gold"', true],
    ['customer.orders[1] === 5', true],
    ['customer.orders.length == 2', true],
    ['missing.deep.field', false],
    ['total * 2 - 40 == 200', true],
    ['gift ? 1 : 0', false],
    ['"1" == 1', false],
  ])('%s -> %s', (expr, expected) => {
    expect(compileCondition(expr).test(ctx)).toBe(expected);
  });

  it.each([
    ['process.exit()', 'CallExpression'],
    ['this.x', 'ThisExpression'],
    ['constructor', 'constructor'],
    ['customer.__proto__', '__proto__'],
    ['customer["constructor"]', 'constructor'],
    ['customer[total]', 'literal indexes'],
    ['a, b', 'Compound'],
    ['total >>> 1', 'operator'],
    ['total >=', ''],
    ['', 'empty'],
  ])('refuses %j', (expr, reason) => {
    let err: unknown;
    try {
      compileCondition(expr);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConditionError);
    expect((err as ConditionError).message).toContain(reason);
  });

  it('never reaches the prototype chain or functions of the data', () => {
    expect(compileCondition('toString').test({})).toBe(false);
    expect(compileCondition('x.hasOwnProperty').test({ x: {} })).toBe(false);
    expect(compileCondition('f').test({ f: () => true })).toBe(false);
  });
});

const step = (name: string, extra: Record<string, unknown> = {}) => ({ step_name: name, service_name: 'svc', action: 'do', compensation_action: 'undo', ...extra });

describe('saga step definitions', () => {
  it('groups consecutive parallel steps into stages and digests the definition', () => {
    const steps = parseSagaSteps([step('a'), step('b', { parallel_group: 'g' }), step('c', { parallel_group: 'g' }), step('d')]);
    expect(sagaStages(steps)).toEqual([['a'], ['b', 'c'], ['d']]);
    expect(stepsDigest(steps)).toBe(stepsDigest(parseSagaSteps([step('a'), step('b', { parallel_group: 'g' }), step('c', { parallel_group: 'g' }), step('d')])));
    expect(stepsDigest(steps)).not.toBe(stepsDigest(parseSagaSteps([step('a')])));
  });

  it.each([
    [[step('a', { condition: 'x(' })], 'steps.0.condition'],
    [[step('a'), step('a')], 'steps.1.step_name'],
    [[step('a', { parallel_group: 'g' }), step('b'), step('c', { parallel_group: 'g' })], 'steps.2.parallel_group'],
    [[step('a', { timeout_ms: 0 })], 'steps.0.timeout_ms'],
    [[step('a', { surprise: 1 })], 'steps.0'],
    [[{ step_name: 'a' }], 'steps.0.service_name'],
    [[], 'steps'],
  ])('a bad definition is a 400 naming %#', (steps, field) => {
    let err: unknown;
    try {
      parseSagaSteps(steps);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).issues.map((i) => i.field)).toContain(field);
  });
});

const st = (state: StepState['state'], extra: Partial<StepState> = {}): StepState => ({ state, comp_state: null, attempts: 1, compensation_attempts: 0, uncertain: false, ...extra });

describe('saga planning', () => {
  const stages = [['a'], ['b', 'c'], ['d']];
  it('runs stage by stage, a parallel group together, and completes when all are done or skipped', () => {
    const states = new Map([['a', st('completed')], ['b', st('pending')], ['c', st('pending')], ['d', st('pending')]]);
    expect(planForward(stages, states, new Set())).toEqual({ kind: 'run', steps: ['b', 'c'] });
    expect(planForward(stages, states, new Set(['b']))).toEqual({ kind: 'run', steps: ['c'] });
    expect(planForward(stages, states, new Set(['b', 'c']))).toEqual({ kind: 'wait' });
    states.set('b', st('completed'));
    states.set('c', st('skipped'));
    expect(planForward(stages, states, new Set())).toEqual({ kind: 'run', steps: ['d'] });
    states.set('d', st('completed'));
    expect(planForward(stages, states, new Set())).toEqual({ kind: 'complete' });
  });

  it('compensates in reverse stage order, a group together, including a timed-out step, and waits for in-flight actions', () => {
    const states = new Map([['a', st('completed')], ['b', st('completed')], ['c', st('failed', { uncertain: true })], ['d', st('pending')]]);
    expect(planCompensation(stages, states, new Set(['x']), new Set())).toEqual({ kind: 'wait' });
    expect(planCompensation(stages, states, new Set(), new Set())).toEqual({ kind: 'compensate', steps: ['b', 'c'] });
    states.set('b', st('completed', { comp_state: 'compensated' }));
    expect(planCompensation(stages, states, new Set(), new Set(['c']))).toEqual({ kind: 'wait' });
    states.set('c', st('failed', { uncertain: true, comp_state: 'compensated' }));
    expect(planCompensation(stages, states, new Set(), new Set())).toEqual({ kind: 'compensate', steps: ['a'] });
    states.set('a', st('completed', { comp_state: 'failed' }));
    expect(planCompensation(stages, states, new Set(), new Set())).toEqual({ kind: 'failed', step: 'a' });
    states.set('b', st('completed', { comp_state: 'failed' }));
    states.set('c', st('failed', { uncertain: true, comp_state: 'running' }));
    // b's compensation failed for good; its sibling c is still undone first (and waited for).
    expect(planCompensation(stages, states, new Set(), new Set(['c']))).toEqual({ kind: 'wait' });
    expect(planCompensation(stages, states, new Set(), new Set())).toEqual({ kind: 'compensate', steps: ['c'] });
    states.set('c', st('failed', { uncertain: true, comp_state: 'compensated' }));
    expect(planCompensation(stages, states, new Set(), new Set())).toEqual({ kind: 'failed', step: 'b' });
    states.set('b', st('completed', { comp_state: 'compensated' }));
    states.set('a', st('completed', { comp_state: 'compensated' }));
    expect(planCompensation(stages, states, new Set(), new Set())).toEqual({ kind: 'compensated' });
  });

  it('a step that failed cleanly (no timeout) is not compensated; one abandoned while running is', () => {
    const states = new Map([['a', st('failed')], ['b', st('running')], ['c', st('pending')], ['d', st('pending')]]);
    expect(planCompensation(stages, states, new Set(), new Set())).toEqual({ kind: 'compensate', steps: ['b'] });
  });

  it('a job runs the next step itself only when it is the single pending step and runnable here', () => {
    const states = new Map([['a', st('completed')], ['b', st('pending')], ['c', st('pending')], ['d', st('pending')]]);
    const here = () => true;
    expect(inlineNext(planForward([['a'], ['b'], ['d']], states, new Set()), states, here)).toBe('b');
    // a parallel group goes through the queue, one job per step
    expect(inlineNext(planForward(stages, states, new Set()), states, here)).toBeUndefined();
    expect(inlineNext(planForward([['a'], ['b']], states, new Set()), states, () => false)).toBeUndefined();
    // a step left running (abandoned by a dead worker) is re-run through its own job
    states.set('b', st('running'));
    expect(inlineNext(planForward([['a'], ['b']], states, new Set()), states, here)).toBeUndefined();
    expect(inlineNext({ kind: 'compensate', steps: ['a'] }, states, here)).toBeUndefined();
  });
});

describe('Batcher (group commit of saga statements)', () => {
  it('sends calls made together as one batch, never two of one key in a batch, and fails only the item that failed', async () => {
    const batches: string[][] = [];
    const b = new Batcher<string, string>({
      run: async (items) => {
        batches.push(items);
        return items.map((i) => (i.startsWith('bad') ? new Error(`no ${i}`) : i.toUpperCase()));
      },
      runOne: async (i) => {
        batches.push([i]);
        return i.toUpperCase();
      },
      shape: () => 's',
      key: (i) => i.slice(0, 1),
      maxBatch: 10,
      maxInFlight: 1,
    });
    const rs = await Promise.allSettled(['a1', 'b1', 'a2', 'bad'].map((i) => b.add(i)));
    expect(rs.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual(['A1', 'B1', 'A2', 'no bad']);
    // a2 and bad share a key with a1 and b1: they wait for the next batch.
    expect(batches).toEqual([['a1', 'b1'], ['a2', 'bad']]);
  });

  it('when the statement fails as a whole, each item is retried alone', async () => {
    const alone: string[] = [];
    const b = new Batcher<string, string>({
      run: async () => {
        throw new Error('deadlock detected');
      },
      runOne: async (i) => {
        alone.push(i);
        if (i === 'y') throw new Error('y refused');
        return i;
      },
      shape: () => 's',
      maxBatch: 10,
      maxInFlight: 1,
    });
    const rs = await Promise.allSettled(['x', 'y', 'z'].map((i) => b.add(i)));
    expect(rs.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(alone.sort()).toEqual(['x', 'y', 'z']);
  });
});
