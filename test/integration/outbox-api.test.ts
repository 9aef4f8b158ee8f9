import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { enqueueMany } from '../../actors/outbox-relay/index.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';

/** The outbox's HTTP surface over a real relay (Redis Streams broker), PostgreSQL and Redis. */
describe('outbox API', () => {
  let proc: RunningProcess;
  let db: pg.Pool;
  let base: string;

  beforeAll(async () => {
    const { redisUrl, databaseUrl } = testServices();
    const dbUrl = await freshDatabase(databaseUrl, uniquePrefix('obapi').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 2 });
    const env = runtimeEnv({ redisUrl, databaseUrl: dbUrl, prefix: uniquePrefix('obapi') }, {
      KAFKA_BROKERS: '',
      OUTBOX_POLLING_INTERVAL_MS: '100',
      OUTBOX_RETRY_BACKOFF_MS: '20',
      OUTBOX_DEAD_LETTER_THRESHOLD: '2',
    });
    proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', undefined, env), onEscalate: () => undefined });
    base = proc.http.url;
  });
  afterAll(async () => {
    await proc?.stop(10_000);
    await db?.end();
  });

  const get = async (path: string) => {
    const res = await fetch(`${base}${path}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('lists events by status and aggregate, reports stats, and puts a dead event back to pending', async () => {
    const c = await db.connect();
    let ids: string[];
    try {
      await c.query('BEGIN');
      ids = await enqueueMany(c, [
        { topic: 'api.events', eventType: 'created', aggregateId: 'a1', aggregateType: 'thing', payload: { n: 1 } },
        { topic: 'api.events', eventType: 'updated', aggregateId: 'a1', aggregateType: 'thing', payload: { n: 2 } },
        // Larger than the broker takes (1 MB): refused at publish time, a poison event.
        { topic: 'api.events', eventType: 'created', aggregateId: 'p1', aggregateType: 'thing', payload: { big: 'x'.repeat(1_100_000) } },
      ]);
      await c.query('COMMIT');
    } finally {
      c.release();
    }
    await eventually(async () => (await get('/api/v1/outbox/stats')).body.dead === 1 && (await get('/api/v1/outbox/stats')).body.published === 2, 20_000, 100, 'two published, one dead');
    const stats = (await get('/api/v1/outbox/stats')).body;
    expect(stats).toMatchObject({ pending: 0, published: 2, dead: 1, oldestPendingSeconds: 0 });

    const byAggregate = (await get('/api/v1/outbox/events?aggregate_id=a1')).body as { total: number; events: Array<{ id: string; seq: string; status: string }> };
    expect(byAggregate.total).toBe(2);
    expect(byAggregate.events.map((e) => e.id)).toEqual([ids[0], ids[1]]); // oldest first for one aggregate
    expect(byAggregate.events.every((e) => e.status === 'published')).toBe(true);

    const dead = (await get('/api/v1/outbox/events?status=dead')).body as { events: Array<{ id: string; attempts: number; last_error: string }> };
    expect(dead.events).toEqual([expect.objectContaining({ id: ids[2], attempts: 2, last_error: expect.any(String) })]);

    const retried = await fetch(`${base}/api/v1/outbox/events/${ids[2]}/retry`, { method: 'POST' });
    expect(retried.status).toBe(202);
    // It fails again (still too large) and comes back dead after the threshold.
    await eventually(async () => {
      const { rows } = await db.query<{ status: string; attempts: number }>('SELECT status, attempts FROM concord_outbox WHERE id = $1', [ids[2]]);
      return rows[0]?.status === 'dead' && rows[0].attempts === 2 ? true : undefined;
    }, 20_000, 100, 'dead again after retry');
    const again = await fetch(`${base}/api/v1/outbox/events/${ids[0]}/retry`, { method: 'POST' });
    expect(again.status).toBe(404); // a published event is not dead
  });

  it('refuses bad input naming the field', async () => {
    const bad = await get('/api/v1/outbox/events?status=lost&limit=9999');
    expect(bad.status).toBe(400);
    const fields = (bad.body.error as { details: { issues: Array<{ field: string }> } }).details.issues.map((i) => i.field).sort();
    expect(fields).toEqual(['query.limit', 'query.status']);
    const notUuid = await fetch(`${base}/api/v1/outbox/events/not-a-uuid/retry`, { method: 'POST' });
    expect(notUuid.status).toBe(400);
  });

  it('enqueue refuses a bad event naming the field, inside the caller transaction', async () => {
    const c = await db.connect();
    try {
      await c.query('BEGIN');
      await expect(enqueueMany(c, [{ topic: 'ok', eventType: '', aggregateId: 'x', aggregateType: 'y', payload: {} }])).rejects.toMatchObject({ status: 400, issues: [{ field: 'eventType' }] });
      await c.query('ROLLBACK');
    } finally {
      c.release();
    }
  });
});
