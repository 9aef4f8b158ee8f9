import { describe, expect, it } from 'vitest';
import { openDuckDb } from '../../runtime/connections.js';
import { loadConfig } from '../../runtime/config.js';

describe('openDuckDb', () => {
  it('opens DuckDB with the configured memory limit, threads and checkpoint threshold', async () => {
    const { duckdb } = loadConfig({ AUTH_MODE: 'none', DUCKDB_DATABASE_PATH: ':memory:', DUCKDB_WORKER_THREADS: '1', DUCKDB_MEMORY_LIMIT: '300MB', DUCKDB_CHECKPOINT_THRESHOLD: '64MB' });
    const db = await openDuckDb(duckdb);
    try {
      const read = async (name: string) => String((await db.connection.runAndReadAll(`SELECT current_setting('${name}')`)).getRows()[0]![0]);
      expect(await read('threads')).toBe('1');
      // DuckDB reports sizes in its own units: 300MB = 286.1 MiB, 64MB = 61.0 MiB.
      expect(await read('memory_limit')).toMatch(/^286\.\d MiB$/);
      expect(await read('checkpoint_threshold')).toMatch(/^61\.0 MiB$/);
    } finally {
      db.close();
    }
  });
});
