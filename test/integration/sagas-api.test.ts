import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig, FencedError } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { SagaOrchestrator } from '../../actors/saga-coordinator/index.js';
import { claimSaga, claimSagas, renewLeases, writeSaga, writeSagas } from '../../actors/saga-coordinator/store.js';
import { ConflictError } from '../../runtime/errors.js';
import { parseSagaSteps, sagaStepQueue, startSagaRecord } from '../../queues/index.js';
import { insertSagas } from '../../queues/sagas.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { signHs256, TEST_SECRET } from '../support/jwt.js';
import { eventually } from '../support/child.js';
import { EFFECTS_DDL, ORDER_STEPS, SagaKit, settled } from '../support/saga-kit.js';

interface Body {
  saga_id: string;
  status: string;
  sagas: Array<{ saga_id: string }>;
  steps: Array<{ step_name: string; state: string }>;
  error?: { details: { issues: Array<{ field: string; reason: string }> } };
}

/** The HTTP API (api role) beside an in-process worker; version reporting; the fencing of stale lease holders. */
describe('sagas over HTTP, versions and fencing', () => {
  let db: pg.Pool;
  let dbUrl: string;
  let redisUrl: string;
  let kit: SagaKit;
  let worker: SagaOrchestrator;
  let api: RunningProcess;
  let token: string;
  const prefix = uniquePrefix('sagapi');

  beforeAll(async () => {
    ({ redisUrl } = testServices());
    dbUrl = await freshDatabase(testServices().databaseUrl, uniquePrefix('sagapi').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 4 });
    await db.query(EFFECTS_DDL);
    kit = new SagaKit(db);
    worker = kit.orchestrator('orders', { databaseUrl: dbUrl, redisUrl, prefix });
    await worker.defineSaga('order', { version: 'v1', steps: ORDER_STEPS });
    await worker.start({ workerCount: 4 });
    const env = {
      REDIS_URL: redisUrl,
      DATABASE_URL: dbUrl,
      PORT: '0',
      HOST: '127.0.0.1',
      SECRET_KEY: TEST_SECRET,
      CONCORD_QUEUE_PREFIX: prefix,
      DUCKDB_DATABASE_PATH: ':memory:',
      LOG_LEVEL: 'silent',
      KAFKA_BROKERS: '',
      ...Object.fromEntries(['OUTBOX_ENABLED', 'SYNC_EVENTS_ENABLED', 'SEQUENCES_ENABLED', 'CQRS_ENABLED', 'DATA_SYNC_ENABLED', 'CDC_ENABLED'].map((k) => [k, 'false'])),
      SAGA_ENABLED: 'true',
    };
    api = await startProcess({ config: loadConfig(env), role: 'api', ...selectCapabilities('api', undefined, env), onEscalate: () => undefined });
    token = await signHs256();
  });
  afterAll(async () => {
    await api?.stop(5_000);
    await worker?.stop(5_000);
    await db?.end();
  });

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}, auth = true) => {
    const res = await fetch(`${api.http.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Body };
  };
  const fields = (b: Body) => b.error!.details.issues.map((i) => `${i.field}: ${i.reason}`).join('\n');

  it('needs a token', async () => {
    expect((await call('POST', '/api/v1/sagas', { saga_type: 'order' }, {}, false)).status).toBe(401);
    expect((await call('GET', '/api/v1/sagas', undefined, {}, false)).status).toBe(401);
  });

  it('starts a registered type, runs it, reads and lists it; the Idempotency-Key replays the same saga', async () => {
    const started = await call('POST', '/api/v1/sagas', { saga_type: 'order', context: { customer: { is_premium: true } } }, { 'Idempotency-Key': 'http-1' });
    expect(started.status).toBe(201);
    const id = started.body.saga_id;
    const again = await call('POST', '/api/v1/sagas', { saga_type: 'order', context: { customer: { is_premium: true } } }, { 'Idempotency-Key': 'http-1' });
    expect([again.status, again.body.saga_id]).toEqual([200, id]);
    expect((await call('POST', '/api/v1/sagas', { saga_type: 'order', context: {} }, { 'Idempotency-Key': 'http-1' })).status).toBe(409);
    await settled(worker, id);
    const got = await call('GET', `/api/v1/sagas/${id}`);
    expect(got.body.status).toBe('completed');
    expect(got.body.steps.find((s) => s.step_name === 'gift')!.state).toBe('completed');
    const listed = await call('GET', '/api/v1/sagas?status=completed&type=order&limit=10');
    expect(listed.body.sagas.map((s) => s.saga_id)).toContain(id);
    expect((await call('GET', '/api/v1/sagas?status=done')).status).toBe(400);
    expect((await call('POST', `/api/v1/sagas/${id}/cancel`)).status).toBe(409);
    expect((await call('POST', `/api/v1/sagas/${id}/retry`)).status).toBe(409);
    expect((await call('GET', '/api/v1/sagas/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await call('GET', '/api/v1/sagas/not-a-uuid')).status).toBe(400);
    const stats = (await call('GET', '/api/v1/stats')).body as unknown as { sagas: { byStatus: Record<string, number> }; runtime: { queues: Record<string, unknown> } };
    expect(stats.sagas.byStatus.completed).toBeGreaterThanOrEqual(1);
    expect(Object.keys(stats.runtime.queues)).toContain('saga.step');
  });

  it('400 naming an unknown saga type, a bad step definition, an invalid condition', async () => {
    const unknown = await call('POST', '/api/v1/sagas', { saga_type: 'no_such_type' });
    expect(unknown.status).toBe(400);
    expect(fields(unknown.body)).toContain('saga_type: no_such_type is not a registered saga type');
    const bad = await call('POST', '/api/v1/sagas', { saga_type: 'order', steps: [{ ...ORDER_STEPS[0], timeout_ms: -5 }] });
    expect(bad.status).toBe(400);
    expect(fields(bad.body)).toContain('steps.0.timeout_ms');
    const cond = await call('POST', '/api/v1/sagas', { saga_type: 'order', steps: [ORDER_STEPS[0], { ...ORDER_STEPS[1], condition: 'require("fs")' }] });
    expect(cond.status).toBe(400);
    expect(fields(cond.body)).toMatch(/steps\.1\.condition: invalid condition: .*CallExpression/);
  });

  it('a saga started under another definition version is reported, not resumed', async () => {
    // Another deployment defines `order` as v0 and starts a saga under it.
    const old = new SagaOrchestrator('old-deploy', { databaseUrl: dbUrl, redisUrl, prefix });
    try {
      await old.defineSaga('order', { version: 'v0', steps: ORDER_STEPS.slice(0, 2) });
      const id = await old.startSaga({ sagaType: 'order', context: {} });
      const s = await eventually(async () => ((await worker.getSagaStatus(id)).attention ? worker.getSagaStatus(id) : undefined), 10_000, 50, 'reported');
      expect(s.attention).toBe('definition_version_mismatch');
      expect(s.last_error).toContain('version v0');
      expect(s.steps.every((x) => x.attempts === 0)).toBe(true);
      expect(kit.eventsOf(id)).toEqual([]);
      expect((await call('GET', '/api/v1/sagas?attention=true')).body.sagas.map((x) => x.saga_id)).toContain(id);
    } finally {
      await old.stop();
      await worker.defineSaga('order', { version: 'v1', steps: ORDER_STEPS });
    }
  });

  it('a stale lease holder is fenced: its writes change nothing once another process took the saga', async () => {
    // A saga on a queue prefix no worker reads, so only this test touches it.
    const q = new Queue(sagaStepQueue.name, { connection: new Redis(redisUrl, { maxRetriesPerRequest: null }), prefix: uniquePrefix('fence') });
    const { id } = await startSagaRecord(db, q, { sagaType: 'fence', orchestrator: 't', version: 'x', steps: parseSagaSteps(ORDER_STEPS.slice(0, 1)), context: {} });
    await q.close();
    const a = (await claimSaga(db, id, 'proc-a', 60_000, null))!;
    expect(await claimSaga(db, id, 'proc-b', 60_000, null)).toBeUndefined(); // A's lease is live
    await db.query(`UPDATE sagas SET lease_until = now() - interval '1 second' WHERE id = $1`, [id]); // A paused past its lease
    const b = (await claimSaga(db, id, 'proc-b', 60_000, null))!;
    expect(b.epoch).toBe(a.epoch + 1);
    const w = (owner: string, epoch: number) => ({ sagaId: id, epoch, owner, leaseMs: 60_000, step: { name: 'reserve', change: 'start' as const }, saga: { release: false, currentStep: 'reserve' } });
    await expect(writeSaga(db, w('proc-a', a.epoch))).rejects.toBeInstanceOf(FencedError);
    expect((await db.query('SELECT attempts FROM saga_steps WHERE saga_id = $1', [id])).rows[0].attempts).toBe(0);
    expect(await renewLeases(db, 'proc-a', [{ id, epoch: a.epoch }], 60_000)).toEqual(new Set());
    await writeSaga(db, w('proc-b', b.epoch));
    expect((await db.query('SELECT attempts, state FROM saga_steps WHERE saga_id = $1', [id])).rows[0]).toEqual({ attempts: 1, state: 'running' });
  });

  it('starts made together share one INSERT: a key repeated in the batch returns the first saga, a changed request is refused', async () => {
    const steps = parseSagaSteps(ORDER_STEPS.slice(0, 1));
    const key = uniquePrefix('batchkey');
    const base = { sagaType: 'batch', orchestrator: 't', version: 'x', steps };
    const rs = await insertSagas(db, [
      { ...base, context: { n: 1 }, idempotencyKey: key },
      { ...base, context: { n: 2 } },
      { ...base, context: { n: 1 }, idempotencyKey: key },
      { ...base, context: { n: 3 }, idempotencyKey: key },
    ]);
    const [first, plain, replay, changed] = rs as [{ id: string; created: boolean }, { id: string; created: boolean }, { id: string; created: boolean }, unknown];
    expect(first.created).toBe(true);
    expect(plain.created).toBe(true);
    expect(plain.id).not.toBe(first.id);
    expect(replay).toEqual({ id: first.id, created: false });
    expect(changed).toBeInstanceOf(ConflictError);
    const { rows } = await db.query('SELECT s.id, count(t.*)::int AS steps FROM sagas s JOIN saga_steps t ON t.saga_id = s.id WHERE s.id = ANY($1) GROUP BY s.id', [[first.id, plain.id]]);
    expect(rows.map((r) => r.steps)).toEqual([1, 1]);
    // Through the library API, concurrent starts with one key (batched or not) name one saga.
    const ids = await Promise.all(Array.from({ length: 5 }, () => worker.startSaga({ sagaType: 'order', context: { k: key }, idempotencyKey: `${key}-api` })));
    expect(new Set(ids).size).toBe(1);
  });

  it('writes of several sagas in one statement: a stale epoch is refused for its saga alone', async () => {
    const steps = parseSagaSteps(ORDER_STEPS.slice(0, 1));
    const made = await insertSagas(db, [0, 1, 2].map((n) => ({ sagaType: 'fence', orchestrator: 't', version: 'x', steps, context: { n } })));
    const ids = made.map((r) => (r as { id: string }).id);
    const claimed = (await claimSagas(db, 'proc-c', 60_000, ids.map((id) => ({ id, startStep: null })))).map((c) => c!);
    expect(claimed.map((c) => c.id)).toEqual(ids);
    const rs = await writeSagas(
      db,
      claimed.map((c, i) => ({ sagaId: c.id, epoch: i === 1 ? c.epoch - 1 : c.epoch, owner: 'proc-c', leaseMs: 60_000, step: { name: 'reserve', change: 'start' as const }, saga: { release: false } })),
    );
    expect(rs[1]).toBeInstanceOf(FencedError);
    expect(rs.filter((r) => !(r instanceof Error))).toHaveLength(2);
    const { rows } = await db.query('SELECT saga_id, attempts FROM saga_steps WHERE saga_id = ANY($1)', [ids]);
    expect(Object.fromEntries(rows.map((r) => [r.saga_id, r.attempts]))).toEqual({ [ids[0]!]: 1, [ids[1]!]: 0, [ids[2]!]: 1 });
  });
});
