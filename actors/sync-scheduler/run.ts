import type pg from 'pg';
import type { Logger } from '../../runtime/index.js';
import { applyPage, readCursor } from './apply.js';
import { SOURCES, lagSeconds, readHorizon, readPage, type Cursor } from './entries.js';

export interface RunReport {
  runId: string;
  trigger: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  pages: number;
  scanned: number;
  created: number;
  updated: number;
  unchanged: number;
  conflicts: number;
  errors: number;
  cursors: Record<string, Cursor>;
  /** Seconds between the newest queue entry and the last one synced, per queue table. */
  lagSeconds: Record<string, number>;
}

export interface PageCounts {
  scanned: number;
  created: number;
  updated: number;
  unchanged: number;
  conflicts: number;
}

export interface RunDeps {
  queueDb: pg.Pool;
  portfolioDb: pg.Pool;
  batchSize: number;
  log: Logger;
  /** Called after each committed page, so progress is visible during a long run. */
  onPage?: (counts: PageCounts) => void | Promise<void>;
}

let warnedHidden = false;

/**
 * One sync run over both queue tables: page after page from each table's durable
 * cursor up to the horizon, each page applied in its own portfolio transaction.
 * Running it twice changes nothing: a second run finds its cursors at the end.
 */
export async function runSync(deps: RunDeps, runId: string, trigger: string): Promise<RunReport> {
  const started = Date.now();
  const report: RunReport = {
    runId,
    trigger,
    startedAt: new Date(started).toISOString(),
    finishedAt: '',
    durationMs: 0,
    pages: 0,
    scanned: 0,
    created: 0,
    updated: 0,
    unchanged: 0,
    conflicts: 0,
    errors: 0,
    cursors: {},
    lagSeconds: {},
  };
  const { horizon, hidden } = await readHorizon(deps.queueDb);
  if (hidden > 0 && !warnedHidden) {
    warnedHidden = true;
    deps.log.warn({ hidden }, 'cannot see every session on the queue database: grant pg_read_all_stats to the sync role, or slow transactions may be skipped');
  }
  for (const source of SOURCES) {
    let cursor = await readCursor(deps.portfolioDb, source);
    for (;;) {
      const entries = await readPage(deps.queueDb, source, cursor, horizon, deps.batchSize);
      if (entries.length === 0) break;
      const { plan, cursor: next } = await applyPage(deps.portfolioDb, source, cursor, entries);
      const counts = { scanned: entries.length, created: plan.create.length, updated: plan.update.length, unchanged: plan.unchanged.length, conflicts: plan.conflicts.length };
      report.pages++;
      report.scanned += counts.scanned;
      report.created += counts.created;
      report.updated += counts.updated;
      report.unchanged += counts.unchanged;
      report.conflicts += counts.conflicts;
      for (const c of plan.conflicts) deps.log.warn({ transactionId: c.entry.id, source: source.table, kind: c.kind, fields: c.fields }, 'sync conflict recorded');
      await deps.onPage?.(counts);
      cursor = next;
      if (entries.length < deps.batchSize) break;
    }
    report.cursors[source.table] = cursor;
    report.lagSeconds[source.table] = await lagSeconds(deps.queueDb, source, cursor);
  }
  const finished = Date.now();
  report.finishedAt = new Date(finished).toISOString();
  report.durationMs = finished - started;
  return report;
}
