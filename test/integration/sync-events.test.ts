import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startFixture, type Child } from '../support/child.js';
import { startJwksServer, type JwksServer } from '../support/jwt.js';

const AUDIENCE = 'https://cloud-api.concord.test/';

/** The sync-events API and processor over real PostgreSQL and Redis, with Auth0-style RS256 tokens from a local JWKS. */
describe('sync events', () => {
  let proc: RunningProcess;
  let db: pg.Pool;
  let dbUrl: string;
  let base: string;
  let jwks: JwksServer;
  let token: string;
  const children: Child[] = [];

  beforeAll(async () => {
    const { redisUrl, databaseUrl } = testServices();
    jwks = await startJwksServer();
    dbUrl = await freshDatabase(databaseUrl, uniquePrefix('sev').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 4 });
    const env = {
      REDIS_URL: redisUrl,
      DATABASE_URL: dbUrl,
      PORT: '0',
      HOST: '127.0.0.1',
      AUTH_JWKS_URL: jwks.url,
      AUTH_ISSUER: jwks.issuer,
      API_AUDIENCE: AUDIENCE,
      ALGORITHMS: 'RS256',
      CONCORD_QUEUE_PREFIX: uniquePrefix('sev'),
      DUCKDB_DATABASE_PATH: ':memory:',
      LOG_LEVEL: 'silent',
      KAFKA_BROKERS: '',
      SYNC_EVENT_METADATA_MAX_BYTES: '1024',
    };
    proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', undefined, env), onEscalate: () => undefined });
    base = proc.http.url;
    token = await jwks.sign({ sub: 'file-service' }, { audience: AUDIENCE });
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await c.exited;
    }
  });
  afterAll(async () => {
    await proc?.stop(10_000);
    await db?.end();
    await jwks?.close();
  });

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as Record<string, unknown> };
  };
  const post = (file_id: string, event_type: string, metadata?: object, headers?: Record<string, string>) => call('POST', '/sync-events', { file_id, event_type, ...(metadata ? { metadata } : {}) }, headers);

  it('creates, gets and lists with every filter and paging; processing marks events processed in per-file order', async () => {
    const fileA = randomUUID();
    const fileB = randomUUID();
    const created = await post(fileA, 'upload', { size: 10 });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ message: 'Sync event created successfully', event_id: expect.any(String) });
    const ids = [created.body.event_id as string];
    for (const [f, t] of [[fileA, 'update'], [fileB, 'upload'], [fileA, 'delete'], [fileB, 'update']] as const) ids.push((await post(f, t)).body.event_id as string);

    const got = await call('GET', `/sync-events/${ids[0]}`);
    expect(got.body).toMatchObject({ event_id: ids[0], file_id: fileA, event_type: 'upload', metadata: { size: 10 } });
    expect(Object.keys(got.body).sort()).toEqual(['created_at', 'event_id', 'event_type', 'file_id', 'metadata', 'processed', 'processed_at']);

    const processed = await eventually(async () => {
      const l = await call('GET', `/sync-events?file_id=${fileA}&processed=true&limit=100`);
      return (l.body.total as number) === 3 ? l : undefined;
    }, 15_000, 100, 'file A processed');
    const aEvents = processed.body.events as Array<{ event_id: string; processed_at: string }>;
    // Newest first in the listing; processing times follow recording order.
    const times = [...aEvents].reverse().map((e) => Date.parse(e.processed_at));
    expect(times).toEqual([...times].sort((x, y) => x - y));

    const uploads = await call('GET', `/sync-events?event_type=upload&file_id=${fileB}`);
    expect(uploads.body.total).toBe(1);
    const page1 = await call('GET', '/sync-events?limit=2&offset=0');
    const page2 = await call('GET', '/sync-events?limit=2&offset=2');
    expect((page1.body.events as unknown[]).length).toBe(2);
    expect((page1.body.events as Array<{ event_id: string }>)[0]!.event_id).toBe(ids[4]); // newest first
    expect((page2.body.events as Array<{ event_id: string }>)[0]!.event_id).toBe(ids[2]);
    expect(page1.body.total).toBeGreaterThanOrEqual(5);
    const unprocessed = await call('GET', `/sync-events?processed=false&file_id=${fileA}`);
    expect(unprocessed.body.total).toBe(0);
  });

  it('records anomalies instead of failing: a delete or update for a file never uploaded, a second upload', async () => {
    const ghost = randomUUID();
    const twice = randomUUID();
    const del = (await post(ghost, 'delete')).body.event_id as string;
    const upd = (await post(ghost, 'update')).body.event_id as string;
    await post(twice, 'upload');
    const dup = (await post(twice, 'upload')).body.event_id as string;
    await eventually(async () => (await call('GET', `/sync-events/${dup}`)).body.processed === true, 15_000, 100, 'processed');
    expect((await call('GET', `/sync-events/${del}`)).body.metadata).toEqual({ anomaly: 'delete_without_upload', file_state_before: 'unknown' });
    expect((await call('GET', `/sync-events/${upd}`)).body.metadata).toEqual({ anomaly: 'update_without_upload', file_state_before: 'unknown' });
    expect((await call('GET', `/sync-events/${dup}`)).body.metadata).toEqual({ anomaly: 'duplicate_upload', file_state_before: 'present' });
    // Each processed event emitted one domain event through the outbox.
    const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM concord_outbox WHERE topic = 'sync-events.files' AND aggregate_id = $1`, [ghost]);
    expect(Number(rows[0]!.n)).toBe(2);
  });

  it('refuses bad input naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{ file_id: 'nope', event_type: 'upload' }, 'file_id'],
      [{ file_id: randomUUID(), event_type: 'rename' }, 'event_type'],
      [{ file_id: randomUUID(), event_type: 'upload', metadata: { blob: 'x'.repeat(2000) } }, 'metadata'],
      [{ file_id: randomUUID(), event_type: 'upload', metadata: 'text' }, 'metadata'],
      [{ event_type: 'upload' }, 'file_id'],
    ];
    for (const [body, field] of cases) {
      const r = await call('POST', '/sync-events', body);
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect((r.body.error as { details: { issues: Array<{ field: string }> } }).details.issues.map((i) => i.field)).toContain(field);
    }
    const malformed = await call('POST', '/sync-events', '{"file_id": ');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toMatchObject({ code: 'bad_request' });
    expect((await call('GET', '/sync-events?limit=101')).status).toBe(400);
    expect((await call('GET', '/sync-events?processed=maybe')).status).toBe(400);
    expect((await call('GET', '/sync-events/not-a-uuid')).status).toBe(400);
    const missing = await call('GET', `/sync-events/${randomUUID()}`);
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'not_found' });
  });

  it('401 without a token, with an expired one, and with one for another audience', async () => {
    const noToken = await fetch(`${base}/sync-events`);
    expect(noToken.status).toBe(401);
    const expired = await jwks.sign({ sub: 's' }, { audience: AUDIENCE, expiresIn: -60 });
    const other = await jwks.sign({ sub: 's' }, { audience: 'https://another-api/' });
    for (const t of [expired, other]) {
      const r = await fetch(`${base}/sync-events`, { headers: { authorization: `Bearer ${t}` } });
      expect(r.status).toBe(401);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    }
    const health = (await (await fetch(`${base}/health`)).json()) as { status: string; database: string };
    expect(health).toMatchObject({ status: 'healthy', database: 'connected' });
  });

  it('an Idempotency-Key makes a retried POST return the first event; another body with the same key is a conflict', async () => {
    const file = randomUUID();
    const key = `upload-${file}`;
    const first = await post(file, 'upload', { n: 1 }, { 'Idempotency-Key': key });
    const again = await post(file, 'upload', { n: 1 }, { 'Idempotency-Key': key });
    expect(first.status).toBe(201);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.event_id).toBe(first.body.event_id);
    expect((await call('GET', `/sync-events?file_id=${file}`)).body.total).toBe(1);
    const clash = await post(file, 'delete', undefined, { 'Idempotency-Key': key });
    expect(clash.status).toBe(409);
  });

  it('a worker killed during processing: every event ends processed exactly once', async () => {
    // Stop this process's own processor so the worker processes take the backlog.
    await proc.runtime.supervisor!.stop();
    const files = Array.from({ length: 200 }, () => randomUUID());
    const total = 12_000;
    for (let i = 0; i < total; i += 2000) {
      await db.query(
        `INSERT INTO sync_events (id, file_id, event_type) SELECT gen_random_uuid(), ($1::uuid[])[1 + (g % 200)], (ARRAY['upload','update','delete'])[1 + (g / 200) % 3] FROM generate_series($2::int, $3::int) g`,
        [files, i, i + 1999],
      );
    }
    const env = { REDIS_URL: testServices().redisUrl, DATABASE_URL: dbUrl, CONCORD_QUEUE_PREFIX: uniquePrefix('sevw'), SYNC_EVENT_PROCESS_INTERVAL: '1', SYNC_EVENT_BATCH_SIZE: '500', KAFKA_BROKERS: '', OUTBOX_ENABLED: 'true' };
    const a = startFixture('sync-events', env);
    children.push(a);
    const pending = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM sync_events WHERE NOT processed AND file_id = ANY($1::uuid[])', [files])).rows[0]!.n);
    await eventually(async () => (await pending()) < total - 1_500, 60_000, 20, 'processing under way');
    a.kill('SIGKILL');
    await a.exited;
    expect(await pending()).toBeGreaterThan(0);
    children.push(startFixture('sync-events', env));
    await eventually(async () => (await pending()) === 0, 90_000, 200, 'all processed after restart');
    // Exactly once: one domain event per sync event, and each file's state follows its last event.
    const { rows } = await db.query<{ n: string; distinct_events: string }>(
      `SELECT count(*) AS n, count(DISTINCT payload->>'event_id') AS distinct_events FROM concord_outbox WHERE topic = 'sync-events.files' AND aggregate_id = ANY($1::text[])`,
      [files],
    );
    expect(Number(rows[0]!.n)).toBe(total);
    expect(Number(rows[0]!.distinct_events)).toBe(total);
  }, 240_000);
});
