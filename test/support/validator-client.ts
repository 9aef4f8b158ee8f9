import { expect } from 'vitest';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { RunningProcess } from '../../cli/process.js';
import { eventually } from './child.js';

// Response bodies are read field by field in assertions; their shapes are asserted, not typed.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Body = Record<string, any>;

/**
 * The validator's HTTP API and the DuckDB copy as the integration tests drive them: `proc`
 * and `conn` are read at call time (they are set in `beforeAll`). `runCheck` starts a run and
 * waits for its completed report, naming the validate queues' depths when it does not come.
 */
export function validatorClient(get: () => { proc: RunningProcess; conn: DuckDBConnection }, timeoutMs = 60_000) {
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: Body }> => {
    const res = await fetch(`${get().proc.http.url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Body) : {} };
  };
  const duck = async (sql: string) => (await get().conn.runAndReadAll(sql)).getRowObjectsJson();
  const runCheck = async (body: Body): Promise<Body> => {
    const started = await call('POST', '/api/v1/data-sync/consistency/check', body);
    expect(started.status).toBe(202);
    let report: Body = {};
    await eventually(async () => {
      report = (await call('GET', `/api/v1/data-sync/consistency/reports/${started.body.run_id}`)).body;
      expect(report.status).toBe('completed');
      return true;
    }, timeoutMs).catch(async (err: unknown) => {
      const depths = await get().proc.runtime.services.queues.queueDepths();
      throw new Error(`run not completed: ${JSON.stringify(report)}; queues ${JSON.stringify(depths.filter((d) => d.queue.startsWith('validate')))}; ${String(err)}`);
    });
    return report;
  };
  return { call, duck, runCheck };
}
