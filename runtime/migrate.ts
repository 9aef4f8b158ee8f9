import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { DuckDBConnection } from '@duckdb/node-api';
import { ConflictError, errorMessage } from './errors.js';

export interface Migration {
  /** The forward file's name, e.g. `0001_outbox.sql`; what concord_schema_migrations records. */
  name: string;
  sql: string;
  /** sha256 of the forward SQL only: editing a down file never invalidates an applied migration. */
  checksum: string;
  /** The SQL of the companion `NNNN_name.down.sql` that undoes this migration, when there is one. */
  down?: string;
}

const FORWARD_FILE = /^\d{4}_[a-z0-9_]+\.sql$/;
const DOWN_FILE = /^(\d{4}_[a-z0-9_]+)\.down\.sql$/;

/** The companion down file's name of a forward migration: `0001_outbox.sql` -> `0001_outbox.down.sql`. */
export function downFileName(name: string): string {
  return name.replace(/\.sql$/, '.down.sql');
}

/**
 * `NNNN_name.sql` files of a folder, in name order. A missing folder has none. A
 * `NNNN_name.down.sql` file is not a migration of its own: its SQL is attached to
 * `NNNN_name.sql` as `down`. A down file without its forward file is refused (a
 * misspelt name would otherwise leave the migration silently irreversible).
 */
export async function readMigrations(dir: string): Promise<Migration[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const forward = entries.filter((f) => FORWARD_FILE.test(f) && !DOWN_FILE.test(f)).sort();
  const downs = entries.filter((f) => DOWN_FILE.test(f));
  const orphans = downs.filter((f) => !forward.includes(f.replace(DOWN_FILE, '$1.sql')));
  if (orphans.length > 0) throw new Error(`down migration(s) without a forward migration in ${dir}: ${orphans.join(', ')}`);
  return Promise.all(
    forward.map(async (name) => {
      const sql = await readFile(join(dir, name), 'utf8');
      const migration: Migration = { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
      if (downs.includes(downFileName(name))) migration.down = await readFile(join(dir, downFileName(name)), 'utf8');
      return migration;
    }),
  );
}

// Arbitrary but fixed: every Concord process takes the same lock, so two
// processes starting together do not apply a migration twice.
const PG_LOCK_KEY = 0x636f6e63; // "conc"

/** Runs `work` on one connection holding the migration advisory lock (session level). */
async function withMigrationLock<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('SELECT pg_advisory_lock($1)', [PG_LOCK_KEY]);
    return await work(client);
  } finally {
    // A session lock outlives the checkout: if it cannot be released, the connection
    // is destroyed rather than returned to the pool still holding it.
    await client.query('SELECT pg_advisory_unlock($1)', [PG_LOCK_KEY]).catch((err: unknown) => {
      broken = err instanceof Error ? err : new Error(String(err));
    });
    client.release(broken);
  }
}

/** Runs `statements` in one transaction on `client`, rolled back if any fails. */
async function inTransaction(client: pg.PoolClient, statements: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  try {
    await statements(client);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  }
}

/**
 * Applies pending PostgreSQL migrations, each in its own transaction, under an
 * advisory lock. A migration whose file changed after it was applied is refused:
 * history is not rewritten silently.
 */
