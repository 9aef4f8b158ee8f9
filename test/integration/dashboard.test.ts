import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path, { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { DuckDBConnection } from '@duckdb/node-api';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { loadConfig } from '../../runtime/index.js';
import { startProcess, type RunningProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { testServices, uniquePrefix, runtimeEnv } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';
import { eventually } from '../support/child.js';
import { signHs256, TEST_SECRET } from '../support/jwt.js';
import { consistencyScore } from '../../actors/validator/index.js';

// Response bodies are read field by field in assertions; their shapes are asserted, not typed.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = Record<string, any>;
type EnsureChromiumModule = { ensureChromium(opts?: { log?: (line: string) => void }): { executablePath: string; version: string; installed: boolean } };

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VIEWPORT = { width: 1280, height: 900 };
// Chromium on a closed network: no background fetches (component updates, sync, QUIC probes).
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
// The chart's first two series colours (http/dashboard/dashboard.js COLORS) and the alert red (dashboard.css --bad).
const SERIES_RGB = { 'public.items': [0x2b, 0x6c, 0xb0], 'public.notes': [0xd9, 0x77, 0x06] } as const;
const ALERT_RGB = [0xc6, 0x2f, 0x2f];

/**
 * What the functions run in the page use of the browser's globals, typed by hand: this project
 * compiles without the DOM library. (String predicates would not do: the page's CSP forbids eval.)
 */
interface PageGlobals {
  sameDocument?: boolean;
  document: {
    body: { dataset: Record<string, string | undefined> };
    querySelectorAll(selector: string): { length: number };
    getElementById(id: string): { textContent: string | null } | null;
  };
}
interface BrowserDecode {
  Image: new () => { src: string; naturalWidth: number; naturalHeight: number; decode(): Promise<void> };
  document: {
    createElement(tag: 'canvas'): {
      width: number;
      height: number;
      getContext(kind: '2d'): { drawImage(img: unknown, x: number, y: number): void; getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null;
    };
  };
}

/**
 * The /dashboard page in a real headless Chromium (Debian's, driven by playwright-core) over a
 * real control plane: dual-writer, validator and monitoring on the test Redis/PostgreSQL and a
 * DuckDB file, JWT auth on. Real runs make the score history and a firing alert; a real bad
 * job makes the DLQ entry. Set DASHBOARD_SCREENSHOT=/path.png to keep the screenshot.
 */
describe('dashboard page in headless Chromium', () => {
  let dir: string;
  let proc: RunningProcess;
  let db: pg.Pool;
  let conn: DuckDBConnection;
  let context: BrowserContext;
  let page: Page;
  let token: string;
  const pageErrors: string[] = [];
  /** Each run's score (all tables), and each run's score of public.items alone. */
  const runScores: number[] = [];
  const itemScores: Array<number | null> = [];

  const call = async (method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: Body }> => {
    const res = await fetch(`${proc.http.url}${urlPath}`, {
      method,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text.startsWith('{') ? (JSON.parse(text) as Body) : { text } };
  };
  const duck = async (sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJson();
  const runCheck = async (): Promise<Body> => {
    const started = await call('POST', '/api/v1/data-sync/consistency/check', {});
    expect(started.status).toBe(202);
    return eventually(async () => {
      const report = (await call('GET', `/api/v1/data-sync/consistency/reports/${started.body.run_id}`)).body;
      return report.status === 'completed' ? report : undefined;
    }, 60_000, 100, `run ${started.body.run_id} completed`);
  };
  /** A payload the dual-writer refuses: it goes to the dualwrite DLQ at once, as a buggy producer's would. */
  const deadLetter = (key: string) => proc.runtime.services.queues.queue('dualwrite').add('bad', { bogus: key });
  const record = (report: Body): Body => {
    runScores.push(report.consistency_score as number);
    itemScores.push(consistencyScore((report.results as Body[]).filter((r) => r.table === 'public.items') as Array<{ status: string; weight: number }>));
    return report;
  };
  const dashboardJson = async () => (await call('GET', '/api/v1/data-sync/monitoring/dashboard')).body;

  beforeAll(async () => {
    const { ensureChromium } = (await import(pathToFileURL(path.join(root, 'scripts', 'ensure-chromium.mjs')).href)) as EnsureChromiumModule;
    const browserBinary = ensureChromium({ log: (line) => console.log(`[ensure-chromium] ${line}`) });

    dir = mkdtempSync(join(tmpdir(), 'concord-dashboard-'));
    const { redisUrl, databaseUrl } = testServices();
    const url = await freshDatabase(databaseUrl, uniquePrefix('dash').replace(/-/g, '_'), 'postgres');
    db = new pg.Pool({ connectionString: url, max: 2 });
    await db.query(`CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(10,2) NOT NULL)`);
    await db.query(`INSERT INTO items SELECT g, 'item ' || g, g % 100 FROM generate_series(1, 500) g`);
    await db.query(`CREATE TABLE notes (id bigint PRIMARY KEY, body text)`);
    await db.query(`INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g`);
    const env = runtimeEnv({ redisUrl, databaseUrl: url, prefix: uniquePrefix('dash') }, {
      AUTH_MODE: 'jwt',
      SECRET_KEY: TEST_SECRET,
      DUCKDB_DATABASE_PATH: join(dir, 'copy.duckdb'),
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      KAFKA_BROKERS: '',
      DATA_SYNC_ENABLED: 'true',
      DATA_SYNC_TABLES: 'items,notes',
      VALIDATOR_CHECK_INTERVAL_SECONDS: '0',
      VALIDATOR_RECHECK_DELAY_SECONDS: '0',
      VALIDATOR_BUSINESS_RULES: JSON.stringify({ items: [{ name: 'amount_not_negative', predicate: 'amount >= 0' }] }),
      ENABLE_SYNC_MONITORING: 'true',
      MONITORING_INTERVAL_SECONDS: '1',
    });
    proc = await startProcess({ config: loadConfig(env), role: 'all', ...selectCapabilities('all', 'dual-writer,validator,monitoring', env), onEscalate: () => undefined });
    token = await signHs256({ sub: 'ops' });
    for (const t of ['items', 'notes']) expect((await call('POST', `/api/v1/data-sync/sync/table/${t}/full`)).status).toBe(202);
    conn = await (await proc.runtime.services.duckdb()).instance.connect();
    await eventually(async () => (expect(await duck('SELECT (SELECT count(*) FROM items)::INT AS i, (SELECT count(*) FROM notes)::INT AS n')).toEqual([{ i: 500, n: 50 }]), true), 30_000);

    // History: a clean run, then one where a value of items differs in the copy (row_count and
    // the rule pass, data_hash fails: 3 of 6 weight lost, score 50) and its alert fires.
    record(await runCheck());
    await conn.run(`UPDATE items SET amount = amount + 1 WHERE id = 42`);
    const second = record(await runCheck());
    expect(second.results.find((r: Body) => r.table === 'public.items' && r.check_type === 'data_hash')).toMatchObject({ status: 'failed', diff_total: 1 });
    await eventually(async () => ((await call('GET', '/api/v1/data-sync/monitoring/alerts')).body.alerts as Body[]).some((a) => a.subject === 'public.items'), 20_000, 200, 'score alert firing');
    await deadLetter('first');
    // A change parked in a sync queue: the lag and the dualwrite depth are not zero while the page is open.
    await proc.runtime.services.queues.queue('dualwrite').add('parked', { parked: true }, { delay: 3_600_000 });
    await eventually(async () => (await dashboardJson()).dlqTotal === 1, 20_000, 200, 'one DLQ entry');

    context = await chromium.launchPersistentContext(join(dir, 'chromium-profile'), {
      executablePath: browserBinary.executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: VIEWPORT,
      deviceScaleFactor: 1,
      locale: 'en-GB',
      timezoneId: 'UTC',
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`);
    });
  }, 900_000);

  afterAll(async () => {
    await context?.close();
    conn?.closeSync();
    await proc?.stop(10_000);
    await db?.end();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers 401 without a token, to a browser and to the page\'s own API calls', async () => {
    for (const p of ['/dashboard', '/dashboard/dashboard.js', '/api/v1/data-sync/monitoring/score-history']) {
      const res = await fetch(`${proc.http.url}${p}`);
      expect(res.status, p).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    const res = await page.goto(`${proc.http.url}/dashboard`);
    expect(res?.status()).toBe(401);
    expect(await page.locator('#chart').count()).toBe(0);
    // Bad query parameters are a 400 naming the field (with auth).
    const bad = await call('GET', '/dashboard?refresh=0');
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('refresh');
    expect((await call('GET', '/api/v1/data-sync/monitoring/score-history?runs=0')).status).toBe(400);
    // The chart's data: each watched table's runs, oldest first.
    const history = (await call('GET', '/api/v1/data-sync/monitoring/score-history?runs=5')).body;
    expect(history.runs).toBe(5);
    expect(history.tables.map((t: Body) => [t.table, t.points.map((p: Body) => p.consistency_score)])).toEqual([['public.items', [100, 50]], ['public.notes', [100, 100]]]);
    const onlyLast = (await call('GET', '/api/v1/data-sync/monitoring/score-history?runs=1')).body;
    expect(onlyLast.tables[0].points).toEqual([{ run_id: history.tables[0].points[1].run_id, finished_at: expect.any(String), consistency_score: 50 }]);
  });

  it('shows each table\'s score and history, lag, queue depths, DLQ size and the firing alert', async () => {
    // items in run 2: row_count (1) and the rule (2) pass, data_hash (3) fails; notes all pass.
    expect(itemScores).toEqual([100, 50]);
    expect(runScores[1]).toBeGreaterThan(50);
    expect(runScores[1]).toBeLessThan(100);
    pageErrors.length = 0; // the 401 of the previous test was expected
    // The browser carries the token as the concord_token cookie, as a signed-in operator's would.
    await context.addCookies([{ name: 'concord_token', value: token, url: proc.http.url, httpOnly: true, sameSite: 'Strict' }]);
    const res = await page.goto(`${proc.http.url}/dashboard?refresh=1`);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.waitForFunction(() => Number((globalThis as unknown as PageGlobals).document.body.dataset.refreshes) >= 1);

    const row = (table: string) => page.locator(`#tables tr[data-table="${table}"]`);
    expect(await row('public.items').locator('td.score').textContent()).toBe('50%');
    expect(await row('public.items').locator('td.score').getAttribute('class')).toContain('bad');
    expect(await row('public.notes').locator('td.score').textContent()).toBe('100%');
    // Score over time: one point per run and table, in run order, with the run's score.
    const points = (table: string) => page.locator(`#chart circle[data-table="${table}"]`).evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-score'))));
    expect(await points('public.items')).toEqual([100, 50]);
    expect(await points('public.notes')).toEqual([100, 100]);
    expect(await page.locator('#chart polyline[data-table="public.items"]').count()).toBe(1);
    expect(await page.locator('#chart .threshold').count()).toBe(1);
    expect(Number(await page.locator('#score').getAttribute('data-value'))).toBe(runScores[1]); // the latest run, both tables
    // Lag: the parked change's age; depths and DLQ per queue, and the total.
    expect(Number(await page.locator('#lag').getAttribute('data-value'))).toBeGreaterThan(0);
    expect(await page.locator('#lag').textContent()).toMatch(/^\d+(\.\d)? (s|min)$/);
    const queue = page.locator('#queues tr[data-queue="dualwrite"]');
    expect(Number(await queue.locator('td.depth').textContent())).toBeGreaterThanOrEqual(1);
    expect(await queue.locator('td.dlq').textContent()).toBe('1');
    expect(await page.locator('#queues tr[data-queue="validate"]').count()).toBe(1);
    expect(await page.locator('#dlq-total').textContent()).toBe('1');
    // The firing alert, with its message.
    const alert = page.locator('#alerts li[data-subject="public.items"]');
    expect(await alert.locator('.rule').textContent()).toBe('consistency_score');
    expect(await alert.locator('.message').textContent()).toBe('consistency score of public.items is 50% (threshold 90%)');
    expect(await page.locator('#alert-count').textContent()).toBe('1');
    expect(await page.locator('#no-alerts').isHidden()).toBe(true);
    expect(pageErrors).toEqual([]);
  });

  it('screenshot: a full-width PNG with real content, the chart drawn in each table\'s colour, the alert in red', async () => {
    const file = join(dir, 'dashboard.png');
    const png = await page.screenshot({ path: file, fullPage: true });
    if (process.env.DASHBOARD_SCREENSHOT) copyFileSync(file, process.env.DASHBOARD_SCREENSHOT);
    expect(readFileSync(file).equals(png)).toBe(true);
    // PNG signature, then IHDR: width and height (big-endian) at bytes 16 and 20.
    expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
    expect(png.toString('latin1', 12, 16)).toBe('IHDR');
    expect(png.readUInt32BE(16)).toBe(VIEWPORT.width);
    expect(png.readUInt32BE(20)).toBeGreaterThanOrEqual(VIEWPORT.height);

    const whole = await pixelStats(png, []);
    expect(whole.distinctColours).toBeGreaterThan(200); // text, cards, chart: not a blank or flat page
    expect(whole.dominantShare).toBeLessThan(0.9);
    const alerts = await pixelStats(await page.locator('#alerts-panel').screenshot(), [ALERT_RGB]);
    expect(alerts.nearColour[0], 'the firing alert in red').toBeGreaterThan(50);
    const chartPng = await page.locator('#chart').screenshot();
    writeFileSync(join(dir, 'chart.png'), chartPng);
    const chart = await pixelStats(chartPng, Object.values(SERIES_RGB).map((c) => [...c]));
    for (const [i, table] of Object.keys(SERIES_RGB).entries()) expect(chart.nearColour[i], `${table} line`).toBeGreaterThan(100);
  });

  it('refreshes itself: after a repair, a new run and another dead letter, the same document shows them', async () => {
    await page.evaluate(() => ((globalThis as unknown as PageGlobals).sameDocument = true));
    const refreshes = async () => Number(await page.locator('body').getAttribute('data-refreshes'));
    const before = await refreshes();
    const runs = (await call('GET', '/api/v1/data-sync/consistency/status')).body.latest_run;
    expect((await call('POST', '/api/v1/data-sync/consistency/repair', { run_id: runs.id })).status).toBe(202);
    await eventually(async () => (expect(await duck('SELECT (amount = 42)::BOOLEAN AS fixed FROM items WHERE id = 42')).toEqual([{ fixed: true }]), true), 20_000);
    record(await runCheck());
    expect(itemScores).toEqual([100, 50, 100]);
    await deadLetter('second');

    // No reload: the page's own timer fetches and redraws.
    await page.waitForFunction(
      () => {
        const { document } = globalThis as unknown as PageGlobals;
        return (
          document.querySelectorAll('#chart circle[data-table="public.items"]').length === 3 &&
          document.querySelectorAll('#alerts li').length === 0 &&
          document.getElementById('dlq-total')?.textContent === '2'
        );
      },
      undefined,
      { timeout: 30_000, polling: 200 },
    );
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sameDocument)).toBe(true);
    expect(await refreshes()).toBeGreaterThan(before);
    const items = await page.locator('#chart circle[data-table="public.items"]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-score'))));
    expect(items).toEqual([100, 50, 100]);
    expect(await page.locator('#tables tr[data-table="public.items"] td.score').textContent()).toBe('100%');
    expect(await page.locator('#no-alerts').isVisible()).toBe(true);
    expect(pageErrors).toEqual([]);
  });

  /** Decodes a PNG in a blank tab (the browser's own decoder): distinct colours, the most common one's share, pixels near each colour. */
  async function pixelStats(png: Buffer, colours: number[][]): Promise<{ distinctColours: number; dominantShare: number; nearColour: number[] }> {
    const tab = await context.newPage();
    try {
      return await tab.evaluate(
        async ({ b64, colours }) => {
          const web = globalThis as unknown as BrowserDecode;
          const img = new web.Image();
          img.src = `data:image/png;base64,${b64}`;
          await img.decode();
          const canvas = web.document.createElement('canvas');
          canvas.width = img.naturalWidth;
          canvas.height = img.naturalHeight;
          const g = canvas.getContext('2d')!;
          g.drawImage(img, 0, 0);
          const data = g.getImageData(0, 0, canvas.width, canvas.height).data;
          const counts = new Map<number, number>();
          const near = colours.map(() => 0);
          for (let i = 0; i < data.length; i += 4) {
            const [r, gr, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
            const key = (r << 16) | (gr << 8) | b;
            counts.set(key, (counts.get(key) ?? 0) + 1);
            colours.forEach((c, j) => {
              if (Math.abs(c[0]! - r) + Math.abs(c[1]! - gr) + Math.abs(c[2]! - b) < 30) near[j]! += 1;
            });
          }
          return { distinctColours: counts.size, dominantShare: Math.max(...counts.values()) / (data.length / 4), nearColour: near };
        },
        { b64: png.toString('base64'), colours },
      );
    } finally {
      await tab.close();
    }
  }
});
