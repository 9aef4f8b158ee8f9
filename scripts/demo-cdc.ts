import type { DuckDBConnection } from '@duckdb/node-api';
import pg from 'pg';
import { errorMessage, type RuntimeServices } from '../runtime/index.js';

/** What one report compared: the source table and its DuckDB copy, read one after the other. */
interface DemoCopyReport {
  source: { rows: number; total: string };
  copy: { rows: number; total: string } | null;
  inStep: boolean;
}

/**
 * So the demo shows the DuckDB copy following live writes: every `everyMs` it counts
 * `demo_orders` and sums its totals in PostgreSQL and in the copy (`main.demo_orders`),
 * and says whether they are in step. The copy is read through this process's own DuckDB
 * instance (DuckDB allows one process per file; MVCC lets a second connection read beside
 * the writer), so it reports only while this process holds the DuckDB writer lease.
 * A report taken while a write is on its way says "catching up"; the next one is in step.
 */
export function reportDemoCopy(databaseUrl: string, services: RuntimeServices, say: (m: string) => void, everyMs = 10_000): { stop(): Promise<void> } {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  pool.on('error', () => undefined);
  let duck: DuckDBConnection | undefined;
  let running: Promise<void> = Promise.resolve();

  const read = async (): Promise<DemoCopyReport | undefined> => {
    if (!services.duckDbLease.held) return undefined;
    duck ??= await (await services.duckdb()).instance.connect();
    const src = await pool.query<{ n: number; total: string }>('SELECT count(*)::int AS n, coalesce(sum(total), 0)::text AS total FROM demo_orders');
    let copy: DemoCopyReport['copy'] = null;
    const found = await duck.runAndReadAll(`SELECT 1 FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'demo_orders'`);
    if (found.currentRowCount > 0) {
      const r = await duck.runAndReadAll('SELECT count(*)::INTEGER AS n, coalesce(sum(total), 0)::VARCHAR AS total FROM main.demo_orders');
      const [n, total] = r.getRows()[0] as [number, string];
      copy = { rows: n, total };
    }
    const source = { rows: src.rows[0]!.n, total: src.rows[0]!.total };
    return { source, copy, inStep: copy !== null && copy.rows === source.rows && Number(copy.total) === Number(source.total) };
  };

  const tick = async () => {
    try {
      const r = await read();
      if (r === undefined) return;
      const rows = (n: number) => `${n} ${n === 1 ? 'row' : 'rows'}`;
      const copy = r.copy === null ? 'no copy yet' : `${rows(r.copy.rows)}, total ${r.copy.total}`;
      say(`CDC copy: demo_orders in PostgreSQL ${rows(r.source.rows)}, total ${r.source.total}; in DuckDB ${copy} (${r.inStep ? 'in step' : 'catching up'})`);
    } catch (err) {
      // A connection of a lease this process lost, or a stop under way: open a new one next time.
      duck?.closeSync();
      duck = undefined;
      say(`CDC copy: could not compare (${errorMessage(err)})`);
    }
  };
  const timer = setInterval(() => {
    running = running.then(tick);
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await running;
      duck?.closeSync();
      duck = undefined;
      await pool.end();
    },
  };
}
