import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import type { DuckDBConnection } from '@duckdb/node-api';
import { ConflictError } from './errors.js';

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

/** `NNNN_name.sql` files of a folder, in name order. A missing folder has none. */
export async function readMigrations(dir: string): Promise<Migration[]> {
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return Promise.all(
    files.map(async (name) => {
      const sql = await readFile(join(dir, name), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

// Arbitrary but fixed: every Concord process takes the same lock, so two
// processes starting together do not apply a migration twice.
const PG_LOCK_KEY = 0x636f6e63; // "conc"

/**
 * Applies pending PostgreSQL migrations, each in its own transaction, under an
 * advisory lock. A migration whose file changed after it was applied is refused:
 * history is not rewritten silently.
 */
export async function migratePostgres(pool: pg.Pool, migrations: readonly Migration[]): Promise<string[]> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [PG_LOCK_KEY]);
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
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO concord_schema_migrations (name, checksum) VALUES ($1, $2)', [m.name, m.checksum]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
      done.push(m.name);
    }
    return done;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [PG_LOCK_KEY]).catch(() => undefined);
    client.release();
  }
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
