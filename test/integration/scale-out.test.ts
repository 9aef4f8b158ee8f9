import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueMany } from '../../queues/index.js';
import { freshDatabase } from '../support/databases.js';
import { eventually, startConcord, type Child } from '../support/child.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { SAGA_TEST_TABLES } from '../fixtures/saga-handlers.js';

const LEASE_TTL_MS = 3_000;
const SAGA_HANDLERS = fileURLToPath(new URL('../fixtures/saga-handlers.ts', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Stats {
  runtime: { processes: Array<{ id: string; role: string; pid: number }>; queues: Record<string, { dlq?: number } & Record<string, unknown>> };
}

/**
 * One api process and three worker processes of the real CLI on one machine, under a
 * mixed load (CDC into DuckDB, outbox, sagas). Workers are killed with SIGKILL one by one,
 * each time the one holding the singleton leases: the leases move to a live worker within
 * their TTL, and at the end nothing is lost.
 */
describe('scale-out: api + 3 workers, killed one by one', () => {
  let dbUrl: string;
  let db: pg.Pool;
  let redis: Redis;
  let prefix: string;
  let dir: string;
  let api: Child;
  let apiUrl: string;
  const workers: Child[] = [];
  let env: Record<string, string>;

  beforeAll(async () => {
    const services = testServices();
    prefix = uniquePrefix('scale');
    dbUrl = await freshDatabase(services.databaseUrl, prefix.replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: dbUrl, max: 6 });
    await db.query(`CREATE TABLE scale_accounts (id bigint PRIMARY KEY, balance numeric(12,2) NOT NULL, note text)`);
    await db.query(SAGA_TEST_TABLES);
    redis = new Redis(services.redisUrl, { maxRetriesPerRequest: null });
    dir = mkdtempSync(path.join(tmpdir(), 'concord-scale-'));
    env = {
      REDIS_URL: services.redisUrl,
      DATABASE_URL: dbUrl,
      CONCORD_QUEUE_PREFIX: prefix,
      KAFKA_BROKERS: '',
      DUCKDB_DATABASE_PATH: path.join(dir, 'copy.duckdb'),
      CDC_ENABLED: 'true',
      CDC_MONITORED_TABLES: 'public.scale_accounts',
      CDC_REPLICATION_SLOT_NAME: `${prefix.replace(/-/g, '_')}_slot`,
      CDC_LEASE_TTL_MS: String(LEASE_TTL_MS),
      DATA_SYNC_LEASE_TTL_MS: String(LEASE_TTL_MS),
      SAGA_HANDLERS_MODULE: SAGA_HANDLERS,
      OUTBOX_POLLING_INTERVAL_MS: '200',
      SHUTDOWN_TIMEOUT_MS: '10000',
    };
    api = startConcord(['start', '--role', 'api'], env);
    apiUrl = String((await api.waitFor((l) => l.msg === 'listening', 60_000)).url);
    for (let i = 0; i < 3; i++) workers.push(startConcord(['start', '--role', 'worker'], env));
    await Promise.all(workers.map((w) => w.waitFor((l) => l.msg === 'listening', 60_000)));
  }, 180_000);

  afterAll(async () => {
    for (const c of [...workers, api]) {
      c?.kill('SIGKILL');
      await c?.exited;
    }
    await db?.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [env?.CDC_REPLICATION_SLOT_NAME]).catch(() => undefined);
    await db?.end();
    redis?.disconnect();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const leaseHolder = async (name: string) => (await redis.get(`${prefix}:lease:${name}`))?.split('|')[0];
  const childOf = (processId: string) => workers.find((w) => w.lines.some((l) => l.processId === processId));
  const stats = async (): Promise<Stats> => (await (await fetch(`${apiUrl}/api/v1/stats`)).json()) as Stats;

  it('singletons fail over within their lease TTL, and no change, event or saga is lost', async () => {
    // Load: account changes with their outbox events in one transaction, and sagas, until stopped.
    let stop = false;
    let written = 0;
    const sagaIds: string[] = [];
    const load = (async () => {
      for (let round = 0; !stop; round++) {
        const c = await db.connect();
        try {
          await c.query('BEGIN');
          const ids = Array.from({ length: 20 }, (_, i) => (round * 7 + i) % 500);
          await c.query(
            `INSERT INTO scale_accounts (id, balance, note) SELECT id, $2::numeric, 'round ' || $3 FROM unnest($1::bigint[]) AS id
               ON CONFLICT (id) DO UPDATE SET balance = scale_accounts.balance + EXCLUDED.balance, note = EXCLUDED.note`,
            [ids, '1.25', round],
          );
          if (round % 9 === 0) await c.query('DELETE FROM scale_accounts WHERE id = $1', [(round * 13) % 500]);
          await enqueueMany(c, ids.slice(0, 5).map((id) => ({ topic: 'accounts', eventType: 'balance_changed', aggregateId: `acct-${id}`, aggregateType: 'account', payload: { id, round } })));
          await c.query('COMMIT');
          written += 5;
        } finally {
          c.release();
        }
        if (round % 5 === 0) {
          const res = await fetch(`${apiUrl}/api/v1/sagas`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ saga_type: 'kill', context: { vip: round % 2 === 0 } }) });
          expect(res.status).toBeLessThan(300);
          sagaIds.push(((await res.json()) as { saga_id: string }).saga_id);
        }
        await sleep(20);
      }
    })();

    // Kill the DuckDB writer's holder, then the CDC reader's: each lease the victim held moves on.
    const leases = ['duckdb-writer', `cdc-reader.${env.CDC_REPLICATION_SLOT_NAME}`];
    const failovers: Array<{ lease: string; seconds: number }> = [];
    for (const target of leases) {
      await sleep(3_000);
      const holder = await eventually(() => leaseHolder(target), 30_000, 100, `a holder of ${target}`);
      const victim = childOf(holder);
      expect(victim, `holder ${holder} is one of our workers`).toBeDefined();
      const held = [];
      for (const l of leases) if ((await leaseHolder(l)) === holder) held.push(l);
      const killedAt = Date.now();
      victim!.kill('SIGKILL');
      await victim!.exited;
      workers.splice(workers.indexOf(victim!), 1);
      await Promise.all(
        held.map(async (lease) => {
          const next = await eventually(async () => {
            const h = await leaseHolder(lease);
            return h && h !== holder ? h : undefined;
          }, 30_000, 50, `${lease} taken over`);
          failovers.push({ lease, seconds: (Date.now() - killedAt) / 1000 });
          expect(childOf(next), `${lease} moved to a live worker`).toBeDefined();
        }),
      );
    }
    expect(new Set(failovers.map((f) => f.lease))).toEqual(new Set(leases));
    for (const f of failovers) expect(f.seconds, `${f.lease} failover`).toBeLessThan((LEASE_TTL_MS * 2) / 1000 + 2);

    await sleep(2_000);
    stop = true;
    await load;

    // The stats endpoint shows the live worker (and the api), not the killed ones.
    const live = await eventually(async () => {
      const s = await stats();
      const workersSeen = s.runtime.processes.filter((p) => p.role === 'worker').map((p) => p.pid);
      return workersSeen.length === 1 && workersSeen[0] === workers[0]!.pid ? s : undefined;
    }, 60_000, 500, 'stats to show exactly the live worker');
    expect(live.runtime.processes.some((p) => p.role === 'api')).toBe(true);

    // Everything arrives: outbox events published, sagas completed, the copy equals the source.
    await eventually(async () => {
      const { rows } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM concord_outbox WHERE status = 'published'`);
      return Number(rows[0]!.n) === written ? true : undefined;
    }, 120_000, 500, `${written} outbox events published`);
    await eventually(async () => {
      const { rows } = await db.query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM sagas WHERE id = ANY($1::uuid[]) GROUP BY status`, [sagaIds]);
      return rows.length === 1 && rows[0]!.status === 'completed' && Number(rows[0]!.n) === sagaIds.length ? true : undefined;
    }, 120_000, 500, `${sagaIds.length} sagas completed`);
    const effects = await db.query<{ n: string }>(`SELECT count(*) AS n FROM (SELECT saga_id, step FROM test_effects WHERE phase = 'action' GROUP BY 1, 2 HAVING count(*) > 1) d`);
    expect(Number(effects.rows[0]!.n)).toBe(0); // no step's effect committed twice

    // Wait until the slot has nothing left to send, then stop the last worker cleanly and compare.
    await eventually(async () => {
      const { rows } = await db.query<{ lag: string | null }>(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag FROM pg_replication_slots WHERE slot_name = $1`,
        [env.CDC_REPLICATION_SLOT_NAME],
      );
      return rows[0] && Number(rows[0].lag) < 1_000_000 ? true : undefined;
    }, 120_000, 500, 'the slot confirmed');
    await sleep(3_000);
    const last = workers[0]!;
    last.kill('SIGTERM');
    expect((await last.exited).code).toBe(0);

    const source = (await db.query<{ id: string; balance: string; note: string | null }>(`SELECT id::text AS id, balance::text AS balance, note FROM scale_accounts ORDER BY scale_accounts.id`)).rows;
    const duck = await DuckDBInstance.create(env.DUCKDB_DATABASE_PATH!);
    const conn = await duck.connect();
    try {
      const reader = await conn.runAndReadAll(`SELECT t.id::VARCHAR AS id, t.balance::VARCHAR AS balance, t.note FROM main.scale_accounts t ORDER BY t.id`);
      const copy = reader.getRowObjectsJS().map((r) => ({ id: String(r.id), balance: String(r.balance), note: r.note === null ? null : String(r.note) }));
      expect(copy.length).toBe(source.length);
      expect(copy).toEqual(source);
    } finally {
      conn.closeSync();
      duck.closeSync();
    }
    console.log(`[scale-out] ${written} outbox events, ${sagaIds.length} sagas, ${source.length} rows; failovers: ${failovers.map((f) => `${f.lease} ${f.seconds.toFixed(1)} s`).join(', ')}`);
  }, 420_000);
});
