/* global document, window */
// Concord dashboard: fetches the monitoring JSON and the score history every `refresh` seconds
// and redraws in place. Same-origin fetches carry the concord_token cookie (or no auth at all
// with AUTH_MODE=none). Text from the server is only ever set with textContent.

const MONITORING = '/api/v1/data-sync/monitoring';
const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#2b6cb0', '#d97706', '#2f855a', '#9f1239', '#6b46c1', '#0e7490', '#4a5568', '#b83280'];
const CHART = { width: 960, height: 280, left: 44, right: 16, top: 14, bottom: 30 };

const body = document.body;
const refreshMs = Math.max(1, Number(body.dataset.refreshSeconds) || 5) * 1000;
const runs = Math.max(2, Number(body.dataset.runs) || 20);
const $ = (id) => document.getElementById(id);

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function getJson(path) {
  const res = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      message = (await res.json()).error?.message ?? message;
    } catch {
      // not JSON: keep the status line
    }
    throw new HttpError(res.status, `${path}: ${message}`);
  }
  return res.json();
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') node.textContent = v;
    else if (k === 'className') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmtSeconds(s) {
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
const fmtScore = (v) => (v === null || v === undefined ? '–' : `${Number(v).toFixed(v % 1 === 0 ? 0 : 2)}%`);
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '–');
const fmtWhen = (iso) => (iso ? new Date(iso).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '–');

function setValue(id, text, state, raw) {
  const node = $(id);
  node.textContent = text;
  node.className = `value${state ? ` ${state}` : ''}`;
  node.dataset.value = raw === null || raw === undefined ? '' : String(raw);
}

function renderCards(d) {
  const t = d.thresholds ?? {};
  const score = d.consistency.score;
  setValue('score', fmtScore(score), score === null ? '' : score < t.consistencyScore ? 'bad' : 'ok', score);
  $('score-hint').textContent = `latest run · alert below ${t.consistencyScore}%`;
  const lag = d.sync.lagSeconds;
  setValue('lag', fmtSeconds(lag), lag / 60 > t.syncLagMinutes ? 'bad' : lag > 0 ? 'warn' : 'ok', lag);
  $('lag-hint').textContent = `oldest change not in DuckDB · alert above ${t.syncLagMinutes} min`;
  setValue('dlq-total', String(d.dlqTotal), d.dlqTotal > t.deadLetterQueue ? 'bad' : d.dlqTotal > 0 ? 'warn' : 'ok', d.dlqTotal);
  $('dlq-hint').textContent = `entries in all DLQs · alert above ${t.deadLetterQueue}`;
  const rate = d.sync.successRate;
  setValue('success-rate', rate === null ? '–' : `${(rate * 100).toFixed(1)}%`, rate === null ? '' : rate < 1 ? 'warn' : 'ok', rate);
  const ops = d.sync.operationsLastHour;
  $('ops-hint').textContent = `${ops.applied} applied · ${ops.failed} failed · ${ops.pending} pending`;
  const vs = d.consistency.validatorSeconds;
  setValue('validator-seconds', vs === null ? '–' : fmtSeconds(vs), '', vs);
}

function renderAlerts(alerts) {
  const list = $('alerts');
  list.replaceChildren(
    ...alerts.map((a) =>
      el('li', { 'data-rule': a.rule, 'data-subject': a.subject }, [
        el('span', { className: 'rule', text: a.rule }),
        el('span', { className: 'subject', text: a.subject }),
        el('span', { className: 'message', text: a.message }),
        el('span', { className: 'since', text: `since ${fmtWhen(a.first_seen)}` }),
      ]),
    ),
  );
  $('alert-count').textContent = String(alerts.length);
  $('alert-count').className = `badge${alerts.length > 0 ? ' bad' : ''}`;
  $('no-alerts').hidden = alerts.length > 0;
}

function renderTables(d, history) {
  const threshold = d.thresholds?.consistencyScore ?? 90;
  const counts = new Map(history.tables.map((t) => [t.table, t.points.length]));
  $('tables').tBodies[0].replaceChildren(
    ...d.consistency.tables.map((t) =>
      el('tr', { 'data-table': t.table }, [
        el('td', { text: t.table }),
        el('td', { className: `num score ${t.score === null ? '' : t.score < threshold ? 'bad' : 'ok'}`, text: fmtScore(t.score) }),
        el('td', { text: fmtWhen(t.checkedAt && t.checkedAt !== 'null' ? t.checkedAt : null) }),
        el('td', { className: 'num', text: String(counts.get(t.table) ?? 0) }),
      ]),
    ),
  );
}

