import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { isAlive, isPortFree } from '../../scripts/services/ports.js';
import { startPostgres, type PostgresHandle } from '../../scripts/services/postgres.js';
import { findRedisServer, pingRedis, startRedis, type RedisHandle } from '../../scripts/services/redis.js';
import { testServices, uniquePrefix } from '../support/services.js';

/** Run `fn` with some environment variables replaced (undefined = unset), restoring them after. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = new Map(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe('services harness', () => {
  it('injected Redis answers PING and uses maxmemory-policy noeviction', async () => {
    const { redisUrl } = testServices();
    const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      expect(await redis.ping()).toBe('PONG');
      expect(await redis.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    } finally {
      redis.disconnect();
    }
  });

  it('injected PostgreSQL has wal_level=logical and can create a pgoutput slot', async () => {
    const { databaseUrl } = testServices();
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    const slot = uniquePrefix('slot').replace(/-/g, '_');
    try {
      const wal = await client.query<{ wal_level: string }>('SHOW wal_level');
      expect(wal.rows[0]?.wal_level).toBe('logical');
      const created = await client.query<{ slot_name: string }>(
        "SELECT slot_name FROM pg_create_logical_replication_slot($1, 'pgoutput')",
        [slot],
      );
      expect(created.rows[0]?.slot_name).toBe(slot);
      const listed = await client.query<{ plugin: string }>('SELECT plugin FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      expect(listed.rows[0]?.plugin).toBe('pgoutput');
    } finally {
      await client.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      await client.end();
    }
  });

  describe('a second, test-owned Redis', () => {
    let handle: RedisHandle | undefined;
    afterAll(async () => {
      await handle?.stop();
    });

    // With REDIS_URL set startRedis hands out that server; we unset it to force a spawn,
    // which needs a redis-server binary.
    it.skipIf(findRedisServer() === null)('can be stopped and restarted on the same port', async () => {
      const h = await withEnv({ REDIS_URL: undefined }, () => startRedis({ mode: 'test' }));
      handle = h;
      const { redisUrl } = testServices();
      expect(h.owned).toBe(true);
      expect(h.url).toBe(`redis://127.0.0.1:${h.port}`);
      expect(h.url).not.toBe(redisUrl);
      expect(await pingRedis(h.port)).toBe(true);

      const { url, port } = h;
      await h.stop();
      expect(await pingRedis(port)).toBe(false);

      await h.restart();
      expect(h.url).toBe(url);
      expect(h.port).toBe(port);
      expect(await pingRedis(port)).toBe(true);

      await h.stop();
      await h.stop(); // idempotent
      expect(await pingRedis(port)).toBe(false);
    });
  });

  describe('a second, test-owned PostgreSQL', () => {
    let handle: PostgresHandle | undefined;
    afterAll(async () => {
      await handle?.stop();
    });

    async function connect(url: string): Promise<pg.Client> {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
      client.on('error', () => {
        // the server going away under an idle client is expected here
      });
      await client.connect();
      return client;
    }

    function postmasterPid(dataDir: string): number {
      return Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    }

    it('can be paused (a real outage) and resumed on the same port with its data', async () => {
      // With DATABASE_URL set startPostgres hands out that server; unset it to force a spawn.
      const h = await withEnv({ DATABASE_URL: undefined }, () => startPostgres({ mode: 'test' }));
      handle = h;
      const { databaseUrl } = testServices();
      expect(h.owned).toBe(true);
      expect(h.url).not.toBe(databaseUrl);
      const { url, port } = h;

      const client = await connect(url);
      let dataDir: string;
      try {
        dataDir = (await client.query<{ data_directory: string }>('SHOW data_directory')).rows[0]?.data_directory ?? '';
        await client.query('CREATE TABLE outage_probe (id int PRIMARY KEY, note text NOT NULL)');
        await client.query("INSERT INTO outage_probe VALUES (1, 'survives a pause')");
      } finally {
        await client.end();
      }
      const pid = postmasterPid(dataDir);
      expect(isAlive(pid)).toBe(true);

      await h.pause();
      expect(isAlive(pid)).toBe(false); // the postmaster really exited
      expect(await isPortFree(port)).toBe(true);
      await expect(connect(url)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      expect(fs.existsSync(path.join(dataDir, 'PG_VERSION'))).toBe(true); // data kept
      await h.pause(); // already paused: no-op

      await h.resume();
      expect(h.port).toBe(port);
      expect(h.url).toBe(url);
      expect(postmasterPid(dataDir)).not.toBe(pid);
      const again = await connect(url);
      try {
        const rows = await again.query<{ id: number; note: string }>('SELECT id, note FROM outage_probe');
        expect(rows.rows).toEqual([{ id: 1, note: 'survives a pause' }]);
      } finally {
        await again.end();
      }

      // stop() after another pause still removes the temp data dir
      await h.pause();
      await h.stop();
      await h.stop(); // idempotent
      expect(fs.existsSync(dataDir)).toBe(false);
      await expect(h.resume()).rejects.toThrow(/stopped/);
    });

    it('refuses to pause or resume a server it does not own (DATABASE_URL)', async () => {
      const { databaseUrl } = testServices();
      const external = await withEnv({ DATABASE_URL: databaseUrl }, () => startPostgres({ mode: 'test' }));
      expect(external.owned).toBe(false);
      await expect(external.pause()).rejects.toThrow(/cannot pause PostgreSQL .*does not own it/);
      await expect(external.resume()).rejects.toThrow(/cannot resume PostgreSQL .*does not own it/);
      await external.stop(); // no-op
      const client = await connect(databaseUrl); // still up
      try {
        expect((await client.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      } finally {
        await client.end();
      }
    });
  });

  it('startRedis without a redis-server on PATH explains how to get one', async () => {
    const emptyBin = fs.mkdtempSync(path.join(os.tmpdir(), 'concord-empty-path-'));
    try {
      await withEnv({ PATH: emptyBin, REDIS_URL: undefined }, async () => {
        expect(findRedisServer()).toBeNull();
        await expect(startRedis({ mode: 'test' })).rejects.toThrow(/apt-get install redis-server/);
        await expect(startRedis({ mode: 'test' })).rejects.toThrow(/REDIS_URL/);
      });
    } finally {
      fs.rmSync(emptyBin, { recursive: true, force: true });
    }
  });

  it('uniquePrefix gives distinct, key-safe names', () => {
    const a = uniquePrefix('Outbox Relay');
    const b = uniquePrefix('Outbox Relay');
    expect(a).toMatch(/^t-outbox-relay-[0-9a-f]{10}$/);
    expect(a).not.toBe(b);
  });
});
