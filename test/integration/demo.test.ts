import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { startScript, type Child } from '../support/child.js';

/** `[demo] CDC copy: demo_orders in PostgreSQL 3 rows, total 325.35; in DuckDB 3 rows, total 325.35 (in step)` */
const COPY_LINE = /^\[demo\] CDC copy: demo_orders in PostgreSQL (\d+) rows?, total ([\d.]+); in DuckDB (?:(\d+) rows?, total ([\d.]+)|no copy yet) \((in step|catching up)\)$/;

interface CopyReport {
  sourceRows: number;
  sourceTotal: string;
  copyRows: number | undefined;
  copyTotal: string | undefined;
  inStep: boolean;
}

function copyReports(demo: Child): CopyReport[] {
  return demo.lines.flatMap((l) => {
    const m = COPY_LINE.exec(typeof l.msg === 'string' ? l.msg : '');
    if (!m) return [];
    return [{ sourceRows: Number(m[1]), sourceTotal: m[2]!, copyRows: m[3] === undefined ? undefined : Number(m[3]), copyTotal: m[4], inStep: m[5] === 'in step' }];
  });
}

let demo: Child | undefined;
afterEach(async () => {
  demo?.kill('SIGKILL');
  await demo?.exited;
  demo = undefined;
});

describe('npm run demo (scripts/demo.ts)', () => {
  it('runs the whole runtime on the given services; its report shows the DuckDB copy following the live writes; SIGTERM stops it with exit 0', async () => {
    const { redisUrl, databaseUrl } = testServices();
    const tag = uniquePrefix('demo').replace(/-/g, '_');
    const dbUrl = await freshDatabase(databaseUrl, tag);
    const dir = mkdtempSync(join(tmpdir(), 'concord-demo-test-'));
    const slot = `${tag}_slot`;
    const admin = new pg.Client({ connectionString: dbUrl });
    await admin.connect();
    try {
      demo = startScript('scripts/demo.ts', {
        REDIS_URL: redisUrl,
        DATABASE_URL: dbUrl,
        DUCKDB_DATABASE_PATH: join(dir, 'analytics.duckdb'),
        CONCORD_QUEUE_PREFIX: uniquePrefix('demo'),
        CDC_REPLICATION_SLOT_NAME: slot,
        DEMO_CDC_REPORT_MS: '1000',
        LOG_LEVEL: 'warn',
        KAFKA_BROKERS: '',
        SECRET_KEY: '',
      });
      const started = await demo.waitFor((l) => typeof l.msg === 'string' && l.msg.includes('control plane'), 120_000);
      const url = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(String(started.msg))?.[1];
      expect(url).toBeDefined();
      expect((await fetch(`${url}/health`)).status).toBe(200);

      // Two reports in step with different contents: the copy followed writes made while it ran.
      await demo.waitFor(() => {
        const inStep = copyReports(demo!).filter((r) => r.inStep && r.sourceRows > 0);
        return new Set(inStep.map((r) => `${r.sourceRows}/${r.sourceTotal}`)).size >= 2;
      }, 90_000);
      for (const r of copyReports(demo).filter((x) => x.inStep)) {
        expect(r.copyRows).toBe(r.sourceRows);
        expect(Number(r.copyTotal)).toBe(Number(r.sourceTotal));
      }
      // The reports read the real table: PostgreSQL holds at least what the last one counted,
      // less the one order in five the demo deletes.
      const last = copyReports(demo).at(-1)!;
      const now = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM demo_orders');
      expect(now.rows[0]!.n).toBeGreaterThanOrEqual(last.sourceRows - 1);

      const status: unknown = await (await fetch(`${url}/api/v1/data-sync/cdc/status`)).json();
      expect(JSON.stringify(status)).toContain(slot);
      expect(JSON.stringify(status)).toContain('demo_orders');

      demo.kill('SIGTERM');
      expect((await demo.exited).code).toBe(0);
    } finally {
      // The slot would pin the shared test server's WAL for the rest of the suite.
      await admin.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slot]).catch(() => undefined);
      await admin.end();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
