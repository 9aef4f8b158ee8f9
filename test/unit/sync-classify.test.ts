import { describe, expect, it } from 'vitest';
import { classify, type PortfolioRow } from '../../actors/sync-scheduler/classify.js';
import { transition } from '../../actors/sync-scheduler/status.js';
import { loadSyncConfig } from '../../actors/sync-scheduler/config.js';
import { SOURCES, type QueueEntry } from '../../actors/sync-scheduler/entries.js';
import { ConfigError } from '../../runtime/index.js';

const investment = SOURCES[0];
const entry = (over: Partial<QueueEntry> = {}): QueueEntry => ({
  id: 'a0000000-0000-0000-0000-000000000001',
  user_id: 'u1',
  amount: '10.50',
  currency: 'EUR',
  status: 'pending',
  created_at: '2026-01-01 00:00:00+00',
  updated_at: '2026-01-01 00:00:00+00',
  ...over,
});
const row = (over: Partial<PortfolioRow> = {}): PortfolioRow => ({ id: entry().id, user_id: 'u1', type: 'investment', amount: '10.50000000', currency: 'EUR', status: 'pending', ...over });

describe('status state machine', () => {
  it('moves forward, never backward or out of a final state', () => {
    expect(transition('pending', 'processing')).toBe('forward');
    expect(transition('pending', 'completed')).toBe('forward');
    expect(transition('processing', 'cancelled')).toBe('forward');
    expect(transition('processing', 'processing')).toBe('same');
    expect(transition('processing', 'pending')).toBe('backward');
    expect(transition('completed', 'failed')).toBe('backward');
    expect(transition('failed', 'processing')).toBe('backward');
  });
});

describe('classify', () => {
  it('creates missing rows, updates forward moves, leaves equal ones alone', () => {
    const plan = classify(
      investment,
      [entry({ id: 'new' }), entry({ status: 'processing' }), entry({ id: 'same', status: 'completed' })],
      new Map([
        [entry().id, row()],
        ['same', row({ id: 'same', status: 'completed' })],
      ]),
    );
    expect(plan.create.map((e) => e.id)).toEqual(['new']);
    expect(plan.update.map((e) => e.id)).toEqual([entry().id]);
    expect(plan.unchanged.map((e) => e.id)).toEqual(['same']);
    expect(plan.conflicts).toEqual([]);
  });

  it('compares amounts by value and currencies without padding', () => {
    const plan = classify(investment, [entry({ amount: '10.5', currency: 'EUR' })], new Map([[entry().id, row({ currency: 'EUR' })]]));
    expect(plan.unchanged).toHaveLength(1);
  });

  it('reports every mismatched immutable field, a wrong type included', () => {
    const plan = classify(SOURCES[1], [entry({ user_id: 'u2', amount: '11' })], new Map([[entry().id, row()]]));
    expect(plan.conflicts).toEqual([expect.objectContaining({ kind: 'immutable_mismatch', fields: ['user_id', 'type', 'amount'] })]);
  });

  it('turns a backward move and an unknown status into conflicts', () => {
    const plan = classify(investment, [entry({ status: 'pending' }), entry({ id: 'x', status: 'teleported' })], new Map([[entry().id, row({ status: 'processing' })]]));
    expect(plan.conflicts.map((c) => c.kind)).toEqual(['backward_transition', 'unknown_status']);
    expect(plan.update).toEqual([]);
  });
});

describe('sync config', () => {
  it('is off without both URIs, on with them, with profile defaults', () => {
    expect(loadSyncConfig({}).enabled).toBe(false);
    const prod = loadSyncConfig({ QUEUE_DB_URI: 'postgres://q/db', USER_PORTFOLIO_DB_URI: 'postgres://p/db' });
    expect(prod).toMatchObject({ enabled: true, intervalSeconds: 30, batchSize: 100 });
    const dev = loadSyncConfig({ QUEUE_DB_URI: 'postgres://q/db', USER_PORTFOLIO_DB_URI: 'postgres://p/db', CONCORD_PROFILE: 'development' });
    expect(dev).toMatchObject({ intervalSeconds: 15, batchSize: 50 });
  });

  it('names each bad variable', () => {
    try {
      loadSyncConfig({ SYNC_ENABLED: 'true', QUEUE_DB_URI: 'mysql://x', SYNC_INTERVAL: '0', BATCH_SIZE: 'many' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const vars = (err as ConfigError).problems.map((p) => p.variable);
      expect(vars).toEqual(expect.arrayContaining(['QUEUE_DB_URI', 'SYNC_INTERVAL', 'BATCH_SIZE', 'USER_PORTFOLIO_DB_URI']));
    }
  });
});
