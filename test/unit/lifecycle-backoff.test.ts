import { describe, expect, it } from 'vitest';
import { backoffDelay, IllegalTransitionError, Lifecycle } from '../../runtime/index.js';
import { defineQueue, dlqName } from '../../queues/index.js';
import { z } from 'zod';

describe('lifecycle', () => {
  it('follows the allowed transitions and reports each change', () => {
    const seen: string[] = [];
    const l = new Lifecycle('a', (from, to) => seen.push(`${from}->${to}`));
    l.moveTo('starting');
    l.moveTo('running');
    l.moveTo('draining');
    l.moveTo('stopped');
    expect(seen).toEqual(['stopped->starting', 'starting->running', 'running->draining', 'draining->stopped']);
  });

  it('throws on an illegal transition and stays where it was', () => {
    const l = new Lifecycle('b');
    expect(() => l.moveTo('running')).toThrow(IllegalTransitionError);
    expect(() => l.moveTo('running')).toThrow('b: illegal transition stopped -> running');
    expect(l.state).toBe('stopped');
    l.moveTo('starting');
    l.moveTo('failed');
    expect(() => l.moveTo('draining')).toThrow(IllegalTransitionError);
    l.moveTo('starting'); // a failed actor may be restarted
    expect(l.state).toBe('starting');
  });
});

describe('backoff', () => {
  it('doubles from minMs, is capped at maxMs, and jitters downward within the fraction', () => {
    const opts = { minMs: 100, maxMs: 1_000, jitter: 0.2 };
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, opts, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([0, 1, 2].map((a) => backoffDelay(a, opts, () => 0))).toEqual([80, 160, 320]);
    expect(backoffDelay(0, { ...opts, jitter: 0 }, Math.random)).toBe(100);
  });
});

describe('queue definitions', () => {
  it('validates names and options, and names the DLQ', () => {
    const q = defineQueue({ name: 'cdc.apply', description: 'd', schema: z.object({}) });
    expect(q.jobOptions).toMatchObject({ attempts: 5, backoff: { type: 'exponential' } });
    expect(dlqName(q.name)).toBe('cdc.apply.dlq');
    expect(() => defineQueue({ name: 'Bad:Name', description: 'd', schema: z.object({}) })).toThrow(/dotted lower-case/);
    expect(() => defineQueue({ name: 'x.dlq', description: 'd', schema: z.object({}) })).toThrow(/must not end with \.dlq/);
    expect(() => defineQueue({ name: 'x', description: 'd', schema: z.object({}), jobOptions: { attempts: 0 } })).toThrow(/attempts must be an integer >= 1/);
  });
});
