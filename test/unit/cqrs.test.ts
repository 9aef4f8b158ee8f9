import { describe, expect, it } from 'vitest';
import { BaseCommand, BaseQuery, CommandBus, HandlerNotFoundError, LogReader, QueryBus, Upcasters, type EventStore, type StoredEvent, type ValidationResult } from '../../cqrs/index.js';
import { loadProjectionsConfig } from '../../actors/projections/config.js';
import { ConfigError } from '../../runtime/index.js';

const event = (type: string, schemaVersion: number, data: unknown): StoredEvent => ({ id: 'e', streamId: 's', version: 1, position: 1, type, schemaVersion, data, metadata: {}, time: new Date() });

class Ping extends BaseCommand {
  constructor(readonly n: number) {
    super();
  }
  override validate(): ValidationResult {
    return this.n > 0 ? { is_valid: true, errors: [] } : { is_valid: false, errors: ['n must be > 0'] };
  }
}

describe('upcasters', () => {
  it('chain v1 -> v2 -> v3 one step at a time and leave other types alone', () => {
    const u = new Upcasters()
      .register('t', 1, (d) => ({ ...(d as object), b: 2 }))
      .register('t', 2, (d) => ({ ...(d as object), c: 3 }));
    expect(u.upcast(event('t', 1, { a: 1 }))).toMatchObject({ schemaVersion: 3, data: { a: 1, b: 2, c: 3 } });
    expect(u.upcast(event('t', 2, { a: 1 }))).toMatchObject({ schemaVersion: 3, data: { a: 1, c: 3 } });
    const other = event('u', 1, { a: 1 });
    expect(u.upcast(other)).toBe(other);
    expect(() => u.register('t', 1, (d) => d)).toThrow(/already registered/);
    expect(() => u.register('t', 0, (d) => d)).toThrow(/fromVersion/);
  });
});

describe('command and query buses', () => {
  it('reject an invalid command before its handler runs; a missing handler is a clear error', async () => {
    let ran = 0;
    const bus = new CommandBus({} as EventStore).register(Ping, { handle: async (c) => (ran++, { n: c.n }) });
    const rejected = await bus.execute(new Ping(0));
    expect(rejected).toMatchObject({ status: 'rejected', errors: ['n must be > 0'], result_data: null, events_generated: [] });
    expect(ran).toBe(0);
    expect(await bus.execute(new Ping(2))).toMatchObject({ status: 'completed', result_data: { n: 2 } });
    expect(ran).toBe(1);
    class Pong extends BaseCommand {}
    await expect(bus.execute(new Pong())).rejects.toBeInstanceOf(HandlerNotFoundError);
    expect(() => bus.register(Ping, { handle: async () => undefined })).toThrow(/already registered/);
  });

  it('a query failing validate() is a 400 naming the reason', async () => {
    class Q extends BaseQuery {
      override validate(): ValidationResult {
        return { is_valid: false, errors: ['Order ID is required'] };
      }
    }
    const bus = new QueryBus().register(Q, { handle: async () => 1 });
    await expect(bus.execute(new Q())).rejects.toMatchObject({ status: 400, issues: [{ field: 'Q', reason: 'Order ID is required' }] });
    expect(() => new QueryBus().register(Q, { handle: async () => 1 }, { cache_ttl_seconds: 0 })).toThrow(/cache_ttl_seconds/);
  });
});

describe('log reader fence', () => {
  it('holds the safe position until every transaction that could hold a position up to the head has ended', async () => {
    const answers: Array<Record<string, string | null>> = [
      { head: '10', xid: '105' }, // head 10 seen; ids below 105 may hold positions <= 10
      { xmin: '100' }, // 100 still running
      { xmin: '104' }, // 104 still running
      { xmin: '106' }, // all below 105 ended: 10 is final
      { head: '10', xid: null }, // idle: no id spent, nothing to do
      { head: '15', xid: '110' },
      { xmin: '110' }, // nothing below 110 running: 15 at once
    ];
    const sql: string[] = [];
    const db = { query: async (text: string) => (sql.push(text), { rows: [answers.shift()!] }) } as never;
    const r = new LogReader();
    expect((await r.safePosition(db)).safe).toBe(0);
    expect((await r.safePosition(db)).safe).toBe(0);
    expect((await r.safePosition(db)).safe).toBe(10);
    expect(await r.safePosition(db)).toEqual({ safe: 10, head: 10 });
    expect(await r.safePosition(db)).toEqual({ safe: 15, head: 15 });
    expect(answers).toHaveLength(0);
    expect(sql.filter((q) => q.includes('pg_current_xact_id')).length).toBe(3);
  });
});

describe('projections config', () => {
  it('names a bad variable, its value and what was expected', () => {
    const err = (() => {
      try {
        loadProjectionsConfig({ DATABASE_URL: 'postgres://x/y', PROJECTIONS: 'order-summary,nope', PROJECTION_BATCH_SIZE: '0', PROJECTION_FAILURE_POLICY: 'retry' });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    const vars = (err as ConfigError).problems.map((p) => p.variable);
    expect(vars).toEqual(expect.arrayContaining(['PROJECTIONS', 'PROJECTION_BATCH_SIZE', 'PROJECTION_FAILURE_POLICY']));
    expect(loadProjectionsConfig({ DATABASE_URL: 'postgres://x/y', PROJECTIONS: 'order-summary' })).toMatchObject({ enabled: true, projections: ['order-summary'], batchSize: 1000, cacheTtlSeconds: 300, enableCaching: true, failurePolicy: undefined });
    expect(loadProjectionsConfig({}).enabled).toBe(false);
  });
});
