import { describe, expect, it } from 'vitest';
import { createLogger, Metrics, Supervisor, type Actor, type ActorContext, type RuntimeServices } from '../../runtime/index.js';

// The supervisor only needs a logger and metrics from the services.
const services = { log: createLogger('silent'), metrics: new Metrics({ defaultMetrics: false }) } as unknown as RuntimeServices;
const fast = { intensity: 10, periodMs: 60_000, backoff: { minMs: 1, maxMs: 5, jitter: 0 }, shutdownMs: 1_000 };
const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

function recorder(name: string, events: string[], behaviour: { failStart?: number; restart?: Actor['spec'] extends infer S ? S : never } = {}) {
  let ctx: ActorContext | undefined;
  let starts = 0;
  const actor: Actor = {
    name,
    spec: { ...fast, ...behaviour.restart },
    async start(c) {
      starts++;
      events.push(`${name}:start`);
      if (starts <= (behaviour.failStart ?? 0)) throw new Error('boom');
      ctx = c;
    },
    async stop() {
      events.push(`${name}:stop`);
    },
  };
  return { actor, crash: () => ctx!.fail(new Error('crash')), exit: () => ctx!.exit(), starts: () => starts };
}

describe('supervisor', () => {
  it('starts in order and stops in reverse order', async () => {
    const events: string[] = [];
    const a = recorder('a', events);
    const b = recorder('b', events);
    const s = new Supervisor([a.actor, b.actor], { services, onEscalate: () => undefined });
    await s.start();
    expect(s.snapshot().map((x) => x.state)).toEqual(['running', 'running']);
    await s.stop();
    expect(events).toEqual(['a:start', 'b:start', 'b:stop', 'a:stop']);
    expect(s.snapshot().map((x) => x.state)).toEqual(['stopped', 'stopped']);
  });

  it('permanent: restarted after a crash, counted', async () => {
    const events: string[] = [];
    const a = recorder('a', events);
    const s = new Supervisor([a.actor], { services, onEscalate: () => undefined });
    await s.start();
    a.crash();
    await tick();
    expect(a.starts()).toBe(2);
    expect(s.snapshot()[0]).toMatchObject({ state: 'running', restarts: 1, lastError: 'crash' });
    await s.stop();
  });

  it('transient: restarted after a crash but not after a normal exit', async () => {
    const events: string[] = [];
    const a = recorder('a', events, { restart: { restart: 'transient' } });
    const s = new Supervisor([a.actor], { services, onEscalate: () => undefined });
    await s.start();
    a.crash();
    await tick();
    expect(a.starts()).toBe(2);
    a.exit();
    await tick();
    expect(a.starts()).toBe(2);
    expect(s.snapshot()[0]!.state).toBe('stopped');
    await s.stop();
  });

  it('temporary: never restarted', async () => {
    const events: string[] = [];
    const a = recorder('a', events, { restart: { restart: 'temporary' } });
    const s = new Supervisor([a.actor], { services, onEscalate: () => undefined });
    await s.start();
    a.crash();
    await tick();
    expect(a.starts()).toBe(1);
    expect(s.snapshot()[0]!.state).toBe('stopped');
  });

  it('escalates once when restarts within the period exceed the intensity', async () => {
    const events: string[] = [];
    const escalations: string[] = [];
    const a = recorder('a', events, { failStart: 100, restart: { intensity: 2 } });
    const s = new Supervisor([a.actor], { services, onEscalate: (name) => escalations.push(name) });
    await s.start();
    await tick(100);
    expect(a.starts()).toBe(3); // first start + 2 restarts
    expect(escalations).toEqual(['a']);
    await s.stop();
  });

  it('refuses a bad spec with a precise message', () => {
    const bad: Actor = { name: 'x', spec: { intensity: -1 }, start: async () => undefined, stop: async () => undefined };
    expect(() => new Supervisor([bad], { services, onEscalate: () => undefined })).toThrow('actor x: intensity must be an integer >= 0, got -1');
    const dup = recorder('d', []).actor;
    expect(() => new Supervisor([dup, dup], { services, onEscalate: () => undefined })).toThrow('actor d is listed twice');
  });
});
