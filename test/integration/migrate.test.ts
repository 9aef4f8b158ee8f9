import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConflictError, createLogger } from '../../runtime/index.js';
import { migrateDownPostgres, migratePostgres, migrationsDir, readMigrations, type MigrationSet } from '../../runtime/migrate.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../cli/main.ts', import.meta.url));
const quiet = createLogger('silent');

/** Reversible and forward-only migrations over real PostgreSQL, with small migration folders of their own. */
describe('migrations up and down (PostgreSQL)', () => {
  const dirs: string[] = [];
  const pools: pg.Pool[] = [];

  afterEach(async () => {
    for (const p of pools.splice(0)) await p.end();
  });
  afterAll(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  /** A temporary migrations folder holding `files` (name -> SQL). */
  async function folder(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'concord-migrate-'));
    dirs.push(dir);
    for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
    return dir;
  }

  /** A fresh, unmigrated database and a pool on it. */
  async function database(label: string): Promise<{ url: string; pool: pg.Pool }> {
    const url = await freshDatabase(testServices().databaseUrl, uniquePrefix(label).replace(/-/g, '_'));
    const pool = new pg.Pool({ connectionString: url, max: 3 });
    pools.push(pool);
    return { url, pool };
  }

  async function tables(pool: pg.Pool): Promise<string[]> {
    const { rows } = await pool.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`);
    return rows.map((r) => r.name);
  }

  async function recorded(pool: pg.Pool): Promise<string[]> {
    const { rows } = await pool.query<{ name: string }>('SELECT name FROM concord_schema_migrations ORDER BY name');
    return rows.map((r) => r.name);
  }

  /** Tables, columns, indexes, functions and triggers of the public schema: what a full down then up must reproduce. */
  async function schema(pool: pg.Pool): Promise<{ tables: string[]; columns: string[]; indexes: string[]; functions: string[]; triggers: string[] }> {
    const list = async (sql: string) => (await pool.query<{ v: string }>(sql)).rows.map((r) => r.v);
    return {
      tables: await list(`SELECT tablename AS v FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`),
      columns: await list(`SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable AS v
        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1`),
      indexes: await list(`SELECT indexdef AS v FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`),
      functions: await list(`SELECT p.proname AS v FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1`),
      triggers: await list(`SELECT tgname || ' ON ' || tgrelid::regclass::text AS v FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`),
    };
  }

  const three = {
    '0001_a.sql': 'CREATE TABLE mig_a (id int PRIMARY KEY);',
    '0001_a.down.sql': 'DROP TABLE mig_a;',
    '0002_b.sql': 'CREATE TABLE mig_b (id int PRIMARY KEY, a int REFERENCES mig_a (id));',
    '0002_b.down.sql': 'DROP TABLE mig_b;',
    '0003_c.sql': 'CREATE TABLE mig_c (id int PRIMARY KEY);\nCREATE INDEX mig_c_id ON mig_c (id);',
    '0003_c.down.sql': 'DROP INDEX mig_c_id;\nDROP TABLE mig_c;',
  };

  it('reads down files as the companion of their migration, not as migrations', async () => {
    const dir = await folder({ ...three, 'notes.txt': 'ignored', '0004_d.sql': 'SELECT 1;' });
    const migrations = await readMigrations(dir);
    expect(migrations.map((m) => m.name)).toEqual(['0001_a.sql', '0002_b.sql', '0003_c.sql', '0004_d.sql']);
    expect(migrations[0]?.down).toBe('DROP TABLE mig_a;');
    expect(migrations[3]?.down).toBeUndefined();
    // The checksum covers the forward SQL only: a down file can be added to an applied migration.
    const [without] = await readMigrations(await folder({ '0001_a.sql': three['0001_a.sql'] }));
    expect(migrations[0]?.checksum).toBe(without?.checksum);
    // A down file whose forward file is missing (a typo) is refused rather than ignored.
    await expect(readMigrations(await folder({ '0001_a.sql': 'SELECT 1;', '0001_aa.down.sql': 'SELECT 1;' }))).rejects.toThrow(/0001_aa\.down\.sql/);
  });

  it('applies all, then reverts one step: the object is gone and its row deleted', async () => {
    const { pool } = await database('mig-step');
    const migrations = await readMigrations(await folder(three));
    expect(await migratePostgres(pool, migrations)).toEqual(['0001_a.sql', '0002_b.sql', '0003_c.sql']);
    expect(await tables(pool)).toEqual(['concord_schema_migrations', 'mig_a', 'mig_b', 'mig_c']);

    expect(await migrateDownPostgres(pool, migrations)).toEqual(['0003_c.sql']);
    expect(await tables(pool)).toEqual(['concord_schema_migrations', 'mig_a', 'mig_b']);
    expect(await recorded(pool)).toEqual(['0001_a.sql', '0002_b.sql']);

    // Several steps revert newest first.
    expect(await migrateDownPostgres(pool, migrations, { steps: 5 })).toEqual(['0002_b.sql', '0001_a.sql']);
    expect(await tables(pool)).toEqual(['concord_schema_migrations']);
    expect(await recorded(pool)).toEqual([]);
    // Nothing left: nothing to do.
    expect(await migrateDownPostgres(pool, migrations)).toEqual([]);
  });

  it('reverts to a named migration, which is kept', async () => {
    const { pool } = await database('mig-to');
    const migrations = await readMigrations(await folder(three));
    await migratePostgres(pool, migrations);

    expect(await migrateDownPostgres(pool, migrations, { to: '0003_c.sql' })).toEqual([]);
    expect(await migrateDownPostgres(pool, migrations, { to: '0001_a' })).toEqual(['0003_c.sql', '0002_b.sql']);
    expect(await tables(pool)).toEqual(['concord_schema_migrations', 'mig_a']);
    expect(await recorded(pool)).toEqual(['0001_a.sql']);

    await expect(migrateDownPostgres(pool, migrations, { to: '0002_b.sql' })).rejects.toThrow(/0002_b\.sql is not applied/);
    await expect(migrateDownPostgres(pool, migrations, { to: '0009_nope' })).rejects.toThrow(/0009_nope\.sql is not a migration/);
    await expect(migrateDownPostgres(pool, migrations, { to: '0001_a', steps: 1 })).rejects.toThrow(/not both/);
    await expect(migrateDownPostgres(pool, migrations, { steps: 0 })).rejects.toThrow(/positive integer/);
    expect(await recorded(pool)).toEqual(['0001_a.sql']);
  });

  it('refuses, reverting nothing, when a migration to revert has no down file or was changed', async () => {
    const { pool } = await database('mig-refuse');
    const files: Record<string, string> = { ...three };
    delete files['0002_b.down.sql'];
    const dir = await folder(files);
    const migrations = await readMigrations(dir);
    await migratePostgres(pool, migrations);

    // 0003 could be reverted, but 0002 cannot: neither is.
    const refused = migrateDownPostgres(pool, migrations, { steps: 2 });
    await expect(refused).rejects.toBeInstanceOf(ConflictError);
    await expect(refused).rejects.toThrow(/0002_b\.sql has no down file 0002_b\.down\.sql/);
    await expect(migrateDownPostgres(pool, migrations, { to: '0001_a' })).rejects.toThrow(/nothing reverted.*0002_b\.sql/);
    expect(await tables(pool)).toEqual(['concord_schema_migrations', 'mig_a', 'mig_b', 'mig_c']);
    expect(await recorded(pool)).toEqual(['0001_a.sql', '0002_b.sql', '0003_c.sql']);

    // A migration edited after it was applied is not reverted with the new file's down SQL.
    await writeFile(join(dir, '0003_c.sql'), 'CREATE TABLE mig_c (id bigint PRIMARY KEY);');
    await expect(migrateDownPostgres(pool, await readMigrations(dir))).rejects.toThrow(/0003_c\.sql was changed after it was applied/);
    expect(await recorded(pool)).toEqual(['0001_a.sql', '0002_b.sql', '0003_c.sql']);

    // An applied migration whose file is gone cannot be reverted either.
    await expect(migrateDownPostgres(pool, migrations.slice(0, 2))).rejects.toThrow(/0003_c\.sql is applied but its file is missing/);
    expect(await tables(pool)).toContain('mig_c');
  });

  it('keeps the reverts already committed when a down file fails, and names it', async () => {
    const { pool } = await database('mig-fail');
    const migrations = await readMigrations(await folder({ ...three, '0002_b.down.sql': 'DROP TABLE mig_b;\nDROP TABLE no_such_table;' }));
    await migratePostgres(pool, migrations);
    await expect(migrateDownPostgres(pool, migrations, { steps: 3 })).rejects.toThrow(
      /reverting 0002_b\.sql with 0002_b\.down\.sql failed \(already reverted: 0003_c\.sql\).*no_such_table/,
    );
    // 0002's down ran in a transaction that was rolled back: mig_b is still there, and recorded.
    expect(await tables(pool)).toEqual(['concord_schema_migrations', 'mig_a', 'mig_b']);
    expect(await recorded(pool)).toEqual(['0001_a.sql', '0002_b.sql']);
  });

  it('re-applies after a full down', async () => {
    const { pool } = await database('mig-reapply');
    const migrations = await readMigrations(await folder(three));
    await migratePostgres(pool, migrations);
    await pool.query('INSERT INTO mig_a (id) VALUES (1)');
    expect(await migrateDownPostgres(pool, migrations, { steps: Number.POSITIVE_INFINITY })).toEqual(['0003_c.sql', '0002_b.sql', '0001_a.sql']);
    expect(await migratePostgres(pool, migrations)).toEqual(['0001_a.sql', '0002_b.sql', '0003_c.sql']);
    expect(await tables(pool)).toEqual(['concord_schema_migrations', 'mig_a', 'mig_b', 'mig_c']);
    expect((await pool.query('SELECT * FROM mig_a')).rowCount).toBe(0);
    // Down on a database that was never migrated has nothing to revert (and creates nothing).
    const { pool: empty } = await database('mig-empty');
    expect(await migrateDownPostgres(empty, migrations)).toEqual([]);
    expect(await tables(empty)).toEqual([]);
  });

  it('serializes down with up under the advisory lock', async () => {
    const { pool } = await database('mig-lock');
    const migrations = await readMigrations(await folder({ ...three, '0003_c.sql': 'SELECT pg_sleep(0.5);\nCREATE TABLE mig_c (id int PRIMARY KEY);', '0003_c.down.sql': 'DROP TABLE mig_c;' }));
    const up = migratePostgres(pool, migrations);
    await new Promise((r) => setTimeout(r, 150));
    // Started while `up` holds the lock: it waits, then reverts the fully applied 0003.
    const down = migrateDownPostgres(pool, migrations);
    expect(await up).toEqual(['0001_a.sql', '0002_b.sql', '0003_c.sql']);
    expect(await down).toEqual(['0003_c.sql']);
    expect(await recorded(pool)).toEqual(['0001_a.sql', '0002_b.sql']);
  });

  describe.each<MigrationSet>(['postgres', 'portfolio-db'])('the repository set %s', (set) => {
    it('goes up, fully down, and up again to the same schema', async () => {
      const { url, pool } = await database(`mig-${set}`);
      const names = (await readMigrations(migrationsDir(set))).map((m) => m.name);
      expect(await migrateDatabase(set, url, quiet)).toEqual(names);
      const up = await schema(pool);
      expect(up.tables.length).toBeGreaterThan(1);

      expect(await migrateDatabase(set, url, quiet, { down: { steps: Number.POSITIVE_INFINITY } })).toEqual([...names].reverse());
      const down = await schema(pool);
      expect(down.tables).toEqual(['concord_schema_migrations']);
      expect(down.functions).toEqual([]);
      expect(down.triggers).toEqual([]);
      expect(await recorded(pool)).toEqual([]);

      expect(await migrateDatabase(set, url, quiet)).toEqual(names);
      expect(await schema(pool)).toEqual(up);
    });
  });

  it('queue-db: down removes the sync triggers, function and indexes but keeps the queue tables and their rows', async () => {
    const { url, pool } = await database('mig-queue');
    await migrateDatabase('queue-db', url, quiet);
    const up = await schema(pool);
    await pool.query(`INSERT INTO investment_queue (id, user_id, amount, currency) VALUES (gen_random_uuid(), gen_random_uuid(), 10, 'EUR')`);

    expect(await migrateDatabase('queue-db', url, quiet, { down: { steps: Number.POSITIVE_INFINITY } })).toEqual(['0001_queues.sql']);
    const down = await schema(pool);
    expect(down.tables).toEqual(['concord_schema_migrations', 'investment_queue', 'withdrawal_queue']);
    expect(down.functions).toEqual([]);
    expect(down.triggers).toEqual([]);
    expect(down.indexes.filter((i) => i.includes('updated_at_id'))).toEqual([]);
    expect((await pool.query('SELECT * FROM investment_queue')).rowCount).toBe(1);

    await migrateDatabase('queue-db', url, quiet);
    expect(await schema(pool)).toEqual(up);
    expect((await pool.query('SELECT * FROM investment_queue')).rowCount).toBe(1);
  });

  it('concord migrate down, from the command line', async () => {
    const { url, pool } = await database('mig-cli');
    await migrateDatabase('portfolio-db', url, quiet);
    const cli = (...args: string[]) =>
      run(process.execPath, ['--import', 'tsx', CLI, 'migrate', 'down', ...args], {
        env: { ...process.env, USER_PORTFOLIO_DB_URI: url, DATABASE_URL: '', LOG_LEVEL: 'silent' },
      });

    await expect(cli('--database', 'portfolio-db', '--steps', '1', '--to', '0001_portfolio')).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/cannot be combined/) });
    await expect(cli('--database', 'nope')).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/--database: expected one of postgres, queue-db, portfolio-db/) });
    await expect(cli()).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/DATABASE_URL/) });

    const { stdout } = await cli('--database', 'portfolio-db', '--steps', '1');
    expect(stdout).toBe('portfolio-db: reverted 0001_portfolio.sql\n');
    expect(await tables(pool)).toEqual(['concord_schema_migrations']);
    expect((await cli('--database', 'portfolio-db', '--all')).stdout).toBe('portfolio-db: nothing to revert\n');
  });
});
