// Dockerfile and .dockerignore checks for scripts/check-compose.mjs (see there for what and why).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Dockerfile instructions with line continuations joined and comments dropped. */
export function dockerInstructions(source) {
  const out = [];
  let current;
  source.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (current === undefined && (line === '' || line.startsWith('#'))) return;
    if (current !== undefined && line.startsWith('#')) return; // comments inside a continuation
    const continued = /\\$/.test(line);
    const body = continued ? line.slice(0, -1) : line;
    if (current === undefined) {
      const m = /^(\S+)\s*(.*)$/.exec(body);
      current = { line: index + 1, keyword: m[1].toUpperCase(), args: m[2] };
    } else {
      current.args = `${current.args} ${body}`.trim();
    }
    if (!continued) {
      current.args = current.args.replace(/\s+/g, ' ').trim();
      out.push(current);
      current = undefined;
    }
  });
  if (current !== undefined) out.push(current);
  return out;
}

function execForm(args) {
  try {
    const v = JSON.parse(args);
    return Array.isArray(v) && v.every((s) => typeof s === 'string') ? v : undefined;
  } catch {
    return undefined;
  }
}

const BASE_IMAGE = /^node:20-bookworm-slim(@sha256:[0-9a-f]{64})?$/;
/** Read at run time, not imported: SQL migrations, package.json (name, version), tsconfig.json (tsx). */
const RUNTIME_FILES = ['migrations', 'package.json', 'tsconfig.json'];

/**
 * What the image must ship: every top-level folder the CLI imports, followed through relative
 * imports from bin/concord.js, plus RUNTIME_FILES. A new folder (like cqrs/) is found here.
 */
