import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { startRedis, type RedisHandle } from '../../scripts/services/redis.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { eventually } from '../support/child.js';
import { signHs256, startJwksServer, TEST_SECRET, type JwksServer } from '../support/jwt.js';
import { workQueue } from '../fixtures/test-queues.js';

/** The control plane over real Redis/PostgreSQL/DuckDB with real HS256 and RS256 (JWKS) auth. */
describe('control plane over HTTP', () => {
  let redis: RedisHandle; // our own, so the test may stop it
  let jwks: JwksServer;
  let proc: RunningProcess;
  let base: string;

  beforeAll(async () => {
    redis = await startRedis({ mode: 'test' });
    jwks = await startJwksServer();
    const config = loadConfig({
      REDIS_URL: redis.url,
      DATABASE_URL: testServices().databaseUrl,
      PORT: '0',
      HOST: '127.0.0.1',
      SECRET_KEY: TEST_SECRET,
      AUTH_JWKS_URL: jwks.url,
      AUTH_ISSUER: jwks.issuer,
      ALGORITHMS: 'HS256,RS256',
      CONCORD_QUEUE_PREFIX: uniquePrefix('http'),
      DUCKDB_DATABASE_PATH: ':memory:',
      LOG_LEVEL: 'silent',
    });
    proc = await startProcess({ config, role: 'all', queues: [workQueue], onEscalate: () => undefined });
    base = proc.http.url;
  });
  afterAll(async () => {
    await proc?.stop(5_000);
    await jwks?.close();
    await redis?.stop();
  });

  const get = (path: string, token?: string) => fetch(`${base}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  it('identity, liveness and metrics are open', async () => {
    const root = await get('/');
    expect(root.status).toBe(200);
    expect(await root.json()).toMatchObject({ name: 'concord', version: expect.any(String), description: expect.any(String) });
    expect((await get('/health')).status).toBe(200);
    const metrics = await get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  it('every response carries a request id, echoed when the caller sent a safe one', async () => {
    const fresh = await get('/health');
    expect(fresh.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const echoed = await fetch(`${base}/health`, { headers: { 'x-request-id': 'trace-abc.123' } });
    expect(echoed.headers.get('x-request-id')).toBe('trace-abc.123');
    const unsafe = await fetch(`${base}/health`, { headers: { 'x-request-id': 'bad id\twith spaces' } });
    expect(unsafe.headers.get('x-request-id')).not.toContain(' ');
  });

  it('401 with no token, an expired one, a wrongly signed one, or one from another issuer, in the documented shape', async () => {
    const cases = [
      await get('/api/v1/stats'),
      await get('/api/v1/stats', await signHs256({ sub: 'x' }, { expiresIn: -60, issuer: jwks.issuer })),
      await get('/api/v1/stats', await signHs256({ sub: 'x' }, { secret: 'another-secret-that-is-long-enough-0123456789', issuer: jwks.issuer })),
      await get('/api/v1/stats', await jwks.signWithForeignKey({ sub: 'x' })),
      await get('/api/v1/stats', 'not.a.jwt'),
      await get('/api/v1/stats', await signHs256({ sub: 'x' }, { issuer: 'https://someone-else.example/' })),
    ];
    for (const res of cases) {
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
      expect(JSON.stringify(body)).not.toMatch(/at .*\.ts:\d+/); // no stack trace
    }
  });

  it('200 with a good HS256 token and with an RS256 token from the JWKS server', async () => {
    expect((await get('/api/v1/stats', await signHs256({ sub: 'ops' }, { issuer: jwks.issuer }))).status).toBe(200);
    const rs = await get('/api/v1/stats', await jwks.sign({ sub: 'ops' }));
    expect(rs.status).toBe(200);
    expect(await rs.json()).toMatchObject({ runtime: { queues: { 'test.work': expect.any(Object) }, process: { uptimeSeconds: expect.any(Number) } } });
  });

  it('Bull Board answers only with auth, and lists the queues and their DLQs', async () => {
    expect((await get('/admin/queues')).status).toBe(401);
    expect((await get('/admin/queues/api/queues')).status).toBe(401);
    const token = await signHs256({ sub: 'ops' }, { issuer: jwks.issuer });
    const page = await get('/admin/queues', token);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    const api = await get('/admin/queues/api/queues', token);
    expect(api.status).toBe(200);
    const names = ((await api.json()) as { queues: Array<{ name: string }> }).queues.map((q) => q.name);
    expect(names).toEqual(expect.arrayContaining(['test.work', 'test.work.dlq']));
    // A browser can carry the token as a cookie.
    const viaCookie = await fetch(`${base}/admin/queues`, { headers: { cookie: `concord_token=${token}` } });
    expect(viaCookie.status).toBe(200);
  });

  it('unknown routes and bad JSON get the documented error shape', async () => {
    const token = await signHs256({ sub: 'ops' }, { issuer: jwks.issuer });
    const missing = await get('/api/v1/nothing-here', token);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: { code: 'not_found', message: expect.stringContaining('/api/v1/nothing-here') } });
    const badJson = await fetch(`${base}/api/v1/dlq/test.work/x/retry`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"broken' });
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toMatchObject({ error: { code: 'bad_request', message: expect.any(String) } });
    const wrongMethod = await fetch(`${base}/api/v1/dlq`, { method: 'PUT', headers: { authorization: `Bearer ${token}` } });
    expect(wrongMethod.status).toBe(405);
    expect(await wrongMethod.json()).toMatchObject({ error: { code: 'method_not_allowed' } });
  });

  it('/openapi.json describes every route, /docs renders it', async () => {
    const doc = (await (await get('/openapi.json')).json()) as { paths: Record<string, Record<string, { security: unknown[] }>> };
    for (const path of ['/', '/health', '/ready', '/metrics', '/api/v1/stats', '/api/v1/dlq', '/api/v1/dlq/{queue}', '/api/v1/dlq/{queue}/{id}/retry', '/api/v1/dlq/{queue}/{id}']) {
      expect(doc.paths[path], path).toBeDefined();
    }
    expect(doc.paths['/api/v1/stats']!.get!.security).toEqual([{ bearerAuth: [] }]);
    expect(doc.paths['/health']!.get!.security).toEqual([]);
    const docs = await get('/docs');
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain('/openapi.json');
    expect((await get('/docs/swagger-ui-bundle.js')).status).toBe(200);
  });

  it('/ready is 200 with every dependency up, 503 naming Redis when Redis is stopped, 200 again after', async () => {
    const up = await get('/ready');
    expect(up.status).toBe(200);
    expect(await up.json()).toMatchObject({ status: 'ready', checks: { redis: { ok: true }, postgres: { ok: true }, duckdb: { ok: true } } });

    await redis.stop();
    const down = await get('/ready');
    expect(down.status).toBe(503);
    const body = (await down.json()) as { error: { code: string; message: string; details: { failed: string[] } }; checks: Record<string, { ok: boolean }> };
    expect(body.error.code).toBe('dependency_unavailable');
    expect(body.error.details.failed).toEqual(['redis']);
    expect(body.checks.postgres!.ok).toBe(true);

    await redis.restart();
    await eventually(async () => (await get('/ready')).status === 200, 20_000, 250, 'ready again after Redis restart');
  });
});
