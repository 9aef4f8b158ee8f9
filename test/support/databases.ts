import pg from 'pg';
import { createLogger } from '../../runtime/index.js';
import { migrateDatabase } from '../../cli/capabilities.js';
import type { MigrationSet } from '../../runtime/migrate.js';

/** A fresh database on the test server, migrated with `set`; returns its URL. */
export async function freshDatabase(serverUrl: string, name: string, set?: MigrationSet): Promise<string> {
  if (!/^[a-z][a-z0-9_]{0,62}$/.exec(name)) throw new Error(`bad database name ${name}`);
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  if (set) await migrateDatabase(set, url.toString(), createLogger('silent'));
  return url.toString();
}