export async function migratePostgres(pool: pg.Pool, migrations: readonly Migration[]): Promise<string[]> {
  return withMigrationLock(pool, async (client) => {
    await client.query(`CREATE TABLE IF NOT EXISTS concord_schema_migrations (
      name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ name: string; checksum: string }>('SELECT name, checksum FROM concord_schema_migrations');
    const applied = new Map(rows.map((r) => [r.name, r.checksum]));
    const done: string[] = [];
    for (const m of migrations) {
      const previous = applied.get(m.name);
      if (previous !== undefined) {
        if (previous !== m.checksum) throw new ConflictError(`migration ${m.name} was changed after it was applied (PostgreSQL)`, { migration: m.name });
        continue;
      }
      await inTransaction(client, async (tx) => {
        await tx.query(m.sql);
        await tx.query('INSERT INTO concord_schema_migrations (name, checksum) VALUES ($1, $2)', [m.name, m.checksum]);
      });
      done.push(m.name);
    }
    return done;
  });
}

export interface MigrateDownOptions {
  /**
   * Keep the applied migrations up to and including this one (`0001_outbox.sql`, or
   * `0001_outbox`) and revert every applied migration after it. It must be applied.
   */
  to?: string;
  /**
   * How many of the most recent applied migrations to revert (default 1); fewer when
   * fewer are applied. `Infinity` reverts them all. Not together with `to`.
   */
  steps?: number;
}

/**
 * Reverts the most recent applied PostgreSQL migrations, newest (by name) first,
 * under the same advisory lock as migratePostgres. Each revert is its own
 * transaction: the down SQL runs and the migration's row leaves
 * concord_schema_migrations. Before anything is reverted, every migration to
 * revert must have its file and a down file, and its file must be unchanged since
 * it was applied; otherwise a ConflictError names them and nothing is reverted.
 * Returns the names reverted, in the order they were reverted.
 */
export async function migrateDownPostgres(pool: pg.Pool, migrations: readonly Migration[], options: MigrateDownOptions = {}): Promise<string[]> {
  const { to, steps } = options;
  if (to !== undefined && steps !== undefined) throw new Error('migrate down: give either `to` or `steps`, not both');
  if (steps !== undefined && !(steps === Number.POSITIVE_INFINITY || (Number.isSafeInteger(steps) && steps > 0))) {
    throw new Error(`migrate down: steps must be a positive integer, got ${String(steps)}`);
  }
  const keep = to === undefined ? undefined : to.endsWith('.sql') ? to : `${to}.sql`;
  return withMigrationLock(pool, async (client) => {
    const table = await client.query<{ present: boolean }>(`SELECT to_regclass('concord_schema_migrations') IS NOT NULL AS present`);
    const applied = table.rows[0]?.present
      ? (await client.query<{ name: string; checksum: string }>('SELECT name, checksum FROM concord_schema_migrations')).rows
      : [];
    // Name order is application order (migratePostgres applies files in name order).
    applied.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
    let revert: typeof applied;
    if (keep !== undefined) {
      const at = applied.findIndex((r) => r.name === keep);
      if (at < 0) {
        const known = migrations.some((m) => m.name === keep);
        throw new Error(`migrate down: ${keep} is ${known ? 'not applied' : 'not a migration of this set'}; applied: ${applied.map((r) => r.name).reverse().join(', ') || '(none)'}`);
      }
      revert = applied.slice(0, at);
    } else {
      revert = applied.slice(0, Math.min(steps ?? 1, applied.length));
    }

    const byName = new Map(migrations.map((m) => [m.name, m]));
    const problems: Array<{ migration: string; reason: string }> = [];
    const plan: Array<{ name: string; checksum: string; down: string }> = [];
    for (const row of revert) {
      const m = byName.get(row.name);
      if (m === undefined) problems.push({ migration: row.name, reason: 'is applied but its file is missing' });
      else if (m.checksum !== row.checksum) problems.push({ migration: row.name, reason: 'was changed after it was applied' });
      else if (m.down === undefined) problems.push({ migration: row.name, reason: `has no down file ${downFileName(row.name)}` });
      else plan.push({ name: row.name, checksum: row.checksum, down: m.down });
    }
    if (problems.length > 0) {
      throw new ConflictError(
        `migrate down refused, nothing reverted: ${problems.map((p) => `${p.migration} ${p.reason}`).join('; ')}`,
        { problems },
      );
    }

    const done: string[] = [];
    for (const step of plan) {
      try {
        await inTransaction(client, async (tx) => {
          await tx.query(step.down);
          const deleted = await tx.query('DELETE FROM concord_schema_migrations WHERE name = $1 AND checksum = $2', [step.name, step.checksum]);
          if (deleted.rowCount !== 1) throw new Error('its row in concord_schema_migrations is gone');
        });
      } catch (err) {
        const already = done.length > 0 ? ` (already reverted: ${done.join(', ')})` : '';
        throw new Error(`reverting ${step.name} with ${downFileName(step.name)} failed${already}: ${errorMessage(err)}`, { cause: err });
      }
      done.push(step.name);
    }
    return done;
  });
}

/** The same for the DuckDB copy (one writer process, so no lock is needed). */
export async function migrateDuckDb(connection: DuckDBConnection, migrations: readonly Migration[]): Promise<string[]> {
  await connection.run(`CREATE TABLE IF NOT EXISTS concord_schema_migrations (
    name VARCHAR PRIMARY KEY, checksum VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
  const reader = await connection.runAndReadAll('SELECT name, checksum FROM concord_schema_migrations');
  const applied = new Map(reader.getRowObjects().map((r) => [String(r.name), String(r.checksum)]));
  const done: string[] = [];
  for (const m of migrations) {
    const previous = applied.get(m.name);
    if (previous !== undefined) {
      if (previous !== m.checksum) throw new ConflictError(`migration ${m.name} was changed after it was applied (DuckDB)`, { migration: m.name });
      continue;
    }
    await connection.run('BEGIN TRANSACTION');
    try {
      await connection.run(m.sql);
      await connection.run('INSERT INTO concord_schema_migrations (name, checksum) VALUES ($1, $2)', [m.name, m.checksum]);
      await connection.run('COMMIT');
    } catch (err) {
      await connection.run('ROLLBACK');
      throw err;
    }
    done.push(m.name);
  }
  return done;
}

export type MigrationSet = 'postgres' | 'duckdb' | 'queue-db' | 'portfolio-db';

/** The repository's migrations folder for one database. */
export function migrationsDir(database: MigrationSet): string {
  return new URL(`../migrations/${database}/`, import.meta.url).pathname;
}
