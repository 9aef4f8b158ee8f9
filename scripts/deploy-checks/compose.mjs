// docker-compose.yml checks for scripts/check-compose.mjs (see there for what and why).
import path from 'node:path';
import { parse } from 'yaml';

export const REQUIRED_SERVICES = ['redis', 'postgres', 'kafka', 'migrate', 'api', 'worker', 'duckdb-writer'];
/** The one process that opens the DuckDB file (see checkSingleWriter). */
const WRITER_COMMAND = ['start', '--role', 'worker', '--actors', 'dual-writer,validator'];
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

  const expectedCommands = { migrate: ['migrate'], api: ['start', '--role', 'api'], worker: ['start', '--role', 'worker'], 'duckdb-writer': WRITER_COMMAND };
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
    'duckdb-writer': { redis: 'service_healthy', postgres: 'service_healthy', migrate: 'service_completed_successfully' },
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
    for (const m of volumesOf(worker).filter((v) => v.source !== undefined)) {
      problem(`service "worker": ${m.source} is mounted at ${m.target}, so scaled workers would share it (and one DuckDB file); mount no named volume here`);
    }
  }
  problems.push(...checkSingleWriter(services, svc).map((p) => `${file}: ${p}`));
  for (const name of concordNames) problems.push(...checkReadOnly(name, services[name]).map((p) => `${file}: ${p}`));

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


/** A DuckDB path's directory is on a volume: the mount, or undefined. */
function duckMount(service) {
  const duckPath = envOf(service).get('DUCKDB_DATABASE_PATH');
  if (duckPath === undefined || duckPath === ':memory:') return { duckPath, mount: undefined };
  const dir = path.posix.dirname(duckPath);
  return { duckPath, mount: volumesOf(service).find((v) => dir === v.target || dir.startsWith(`${v.target}/`)) };
}

/**
 * One DuckDB writer: the dual-writer runs only in duckdb-writer, whose file is on a named volume;
 * scaled workers neither run it (DATA_SYNC_ENABLED=false) nor hold a DuckDB file.
 */
function checkSingleWriter(services, svc) {
  const problems = [];
  const worker = svc('worker');
  if (worker) {
    const env = envOf(worker);
    if (env.get('DATA_SYNC_ENABLED') !== 'false') problems.push('service "worker": DATA_SYNC_ENABLED must be "false": the dual-writer (the DuckDB writer) runs only in duckdb-writer');
    if (env.get('DUCKDB_DATABASE_PATH') !== ':memory:') problems.push('service "worker": DUCKDB_DATABASE_PATH must be ":memory:" (no worker opens the DuckDB file)');
  }
  const writer = svc('duckdb-writer');
  if (writer) {
    const { duckPath, mount } = duckMount(writer);
    if (duckPath === undefined || duckPath === ':memory:') problems.push('service "duckdb-writer": DUCKDB_DATABASE_PATH must be a file (/app/data/analytics.duckdb)');
    else if (!mount || mount.source === undefined) problems.push(`service "duckdb-writer": ${duckPath} must be on a named volume (the analytics copy outlives the container)`);
    if (envOf(writer).get('DATA_SYNC_ENABLED') === 'false') problems.push('service "duckdb-writer": DATA_SYNC_ENABLED=false turns the writer off');
    const replicas = writer.deploy?.replicas ?? writer.scale;
    if (replicas !== undefined && Number(replicas) !== 1) problems.push(`service "duckdb-writer": must run one replica, got ${replicas}`);
    const migrate = svc('migrate');
    const migrated = migrate ? duckMount(migrate) : undefined;
    if (migrated && migrated.duckPath !== ':memory:' && (migrated.duckPath !== duckPath || migrated.mount?.source !== mount?.source)) {
      problems.push('service "migrate": must migrate the duckdb-writer\'s DuckDB file (same DUCKDB_DATABASE_PATH on the same volume) or use ":memory:"');
    }
  }
  const writerVolume = writer ? duckMount(writer).mount?.source : undefined;
  for (const [name, s] of Object.entries(services)) {
    if (name === 'duckdb-writer' || name === 'migrate' || !isMap(s) || writerVolume === undefined) continue;
    if (volumesOf(s).some((v) => v.source === writerVolume)) {
      problems.push(`service "${name}": mounts the duckdb-writer's volume ${writerVolume}: a DuckDB file has one writer process`);
    }
  }
  return problems;
}

/** The image writes only to /tmp and /app/data: Concord services run with a read-only root. */
function checkReadOnly(name, service) {
  const problems = [];
  if (service.read_only !== true) problems.push(`service "${name}": read_only must be true (the image writes only to /tmp and /app/data)`);
  const tmpfs = Array.isArray(service.tmpfs) ? service.tmpfs.map(String) : service.tmpfs === undefined ? [] : [String(service.tmpfs)];
  const onTmp = tmpfs.some((t) => t.split(':')[0] === '/tmp') || volumesOf(service).some((v) => v.target === '/tmp');
  if (!onTmp) problems.push(`service "${name}": /tmp (TMPDIR, tsx's cache) must be a tmpfs or a volume`);
  return problems;
}
