import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { parseInput, type RouteSpec } from '../route.js';

/** One table's score in one completed run (actors/validator tableScoreHistory gives them). */
export interface ScorePoint {
  table: string;
  run_id: string;
  finished_at: string;
  consistency_score: number | null;
}

/** What the dashboard routes need; the page's other data comes from GET /monitoring/dashboard. */
export interface DashboardDeps {
  /** The watched tables (MonitoringConfig.tables), each listed even before its first run. */
  tables: readonly string[];
  /** Each table's score in its last `runs` completed runs, oldest first per table. */
  scoreHistory(tables: readonly string[], runs: number): Promise<ScorePoint[]>;
}

export const DASHBOARD_PATH = '/dashboard';
const HISTORY_PATH = '/api/v1/data-sync/monitoring/score-history';
/** The page, its script and its style sheet: plain files beside this router, no build step. */
const ASSET_DIR = new URL('../dashboard/', import.meta.url);
const ASSETS: Record<string, string> = {
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
};
// Everything the page loads is its own: no inline script or style, no other origin.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const pageQuery = z.object({
  refresh: z.coerce.number().int().min(1).max(3600).default(5),
  runs: z.coerce.number().int().min(2).max(200).default(20),
});
const historyQuery = z.object({ runs: z.coerce.number().int().min(1).max(200).default(20) });

/**
 * `GET /dashboard`: a self-refreshing page (score per table over time, lag, queue depths,
 * DLQ size, firing alerts) behind the same auth as the API; a browser sends the token as the
 * `concord_token` cookie. `GET /api/v1/data-sync/monitoring/score-history`: the chart's data.
 */
export function dashboardRoutes(deps: DashboardDeps): RouteSpec[] {
  // Read once at start (the files ship with the sources, see the Dockerfile's COPY http).
  const page = readFileSync(fileURLToPath(new URL('index.html', ASSET_DIR)), 'utf8');
  const assets = new Map(Object.keys(ASSETS).map((name) => [name, readFileSync(fileURLToPath(new URL(name, ASSET_DIR)))]));
  return [
    {
      method: 'get',
      path: DASHBOARD_PATH,
      summary: 'Monitoring dashboard (HTML): consistency score per table over time, sync lag, queue depths, DLQ size, firing alerts; refreshes itself',
      tags: ['monitoring'],
      auth: true,
      params: [
        { name: 'refresh', in: 'query', description: 'Seconds between refreshes (1..3600)', schema: { type: 'integer', default: 5 } },
        { name: 'runs', in: 'query', description: 'Runs per table in the score chart (2..200)', schema: { type: 'integer', default: 20 } },
      ],
      responses: { 200: { description: 'HTML page', contentType: 'text/html', schema: { type: 'string' } }, 400: 'Bad refresh or runs', 401: 'No valid token (header or concord_token cookie)' },
      handler: (ctx) => {
        const q = parseInput(pageQuery, ctx.query, 'query');
        ctx.type = 'text/html; charset=utf-8';
        ctx.set('Cache-Control', 'no-store');
        ctx.set('Content-Security-Policy', CSP);
        ctx.set('X-Content-Type-Options', 'nosniff');
        // Validated integers only: nothing from the request reaches the page as text.
        ctx.body = page.replace('{{refreshSeconds}}', String(q.refresh)).replace('{{runs}}', String(q.runs));
      },
    },
    {
      method: 'get',
      path: `${DASHBOARD_PATH}/:asset`,
      summary: 'Script and style sheet of the dashboard page',
      tags: ['monitoring'],
      auth: true,
      params: [{ name: 'asset', in: 'path', description: 'Asset file name', required: true, schema: { type: 'string', enum: Object.keys(ASSETS) } }],
      responses: { 200: 'The asset', 404: 'No such asset' },
      handler: (ctx) => {
        const name = String(ctx.params.asset);
        const body = assets.get(name);
        if (!body) return; // falls through to the 404 body
        ctx.type = ASSETS[name]!;
        ctx.set('Cache-Control', 'no-cache');
        ctx.set('X-Content-Type-Options', 'nosniff');
        ctx.body = body;
      },
    },
    {
      method: 'get',
      path: HISTORY_PATH,
      summary: 'Consistency score of each watched table in its last runs (oldest first): the dashboard\'s score-over-time chart',
      tags: ['monitoring'],
      auth: true,
      params: [{ name: 'runs', in: 'query', description: 'Completed runs per table, at most 200', schema: { type: 'integer', default: 20 } }],
      responses: { 200: '`{ runs, tables: [{ table, points: [{ run_id, finished_at, consistency_score }] }] }`', 400: 'Bad runs' },
      handler: async (ctx) => {
        const { runs } = parseInput(historyQuery, ctx.query, 'query');
        const points = await deps.scoreHistory(deps.tables, runs);
        ctx.body = {
          runs,
          tables: deps.tables.map((table) => ({
            table,
            points: points.filter((p) => p.table === table).map(({ run_id, finished_at, consistency_score }) => ({ run_id, finished_at, consistency_score })),
          })),
        };
      },
    },
  ];
}
