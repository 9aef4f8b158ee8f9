#!/usr/bin/env node
// Structural checks for docker-compose.yml, Dockerfile and .dockerignore, for machines without
// a Docker engine (so without `docker compose config`). Needs the dev dependencies (`npm install`).
//
//   node scripts/check-compose.mjs [--compose FILE] [--dockerfile FILE] [--dockerignore FILE]
//
// Prints every problem and exits 1, or prints "ok" and exits 0. The checks encode what the
// deployment relies on: the services exist, workers can be scaled (no host ports, no
// container_name, no shared DuckDB volume), Redis never evicts, PostgreSQL has logical WAL,
// Concord services start in dependency order, and the image runs as `node` with a health
// check, exec-form entrypoint and SIGTERM as the stop signal.
//
// docker-compose.yml is parsed with the `yaml` package (YAML 1.2 core schema, with `<<` merge
// keys as Compose resolves them); a syntax error is reported as a problem with its position.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse } from 'yaml';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

export const REQUIRED_SERVICES = ['redis', 'postgres', 'kafka', 'migrate', 'api', 'worker'];
const CONDITIONS = ['service_started', 'service_healthy', 'service_completed_successfully'];
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 25_000;

function isMap(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** `command`, `entrypoint` or a healthcheck `test` as one string. */
function asText(v) {
  if (Array.isArray(v)) return v.map(String).join(' ');
  return v === null || v === undefined ? '' : String(v);
}

/** `environment` (mapping or list of K=V) as a map of strings. */
function envOf(service) {
  const env = service.environment;
  const out = new Map();
  if (isMap(env)) {
    for (const [k, v] of Object.entries(env)) out.set(k, v === null ? undefined : String(v));
  } else if (Array.isArray(env)) {
    for (const entry of env) {
      const s = String(entry);
      const eq = s.indexOf('=');
      out.set(eq < 0 ? s : s.slice(0, eq), eq < 0 ? undefined : s.slice(eq + 1));
    }
  }
  return out;
}

/** Compose durations: 30s, 1m30s, 1500ms, 1h. Milliseconds, or undefined when unparseable. */
export function parseDuration(v) {
  if (typeof v === 'number') return v / 1e6; // a bare number is nanoseconds
  if (typeof v !== 'string' || !/^(\d+(\.\d+)?(h|ms|m|s|us|ns))+$/.test(v)) return undefined;
  const unit = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 1e-3, ns: 1e-6 };
  let total = 0;
  for (const [, n, , u] of v.matchAll(/(\d+(\.\d+)?)(h|ms|m|s|us|ns)/g)) total += Number(n) * unit[u];
  return total;
}

/** Port entries -> [{ published, target }]: "8080:8080", "127.0.0.1:8080:8080/tcp", long syntax. */
function portsOf(service) {
  const ports = Array.isArray(service.ports) ? service.ports : [];
  return ports.map((p) => {
    if (isMap(p)) return { published: p.published === undefined ? undefined : String(p.published), target: String(p.target) };
    const parts = String(p).replace(/\/(tcp|udp|sctp)$/, '').split(':');
    const target = parts.pop();
    return { published: parts.pop(), target };
  });
}

/** Volume entries -> [{ source, target }] (source undefined for anonymous volumes). */
function volumesOf(service) {
  const volumes = Array.isArray(service.volumes) ? service.volumes : [];
  return volumes.map((v) => {
    if (isMap(v)) return { source: v.source === undefined || v.source === null ? undefined : String(v.source), target: String(v.target) };
    const parts = String(v).split(':');
    if (parts.length === 1) return { source: undefined, target: parts[0] };
    return { source: parts[0], target: parts[1] };
  });
}

const CONCORD_ENV = {
  REDIS_URL: (v) => /^rediss?:\/\/([^@/]*@)?redis:6379\/?\d*$/.test(v) || 'must point at the redis service (redis://redis:6379)',
  DATABASE_URL: (v) => /^postgres(ql)?:\/\/[^@]+@postgres:5432\/concord$/.test(v) || 'must point at the postgres service (postgres://concord:concord@postgres:5432/concord)',
  KAFKA_BROKERS: (v) => v.split(',').map((b) => b.trim()).includes('kafka:9092') || 'must include kafka:9092',
  SECRET_KEY: (v) => /^\$\{SECRET_KEY:\?[^}]*\}$/.test(v) || 'must be ${SECRET_KEY:?...} (required from the environment, never a literal)',
  LOG_LEVEL: (v) => v !== '' || 'must not be empty',
};