function renderQueues(queues) {
  const max = Math.max(1, ...queues.map((q) => q.depth));
  $('queues').tBodies[0].replaceChildren(
    ...queues.map((q) => {
      const bar = el('div', { className: 'bar' });
      bar.style.width = `${(100 * q.depth) / max}%`;
      return el('tr', { 'data-queue': q.queue, className: q.dlq > 0 ? 'has-dlq' : '' }, [
        el('td', { text: q.queue }),
        el('td', { className: 'num depth', text: String(q.depth) }),
        el('td', { className: 'bar-cell' }, q.depth > 0 ? [bar] : []),
        el('td', { className: 'num dlq', text: String(q.dlq) }),
      ]);
    }),
  );
}

/** Score (0..100) against time, one coloured line per table, the alert threshold dashed. */
function renderChart(history, threshold) {
  const chart = $('chart');
  const series = history.tables.map((t, i) => ({ ...t, color: COLORS[i % COLORS.length], points: t.points.filter((p) => p.consistency_score !== null) }));
  const times = series.flatMap((s) => s.points.map((p) => Date.parse(p.finished_at)));
  $('no-history').hidden = times.length > 0;
  $('legend').replaceChildren(
    ...series.map((s) => {
      const swatch = el('span', { className: 'swatch' });
      swatch.style.background = s.color;
      return el('span', { 'data-table': s.table }, [swatch, s.table]);
    }),
  );
  const { width, height, left, right, top, bottom } = CHART;
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (!(t1 > t0)) {
    // One run (or none): centre it in a one-minute window.
    t0 = (Number.isFinite(t0) ? t0 : Date.now()) - 30_000;
    t1 = t0 + 60_000;
  }
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const y = (v) => top + (1 - v / 100) * (height - top - bottom);
  const nodes = [];
  for (const v of [0, 25, 50, 75, 100]) {
    nodes.push(svg('line', { class: 'grid-line', x1: left, x2: width - right, y1: y(v), y2: y(v) }));
    nodes.push(svg('text', { class: 'axis-label', x: left - 6, y: y(v) + 4, 'text-anchor': 'end' }, `${v}%`));
  }
  let lastLabel = '';
  for (const [t, anchor] of [[t0, 'start'], [(t0 + t1) / 2, 'middle'], [t1, 'end']]) {
    const label = fmtTime(new Date(t).toISOString());
    if (label === lastLabel) continue; // runs within one second: one label says it
    lastLabel = label;
    nodes.push(svg('text', { class: 'axis-label', x: x(t), y: height - 10, 'text-anchor': anchor }, label));
  }
  nodes.push(svg('line', { class: 'threshold', x1: left, x2: width - right, y1: y(threshold), y2: y(threshold) }));
  nodes.push(svg('text', { class: 'threshold-label', x: width - right - 4, y: y(threshold) - 4, 'text-anchor': 'end' }, `alert below ${threshold}%`));
  for (const [i, s] of series.entries()) {
    if (s.points.length === 0) continue;
    // Later series get smaller dots, so a point hidden under another table's stays visible as a ring.
    const radius = Math.max(3, 6 - 1.5 * i);
    const coords = s.points.map((p) => [x(Date.parse(p.finished_at)), y(p.consistency_score)]);
    nodes.push(svg('polyline', { class: 'series', stroke: s.color, points: coords.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' '), 'data-table': s.table }));
    s.points.forEach((p, j) => {
      const dot = svg('circle', { class: 'point', cx: coords[j][0].toFixed(1), cy: coords[j][1].toFixed(1), r: radius, fill: s.color, 'data-table': s.table, 'data-score': p.consistency_score, 'data-run': p.run_id });
      dot.append(svg('title', {}, `${s.table}: ${fmtScore(p.consistency_score)} at ${fmtWhen(p.finished_at)}`));
      nodes.push(dot);
    });
  }
  chart.replaceChildren(...nodes);
}

function setStatus(text, error) {
  $('status').textContent = text;
  $('status').className = `status${error ? ' error' : ''}`;
}

async function refresh() {
  try {
    const [dashboard, history] = await Promise.all([getJson(`${MONITORING}/dashboard`), getJson(`${MONITORING}/score-history?runs=${runs}`)]);
    renderCards(dashboard);
    renderAlerts(dashboard.alerts);
    renderChart(history, dashboard.thresholds?.consistencyScore ?? 90);
    renderTables(dashboard, history);
    renderQueues(dashboard.queues);
    $('errors').replaceChildren(...dashboard.errors.map((e) => el('li', { text: e })));
    setStatus(`updated ${fmtTime(dashboard.at)}`, false);
    // Counts successful redraws: lets a test (or a curious operator) see that it refreshes.
    body.dataset.refreshes = String(Number(body.dataset.refreshes) + 1);
  } catch (err) {
    const expired = err instanceof HttpError && err.status === 401;
    setStatus(expired ? 'not signed in or token expired: set a fresh concord_token cookie and reload' : `refresh failed: ${err.message}`, true);
    if (expired) return; // no point in polling without credentials
  }
  window.setTimeout(refresh, refreshMs);
}

$('refresh-note').textContent = `Refreshes every ${refreshMs / 1000} s (?refresh=seconds) · chart shows the last ${runs} runs per table (?runs=N)`;
refresh();