export function imageSources(root = ROOT) {
  const dirs = new Set(['bin']);
  const seen = new Set();
  const queue = [path.join(root, 'bin', 'concord.js')];
  while (queue.length > 0) {
    const file = queue.pop();
    if (seen.has(file) || !existsSync(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts');
      const top = path.relative(root, target).split(path.sep)[0];
      if (top && !top.startsWith('..')) dirs.add(top);
      queue.push(target);
    }
  }
  return [...dirs, ...RUNTIME_FILES];
}

/** Problems in Dockerfile text; an empty array when it passes. */
export function checkDockerfile(source, file = 'Dockerfile', root = ROOT) {
  const problems = [];
  const problem = (msg) => problems.push(`${file}: ${msg}`);
  const all = dockerInstructions(source);
  const froms = all.filter((i) => i.keyword === 'FROM');
  if (froms.length < 2) problem('must be multi-stage (a deps stage and a runtime stage)');
  const stages = [];
  for (const from of froms) {
    const tokens = from.args.split(' ').filter((t) => !t.startsWith('--'));
    const image = tokens[0] ?? '';
    if (!BASE_IMAGE.test(image) && !stages.includes(image.toLowerCase())) {
      problem(`line ${from.line}: FROM ${image}: stages must build on node:20-bookworm-slim`);
    }
    if (tokens[1]?.toUpperCase() === 'AS' && tokens[2]) stages.push(tokens[2].toLowerCase());
  }
  if (!all.some((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args) && /--omit[= ]dev\b/.test(i.args))) {
    problem('no RUN npm ci --omit=dev (production dependencies from package-lock.json)');
  }

  const lastFrom = all.lastIndexOf(froms[froms.length - 1]);
  const final = lastFrom >= 0 ? all.slice(lastFrom + 1) : all;
  const last = (keyword) => final.filter((i) => i.keyword === keyword).pop();
  if (froms.length > 0 && !BASE_IMAGE.test(froms[froms.length - 1].args.split(' ').filter((t) => !t.startsWith('--'))[0] ?? '')) {
    problem('the final stage must be FROM node:20-bookworm-slim');
  }

  const user = last('USER');
  if (!user) problem('no USER line in the final stage: the container would run as root (use USER 1000:1000)');
  else if (!/^1000(:1000)?$/.test(user.args)) {
    problem(`line ${user.line}: USER ${user.args}: must be the numeric non-root uid 1000 (the base image's node user), which Kubernetes runAsNonRoot can verify`);
  }
  const build = buildStage(all);
  if (!build) problem('no build stage: one stage must RUN npm ci with the dev dependencies and type-check with tsc');
  const tmp = final.filter((i) => i.keyword === 'ENV').some((i) => /(^|\s)TMPDIR=("?)\/tmp\2(\s|$)/.test(i.args));
  if (!tmp || !final.some((i) => i.keyword === 'VOLUME' && /["\s[]\/tmp["\s\]]/.test(` ${i.args} `))) {
    problem('the final stage must set ENV TMPDIR=/tmp and declare VOLUME /tmp (tsx\'s cache; the root filesystem may be read-only)');
  }

  const health = last('HEALTHCHECK');
  if (!health) problem('no HEALTHCHECK line in the final stage');
  else if (/^NONE$/i.test(health.args) || !/\bCMD\b/.test(health.args) || !health.args.includes('/health')) {
    problem(`line ${health.line}: HEALTHCHECK must probe GET /health`);
  }

  const entrypoint = last('ENTRYPOINT');
  if (!entrypoint) problem('no ENTRYPOINT line in the final stage');
  else if (JSON.stringify(execForm(entrypoint.args)) !== JSON.stringify(['node', 'bin/concord.js'])) {
    problem(`line ${entrypoint.line}: ENTRYPOINT must be the exec form ["node", "bin/concord.js"] (so node receives SIGTERM)`);
  }

  const stop = last('STOPSIGNAL');
  if (!stop) problem('no STOPSIGNAL line in the final stage (STOPSIGNAL SIGTERM)');
  else if (!/^(SIGTERM|15)$/.test(stop.args)) problem(`line ${stop.line}: STOPSIGNAL must be SIGTERM (it drains), got ${stop.args}`);

  const cmd = last('CMD');
  if (!cmd || execForm(cmd.args)?.[0] !== 'start') problem('CMD must be an exec form starting with "start" (e.g. ["start", "--role", "all"])');

  if (!final.some((i) => i.keyword === 'EXPOSE' && i.args.split(' ').some((p) => p.replace(/\/tcp$/, '') === '8080'))) problem('no EXPOSE 8080');
  const env = final.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ');
  if (!/(^|\s)NODE_ENV=("?)production\2(\s|$)/.test(env)) problem('the final stage must set ENV NODE_ENV=production');
  if (!/(^|\s)DUCKDB_DATABASE_PATH=("?)\/app\/data\//.test(env)) problem('the final stage must set DUCKDB_DATABASE_PATH under /app/data');
  if (!final.some((i) => i.keyword === 'VOLUME' && i.args.includes('/app/data'))) problem('no VOLUME for /app/data (the DuckDB file)');

  const copies = final.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD');
  const sources = copies.flatMap((i) => {
    const tokens = i.args.split(' ').filter((t) => !t.startsWith('--'));
    return tokens.slice(0, -1).map((t) => t.replace(/^(\/app\/|\.\/)/, '').replace(/\/$/, ''));
  });
  for (const wanted of imageSources(root)) {
    if (!sources.includes(wanted)) problem(`the final stage does not COPY ${wanted}`);
  }
  if (build && !copies.some((i) => i.args.includes(`--from=${build}`) && /\/app\/cli\b/.test(i.args))) {
    problem(`the final stage must COPY the sources --from=${build} (only type-checked code ships)`);
  }
  if (!copies.some((i) => /--from=\S+/.test(i.args) && /\bnode_modules\b/.test(i.args))) problem('the final stage does not COPY node_modules from the deps stage');
  return problems;
}

/** Problems in .dockerignore text. */
export function checkDockerignore(source, file = '.dockerignore') {
  const entries = source
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/^\/+/, '').replace(/\/+$/, ''));
  const missing = ['node_modules', '.git', '.env'].filter((e) => !entries.includes(e));
  return missing.map((e) => `${file}: must exclude ${e} from the build context`);
}


/** The stage that installs dev dependencies and runs tsc (its name), or undefined. */
function buildStage(all) {
  let stage;
  const found = new Map();
  for (const i of all) {
    if (i.keyword === 'FROM') {
      const tokens = i.args.split(' ').filter((t) => !t.startsWith('--'));
      stage = tokens[1]?.toUpperCase() === 'AS' ? tokens[2]?.toLowerCase() : undefined;
      continue;
    }
    if (!stage || i.keyword !== 'RUN') continue;
    const f = found.get(stage) ?? { dev: false, tsc: false };
    if (/\bnpm ci\b/.test(i.args) && !/--omit[= ]dev\b/.test(i.args)) f.dev = true;
    if (/\btsc\b/.test(i.args)) f.tsc = true;
    found.set(stage, f);
  }
  return [...found].find(([, f]) => f.dev && f.tsc)?.[0];
}