/** Problems in docker-compose.yml text; an empty array when it passes. */
export function checkCompose(source, file = 'docker-compose.yml') {
  const problems = [];
  const problem = (msg) => problems.push(`${file}: ${msg}`);
  let doc;
  try {
    doc = parse(source, { merge: true });
  } catch (err) {
    // The yaml package's message is "<what> at line L, column C:" followed by a code excerpt.
    problem(`invalid YAML: ${String(err?.message ?? err).split('\n')[0].replace(/:$/, '')}`);
    return problems;
  }
  if (!isMap(doc)) {
    problem('the top level is not a mapping');
    return problems;
  }
  if (!isMap(doc['x-concord-env'])) problem('x-concord-env (the shared Concord environment, an anchored mapping) is missing');
  const services = doc.services;
  if (!isMap(services)) {
    problem('there is no "services" mapping');
    return problems;
  }
  for (const name of REQUIRED_SERVICES) {
    if (!isMap(services[name])) problem(`service "${name}" is missing`);
  }
  const svc = (name) => (isMap(services[name]) ? services[name] : undefined);

  // -- backing services
  const redis = svc('redis');
  if (redis) {
    if (!String(redis.image ?? '').startsWith('redis:7')) problem(`service "redis": image should be redis:7-alpine, got ${redis.image}`);
    const cmd = asText(redis.command);
    if (!/--maxmemory-policy\s+noeviction\b/.test(cmd)) problem('service "redis": command must set --maxmemory-policy noeviction (BullMQ loses jobs under eviction)');
    if (!/--appendonly\s+yes\b/.test(cmd)) problem('service "redis": command must set --appendonly yes');
    if (!/redis-cli\s+ping\b/.test(asText(redis.healthcheck?.test))) problem('service "redis": healthcheck must run redis-cli ping');
    if (volumesOf(redis).length === 0) problem('service "redis": needs a volume for its data');
  }

  const postgres = svc('postgres');
  if (postgres) {
    if (!/^postgres:16\b/.test(String(postgres.image ?? ''))) problem(`service "postgres": image should be postgres:16, got ${postgres.image}`);
    const cmd = asText(postgres.command);
    if (!/(^|\s)-c\s+wal_level=logical\b/.test(cmd)) problem('service "postgres": command must set -c wal_level=logical (CDC needs logical replication)');
    if (!/-c\s+max_replication_slots=\d+/.test(cmd)) problem('service "postgres": command must set -c max_replication_slots');
    if (!/-c\s+max_wal_senders=\d+/.test(cmd)) problem('service "postgres": command must set -c max_wal_senders');
    const env = envOf(postgres);
    for (const k of ['POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB']) {
      if (env.get(k) !== 'concord') problem(`service "postgres": ${k} must be concord`);
    }
    if (!/pg_isready\b/.test(asText(postgres.healthcheck?.test))) problem('service "postgres": healthcheck must run pg_isready');
    if (volumesOf(postgres).length === 0) problem('service "postgres": needs a volume for its data');
  }

  const kafka = svc('kafka');
  if (kafka) {
    if (!/^apache\/kafka:(3\.9|4)\./.test(String(kafka.image ?? ''))) problem(`service "kafka": image should be apache/kafka:3.9.x or 4.x, got ${kafka.image}`);
    const env = envOf(kafka);
    const expect = (k, test, what) => {
      const v = env.get(k);
      if (v === undefined || !test(v)) problem(`service "kafka": ${k} ${what}`);
    };
    expect('KAFKA_NODE_ID', (v) => v === '1', 'must be 1');
    expect('KAFKA_PROCESS_ROLES', (v) => v.split(',').map((s) => s.trim()).sort().join(',') === 'broker,controller', 'must be broker,controller (single-node KRaft)');
    expect('KAFKA_LISTENERS', (v) => /PLAINTEXT:\/\/[^,]*:9092/.test(v) && /CONTROLLER:\/\/[^,]*:9093/.test(v), 'must listen on PLAINTEXT :9092 and CONTROLLER :9093');
    expect('KAFKA_ADVERTISED_LISTENERS', (v) => v.includes('PLAINTEXT://kafka:9092'), 'must advertise PLAINTEXT://kafka:9092');
    expect('KAFKA_CONTROLLER_QUORUM_VOTERS', (v) => v === '1@kafka:9093', 'must be 1@kafka:9093');
    expect('KAFKA_CONTROLLER_LISTENER_NAMES', (v) => v === 'CONTROLLER', 'must be CONTROLLER');
    expect('KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR', (v) => v === '1', 'must be 1 on a single node');
    expect('KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR', (v) => v === '1', 'must be 1 on a single node');
    if (!isMap(kafka.healthcheck) || asText(kafka.healthcheck.test) === '') problem('service "kafka": needs a healthcheck');
  }

  // -- Concord services: which services run the Concord image
  const concordImage = svc('api')?.image;
  if (concordImage === undefined) problem('service "api": needs an image name (shared by migrate, api and worker)');
  const concordNames = Object.keys(services).filter((name) => {
    const s = services[name];
    return isMap(s) && (s.build !== undefined || (concordImage !== undefined && s.image === concordImage));
  });
  for (const name of ['migrate', 'api', 'worker']) {
    const s = svc(name);
    if (s && !concordNames.includes(name)) problem(`service "${name}": must run the Concord image (${concordImage ?? 'api has none'}), got ${s.image}`);
  }
  for (const name of concordNames) {
    const s = services[name];
    if (s.image !== concordImage) problem(`service "${name}": builds the Concord image but names it ${s.image}, not ${concordImage} like api`);
  }

  const expectedCommands = { migrate: ['migrate'], api: ['start', '--role', 'api'], worker: ['start', '--role', 'worker'] };
  for (const [name, expected] of Object.entries(expectedCommands)) {
    const s = svc(name);
    if (s && JSON.stringify(s.command) !== JSON.stringify(expected)) {
      problem(`service "${name}": command must be ${JSON.stringify(expected)}, got ${JSON.stringify(s.command ?? null)}`);
    }
  }

  // -- depends_on: every service on the Concord image waits on conditions
  const dependencies = new Map();
  for (const name of concordNames) {
    const deps = services[name].depends_on;
    if (deps === undefined || deps === null) {
      problem(`service "${name}": runs the Concord image but has no depends_on (with conditions)`);
      continue;
    }
    if (!isMap(deps)) {
      problem(`service "${name}": depends_on must be the long form (service: { condition: ... }), not a list`);
      continue;
    }
    const conditions = new Map();
    for (const [dep, spec] of Object.entries(deps)) {
      const condition = isMap(spec) ? spec.condition : undefined;
      if (!CONDITIONS.includes(condition)) problem(`service "${name}": depends_on.${dep} needs a condition (one of ${CONDITIONS.join(', ')})`);
      if (!isMap(services[dep])) problem(`service "${name}": depends_on names an unknown service "${dep}"`);
      else if (condition === 'service_healthy' && !isMap(services[dep].healthcheck) && !concordNames.includes(dep)) {
        problem(`service "${name}": waits for "${dep}" to be healthy, but "${dep}" has no healthcheck`);
      }
      conditions.set(dep, condition);
    }
    dependencies.set(name, conditions);
  }
  const requireDeps = {
    migrate: { postgres: 'service_healthy' },
    api: { redis: 'service_healthy', postgres: 'service_healthy', migrate: 'service_completed_successfully' },
    worker: { redis: 'service_healthy', postgres: 'service_healthy', migrate: 'service_completed_successfully' },
  };
  for (const [name, required] of Object.entries(requireDeps)) {
    const have = dependencies.get(name);
    if (!have) continue;
    for (const [dep, condition] of Object.entries(required)) {
      if (have.get(dep) !== condition) problem(`service "${name}": must depend on "${dep}" with condition ${condition}`);
    }
  }

  // -- Concord environment
  for (const name of concordNames) {
    const env = envOf(services[name]);
    for (const [k, test] of Object.entries(CONCORD_ENV)) {
      const v = env.get(k);
      const verdict = v === undefined ? 'is not set' : test(v);
      if (verdict !== true) problem(`service "${name}": ${k} ${verdict}`);
    }
  }

  // -- per service
  const migrate = svc('migrate');
  if (migrate && migrate.restart !== 'no') problem(`service "migrate": restart must be "no" (quoted), got ${JSON.stringify(migrate.restart ?? null)}`);

  const api = svc('api');
  if (api && !portsOf(api).some((p) => p.target === '8080' && p.published === '8080')) {
    problem('service "api": must publish port 8080 (ports: ["8080:8080"])');
  }

  const worker = svc('worker');
  if (worker) {
    if (worker.ports !== undefined) {
      problem('service "worker": must not have `ports`: a fixed host port makes `docker compose up --scale worker=3` fail (port already allocated)');
    }
    if (worker.container_name !== undefined) problem('service "worker": must not set container_name (replicas need distinct names)');
    const duckPath = envOf(worker).get('DUCKDB_DATABASE_PATH');
    if (duckPath === undefined) problem('service "worker": DUCKDB_DATABASE_PATH must be set (/app/data/analytics.duckdb on a per-container volume)');
    else if (duckPath !== ':memory:') {
      const dir = path.posix.dirname(duckPath);
      const mounts = volumesOf(worker).filter((v) => dir === v.target || dir.startsWith(`${v.target}/`));
      if (mounts.length === 0) problem(`service "worker": needs an anonymous volume for ${dir} (its DuckDB file)`);
      for (const m of mounts) {
        if (m.source !== undefined) {
          problem(`service "worker": ${m.source} is mounted at ${m.target}, so scaled workers would share one DuckDB file; use an anonymous volume (- ${m.target})`);
        }
      }
    }
  }

  for (const name of concordNames) {
    const s = services[name];
    if (!JSON.stringify(s.command ?? []).startsWith('["start"')) continue;
    const env = envOf(s).get('SHUTDOWN_TIMEOUT_MS');
    const drainMs = env !== undefined && /^\d+$/.test(env) ? Number(env) : DEFAULT_SHUTDOWN_TIMEOUT_MS;
    const grace = s.stop_grace_period === undefined ? undefined : parseDuration(s.stop_grace_period);
    if (grace === undefined || grace <= drainMs) {
      problem(`service "${name}": stop_grace_period must be longer than SHUTDOWN_TIMEOUT_MS (${drainMs} ms) so SIGTERM can drain, got ${s.stop_grace_period ?? 'none (10s)'}`);
    }
  }

  return problems;
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

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
const IMAGE_SOURCES = ['bin', 'cli', 'runtime', 'queues', 'http', 'actors', 'migrations', 'package.json'];

/** Problems in Dockerfile text; an empty array when it passes. */
export function checkDockerfile(source, file = 'Dockerfile') {
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
  if (!user) problem('no USER line in the final stage: the container would run as root (use USER node)');
  else if (!/^node(:node)?$/.test(user.args)) problem(`line ${user.line}: USER ${user.args}: must run as the non-root node user`);

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
    return tokens.slice(0, -1).map((t) => t.replace(/^\.\//, '').replace(/\/$/, ''));
  });
  for (const wanted of IMAGE_SOURCES) {
    if (!sources.includes(wanted)) problem(`the final stage does not COPY ${wanted}`);
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

// ---------------------------------------------------------------------------------------------
// Everything together, and the command line

/**
 * Check the deployment files (defaults: the repository's). Missing files are problems.
 * @param {{ compose?: string, dockerfile?: string, dockerignore?: string }} [files]
 * @returns {string[]} problems; empty when everything passes
 */
export function checkDeployFiles(files = {}) {
  const compose = files.compose ?? path.join(ROOT, 'docker-compose.yml');
  const dockerfile = files.dockerfile ?? path.join(ROOT, 'Dockerfile');
  const dockerignore = files.dockerignore ?? path.join(ROOT, '.dockerignore');
  const problems = [];
  const run = (file, check) => {
    if (!existsSync(file)) problems.push(`${file}: not found`);
    else problems.push(...check(readFileSync(file, 'utf8'), path.relative(process.cwd(), file) || file));
  };
  run(compose, checkCompose);
  run(dockerfile, checkDockerfile);
  run(dockerignore, checkDockerignore);
  return problems;
}

function main() {
  const { values } = parseArgs({
    options: { compose: { type: 'string' }, dockerfile: { type: 'string' }, dockerignore: { type: 'string' } },
    strict: true,
  });
  const problems = checkDeployFiles(values);
  if (problems.length > 0) {
    console.error(`check-compose: ${problems.length} problem(s):`);
    for (const p of problems) console.error(`  - ${p}`);
    process.exit(1);
  }
  console.log('check-compose: ok (docker-compose.yml, Dockerfile, .dockerignore)');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
