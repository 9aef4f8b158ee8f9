import { describe, expect, it } from 'vitest';
import { eligible, sendOrder, type PendingEvent } from '../../actors/outbox-relay/batch.js';
import { loadOutboxConfig, retryDelayMs } from '../../actors/outbox-relay/config.js';
import { ConfigError } from '../../runtime/index.js';

const e = (seq: number, aggregate: string, priority = 0): PendingEvent => ({
  id: `id-${seq}`,
  seq: String(seq),
  aggregate_id: aggregate,
  aggregate_type: 't',
  topic: 'x',
  event_type: 'y',
  payload_json: '{}',
  headers: {},
  priority,
  attempts: 0,
  max_attempts: null,
});

describe('outbox batch eligibility', () => {
  it('keeps a prefix of each aggregate: an unpublished event outside the batch holds back the later ones', () => {
    const candidates = [e(1, 'a'), e(3, 'a'), e(2, 'b'), e(5, 'b')];
    const unpublished = new Map([
      ['a', ['1', '3']],
      ['b', ['2', '4', '5']], // 4 is in backoff or dead: not a candidate
    ]);
    expect(eligible(candidates, unpublished).map((c) => c.seq)).toEqual(['1', '3', '2']);
  });

  it('holds back everything of an aggregate whose first unpublished event is not due', () => {
    expect(eligible([e(7, 'a')], new Map([['a', ['6', '7']]]))).toEqual([]);
  });

  it('sends higher-priority aggregates first, never reordering one aggregate', () => {
    const ordered = sendOrder([e(10, 'b', 5), e(1, 'a'), e(2, 'a'), e(3, 'c'), e(4, 'b')]);
    expect(ordered.map((x) => `${x.aggregate_id}${x.seq}`)).toEqual(['b4', 'b10', 'a1', 'a2', 'c3']);
  });

  it('compares seqs as integers, not strings', () => {
    expect(sendOrder([e(10, 'a'), e(9, 'a')]).map((x) => x.seq)).toEqual(['9', '10']);
  });
});

describe('outbox config', () => {
  it('has the seed defaults and a capped exponential backoff', () => {
    const c = loadOutboxConfig({ DATABASE_URL: 'postgres://x/y' });
    expect(c).toMatchObject({ enabled: true, batchSize: 2000, pollingIntervalMs: 1000, maxRetryAttempts: 5, retryBackoffMs: 1000, deadLetterThreshold: 10, deadLetterTopic: 'concord.outbox.dlq' });
    expect([1, 2, 3, 6, 7, 20].map((a) => retryDelayMs(c, a))).toEqual([1000, 2000, 4000, 32000, 32000, 32000]);
    expect(loadOutboxConfig({}).enabled).toBe(false);
  });

  it('names bad values', () => {
    expect(() => loadOutboxConfig({ DATABASE_URL: 'postgres://x/y', OUTBOX_BATCH_SIZE: '0', OUTBOX_DEAD_LETTER_TOPIC: 'bad topic' })).toThrow(ConfigError);
    let caught: unknown;
    try {
      loadOutboxConfig({ OUTBOX_ENABLED: 'true' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).problems[0]).toMatchObject({ variable: 'DATABASE_URL' });
  });
});
