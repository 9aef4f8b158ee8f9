import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { selectCapabilities } from '../../cli/capabilities.js';
import { DUAL_WRITER } from '../../actors/dual-writer/index.js';
import { VALIDATOR } from '../../actors/validator/index.js';
import { loadSyncConfig } from '../../actors/sync-scheduler/index.js';
import { loadConfig, type Role } from '../../runtime/index.js';

/**
 * Checks of rendered Kubernetes manifests (`kubectl kustomize k8s/...`) against what Concord
 * needs: every function returns problems as sentences naming the object, empty when it passes.
 * The environment checks resolve each container's environment from the rendered ConfigMaps and
 * an example Secret, then run Concord's own configuration loaders and actor selection on it.
 */

type Labels = Record<string, string>;
interface Probe { httpGet?: { path?: string; port?: string | number } }
interface EnvVar { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; configMapKeyRef?: { name: string; key: string; optional?: boolean } } }
interface SecurityContext { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; fsGroup?: number; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; privileged?: boolean; capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type?: string } }
type Resources = { requests?: Record<string, string>; limits?: Record<string, string> };
export interface Container {
  name: string;
  image?: string;
  args?: string[];
  env?: EnvVar[];
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  securityContext?: SecurityContext;
  resources?: Resources;
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  ports?: Array<{ name?: string; containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}
export interface PodSpec {
  securityContext?: SecurityContext;
  terminationGracePeriodSeconds?: number;
  initContainers?: Container[];
  containers: Container[];
  volumes?: Array<{ name: string; emptyDir?: object; persistentVolumeClaim?: object }>;
}
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels };
  data?: Record<string, string>;
  // Only the fields the checks read; everything else is left as it was parsed.
  spec?: {
    replicas?: number;
    selector?: { matchLabels?: Labels } | Labels;
    template?: { metadata?: { labels?: Labels }; spec: PodSpec };
    volumeClaimTemplates?: Array<{ metadata: { name: string }; spec: { accessModes?: string[] } }>;
    podSelector?: { matchLabels?: Labels };
    policyTypes?: string[];
    ingress?: Array<{ from?: Array<{ podSelector?: { matchLabels?: Labels }; namespaceSelector?: object; ipBlock?: object }>; ports?: Array<{ port: number }> }>;
    ports?: Array<{ port: number; targetPort?: string | number }>;
    maxUnavailable?: number | string;
    minAvailable?: number | string;
  };
}

/** `kubectl kustomize dir`, parsed. Throws with kubectl's message when it fails. */
export function renderKustomize(kubectl: string, dir: string): K8sObject[] {
  const res = spawnSync(kubectl, ['kustomize', dir], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
  if (res.error || res.status !== 0) throw new Error(`${kubectl} kustomize ${dir} failed: ${res.error?.message ?? res.stderr}`);
  return parseAllDocuments(res.stdout).map((d) => d.toJS() as K8sObject).filter((o) => o !== null);
}

export const WORKLOAD_KINDS = ['Deployment', 'StatefulSet'];
const id = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;
const selectorOf = (o: K8sObject): Labels => (o.spec?.selector as { matchLabels?: Labels } | undefined)?.matchLabels ?? {};
const matches = (selector: Labels, labels: Labels = {}) => Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

export function workloads(objects: K8sObject[]): K8sObject[] {
  return objects.filter((o) => WORKLOAD_KINDS.includes(o.kind));
}

/** Kubernetes quantities: 500m, 2, 256Mi, 1Gi, 1GB. */
export function quantity(q: string | number | undefined): number {
  if (q === undefined) return Number.NaN;
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T|KB|MB|GB|TB)?$/.exec(String(q).trim());
  if (!m) return Number.NaN;
  const unit: Record<string, number> = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };
  return Number(m[1]) * (m[2] ? unit[m[2]]! : 1);
}

/**
 * A container's environment as Kubernetes builds it: envFrom in order (a later source wins),
 * then env (wins over envFrom). `secrets` stands in for Secrets, which the manifests never hold.
 */
export function containerEnv(objects: K8sObject[], c: Container, secrets: Record<string, Record<string, string>>): { env: Record<string, string>; problems: string[] } {
  const env: Record<string, string> = {};
  const problems: string[] = [];
  const configMap = (name: string) => objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name);
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) {
      const cm = configMap(from.configMapRef.name);
      if (!cm) problems.push(`envFrom names ConfigMap ${from.configMapRef.name}, which the manifests do not create`);
      else Object.assign(env, cm.data ?? {});
    }
    if (from.secretRef) problems.push(`envFrom secretRef ${from.secretRef.name}: name each Secret key in env instead, so the required ones are visible`);
  }
  for (const v of c.env ?? []) {
    if (v.value !== undefined) env[v.name] = v.value;
    const s = v.valueFrom?.secretKeyRef;
    const k = v.valueFrom?.configMapKeyRef;
    if (s) {
      const value = secrets[s.name]?.[s.key];
      if (value !== undefined) env[v.name] = value;
      else if (!s.optional) problems.push(`${v.name}: Secret ${s.name} key ${s.key} is required but absent from the example Secret`);
    }
    if (k) {
      const value = configMap(k.name)?.data?.[k.key];
      if (value !== undefined) env[v.name] = value;
      else if (!k.optional) problems.push(`${v.name}: ConfigMap ${k.name} has no key ${k.key}`);
    }
  }
  return { env, problems };
}

function checkContainerSecurity(where: string, c: Container, problems: string[]) {
  const s = c.securityContext ?? {};
  if (s.runAsNonRoot !== true) problems.push(`${where}: securityContext.runAsNonRoot must be true`);
  if (s.runAsUser !== 1000) problems.push(`${where}: securityContext.runAsUser must be 1000 (the image's node user)`);
  if (s.readOnlyRootFilesystem !== true) problems.push(`${where}: securityContext.readOnlyRootFilesystem must be true`);
  if (s.allowPrivilegeEscalation !== false) problems.push(`${where}: securityContext.allowPrivilegeEscalation must be false`);
  if (s.privileged === true) problems.push(`${where}: must not be privileged`);
  if (!(s.capabilities?.drop ?? []).includes('ALL') || (s.capabilities?.add ?? []).length > 0) problems.push(`${where}: securityContext.capabilities must drop ALL and add none`);
  if (s.seccompProfile?.type !== 'RuntimeDefault') problems.push(`${where}: securityContext.seccompProfile.type must be RuntimeDefault`);
  for (const r of ['cpu', 'memory']) {
    const req = quantity(c.resources?.requests?.[r]);
    const lim = quantity(c.resources?.limits?.[r]);
    if (!(req > 0) || !(lim > 0)) problems.push(`${where}: resources.requests.${r} and resources.limits.${r} must both be set`);
    else if (req > lim) problems.push(`${where}: resources.requests.${r} (${c.resources?.requests?.[r]}) exceeds its limit (${c.resources?.limits?.[r]})`);
  }
}

/** Every path Concord writes must be a mounted volume: TMPDIR and a DuckDB file's directory. */
function checkWritablePaths(where: string, c: Container, pod: PodSpec, claims: string[], env: Record<string, string>, problems: string[]) {
  const mounts = c.volumeMounts ?? [];
  const declared = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  for (const m of mounts) {
    if (!declared.has(m.name) && !claims.includes(m.name)) problems.push(`${where}: volumeMount ${m.name} names no volume of the pod`);
  }
  const mountFor = (dir: string) => mounts.filter((m) => !m.readOnly && (dir === m.mountPath || dir.startsWith(`${m.mountPath.replace(/\/$/, '')}/`))).pop();
  const tmpdir = env.TMPDIR ?? '/tmp';
  const tmp = mountFor(tmpdir);
  if (!tmp || !declared.get(tmp.name)?.emptyDir) problems.push(`${where}: TMPDIR ${tmpdir} (tsx's cache) must be an emptyDir volume mount`);
  const duck = env.DUCKDB_DATABASE_PATH ?? './data/analytics.duckdb';
  if (duck !== ':memory:') {
    const dir = duck.startsWith('/') ? duck.replace(/\/[^/]*$/, '') || '/' : '(relative to /app)';
    if (!duck.startsWith('/') || !mountFor(dir)) problems.push(`${where}: DUCKDB_DATABASE_PATH ${duck} is not on a mounted volume (the root filesystem is read-only)`);
  }
}

export interface Expectations {
  /** Stand-in Secrets by name: key → value. */
  secrets: Record<string, Record<string, string>>;
  /** The consistency manager's effective interval (s) and page size. */
  sync: { intervalSeconds: number; batchSize: number };
}

/** The actors `concord start ARGS` would run with this environment (Concord's own selection). */
export async function actorsOf(args: string[], env: Record<string, string>): Promise<{ role: Role; actors: string[] }> {
  if (args[0] !== 'start') throw new Error(`args must start with "start", got ${JSON.stringify(args)}`);
  const { values } = parseArgs({ args: args.slice(1), options: { role: { type: 'string', default: 'all' }, actors: { type: 'string' } }, strict: true });
  const role = values.role as Role;
  const selected = selectCapabilities(role, values.actors, env);
  await Promise.allSettled(selected.extensions.map((e) => e.close()));
  return { role, actors: selected.actors.map((a) => a.name) };
}

/** All checks on one rendering. */
export async function checkManifests(objects: K8sObject[], x: Expectations): Promise<string[]> {
  const problems: string[] = [];
  const running = new Map<string, string[]>();
  const wl = workloads(objects);
  for (const name of ['Deployment/concord-api', 'Deployment/concord-worker', 'StatefulSet/concord-duckdb-writer']) {
    if (!wl.some((o) => id(o) === name)) problems.push(`${name} is missing`);
  }
  for (const o of wl) {
    const pod = o.spec?.template?.spec;
    if (!pod) {
      problems.push(`${id(o)}: no pod template`);
      continue;
    }
    const ps = pod.securityContext ?? {};
    if (ps.runAsNonRoot !== true || ps.runAsUser !== 1000 || ps.seccompProfile?.type !== 'RuntimeDefault') {
      problems.push(`${id(o)}: pod securityContext must set runAsNonRoot, runAsUser 1000 and seccompProfile RuntimeDefault`);
    }
    if (!matches(selectorOf(o), o.spec?.template?.metadata?.labels)) problems.push(`${id(o)}: selector does not match its pod labels`);
    const claims = (o.spec?.volumeClaimTemplates ?? []).map((v) => v.metadata.name);
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const where = `${id(o)} container ${c.name}`;
      checkContainerSecurity(where, c, problems);
      const { env, problems: envProblems } = containerEnv(objects, c, x.secrets);
      problems.push(...envProblems.map((p) => `${where}: ${p}`));
      checkWritablePaths(where, c, pod, claims, env, problems);
      try {
        loadConfig(env);
      } catch (err) {
        problems.push(`${where}: the configuration does not load: ${(err as Error).message}`);
        continue;
      }
      if (c.args?.[0] === 'migrate') {
        if (!env.DATABASE_URL) problems.push(`${where}: concord migrate needs DATABASE_URL`);
        continue;
      }
      checkProbes(where, c, problems);
      const drainMs = Number(env.SHUTDOWN_TIMEOUT_MS ?? 25_000);
      if (!((pod.terminationGracePeriodSeconds ?? 30) * 1000 > drainMs)) problems.push(`${id(o)}: terminationGracePeriodSeconds must exceed SHUTDOWN_TIMEOUT_MS (${drainMs} ms)`);
      try {
        const sync = loadSyncConfig(env);
        if (sync.intervalSeconds !== x.sync.intervalSeconds || sync.batchSize !== x.sync.batchSize) {
          problems.push(`${where}: sync interval ${sync.intervalSeconds} s / batch ${sync.batchSize}, expected ${x.sync.intervalSeconds} s / ${x.sync.batchSize}`);
        }
        running.set(id(o), (await actorsOf(c.args ?? [], env)).actors);
      } catch (err) {
        problems.push(`${where}: \`concord ${(c.args ?? []).join(' ')}\` would not start: ${(err as Error).message}`);
      }
      if (env.DUCKDB_MEMORY_LIMIT && !(quantity(env.DUCKDB_MEMORY_LIMIT) < quantity(c.resources?.limits?.memory))) {
        problems.push(`${where}: DUCKDB_MEMORY_LIMIT ${env.DUCKDB_MEMORY_LIMIT} must be below the memory limit ${c.resources?.limits?.memory}`);
      }
    }
  }
  problems.push(...checkSingleWriter(objects, running), ...checkDisruptionBudget(objects), ...checkNetworkPolicy(objects), ...checkApiService(objects));
  return problems;
}

function checkProbes(where: string, c: Container, problems: string[]) {
  const port = c.ports?.find((p) => p.containerPort === 8080);
  if (!port) problems.push(`${where}: must expose containerPort 8080`);
  const probe = (p: Probe | undefined, path: string, what: string) => {
    const target = p?.httpGet?.port;
    if (p?.httpGet?.path !== path || !(target === 8080 || (port?.name !== undefined && target === port.name))) problems.push(`${where}: ${what} must GET ${path} on port 8080`);
  };
  probe(c.livenessProbe, '/health', 'livenessProbe');
  probe(c.readinessProbe, '/ready', 'readinessProbe');
  if (c.startupProbe) probe(c.startupProbe, '/health', 'startupProbe');
}

/** Exactly one process may run the dual-writer: a 1-replica StatefulSet with the file on its claim. */
function checkSingleWriter(objects: K8sObject[], running: Map<string, string[]>): string[] {
  const problems: string[] = [];
  const writers = [...running].filter(([, actors]) => actors.includes(DUAL_WRITER)).map(([name]) => name);
  if (writers.length !== 1) problems.push(`exactly one workload must run ${DUAL_WRITER}, found ${writers.length}: ${writers.join(', ') || 'none'}`);
  for (const name of writers) {
    const o = objects.find((w) => id(w) === name)!;
    if (o.kind !== 'StatefulSet') problems.push(`${name} runs ${DUAL_WRITER}: only a StatefulSet may (a Deployment's rolling update overlaps two pods)`);
    if (o.spec?.replicas !== 1) problems.push(`${name} runs ${DUAL_WRITER} with replicas ${o.spec?.replicas ?? 'unset'}: it must be exactly 1`);
    const claim = o.spec?.volumeClaimTemplates?.[0];
    if (!claim || !(claim.spec.accessModes ?? []).includes('ReadWriteOnce')) problems.push(`${name}: the DuckDB file needs a ReadWriteOnce volumeClaimTemplate`);
    const c = o.spec?.template?.spec.containers[0];
    if (claim && !c?.volumeMounts?.some((m) => m.name === claim.metadata.name)) problems.push(`${name}: its container does not mount the claim ${claim.metadata.name}`);
    // Nothing scalable shares the writer's pod; the validator's DuckDB side needs the lease holder's process.
    const others = running.get(name)!.filter((a) => a !== DUAL_WRITER && a !== VALIDATOR);
    if (others.length > 0) problems.push(`${name} must run only ${DUAL_WRITER} (and ${VALIDATOR}), also runs ${others.join(', ')}`);
    const validating = [...running].some(([, actors]) => actors.includes(VALIDATOR));
    if (validating && !running.get(name)!.includes(VALIDATOR)) problems.push(`${name} must run ${VALIDATOR} too: its DuckDB side (validate.duckdb) is served only by the process holding the DuckDB lease`);
  }
  return problems;
}

function checkDisruptionBudget(objects: K8sObject[]): string[] {
  const worker = objects.find((o) => id(o) === 'Deployment/concord-worker');
  const pdbs = objects.filter((o) => o.kind === 'PodDisruptionBudget' && matches(selectorOf(o), worker?.spec?.template?.metadata?.labels));
  if (pdbs.length !== 1) return [`exactly one PodDisruptionBudget must select the worker pods, found ${pdbs.length}`];
  const pdb = pdbs[0]!;
  const problems: string[] = [];
  if (pdb.apiVersion !== 'policy/v1') problems.push(`${id(pdb)}: apiVersion must be policy/v1`);
  if (pdb.spec?.maxUnavailable === undefined && pdb.spec?.minAvailable === undefined) problems.push(`${id(pdb)}: needs maxUnavailable or minAvailable`);
  for (const o of workloads(objects).filter((w) => w !== worker)) {
    if (matches(selectorOf(pdb), o.spec?.template?.metadata?.labels)) problems.push(`${id(pdb)} also selects ${id(o)}`);
  }
  return problems;
}

/** Ingress to the datastore pods only from Concord's pods, on the datastores' ports. */
function checkNetworkPolicy(objects: K8sObject[]): string[] {
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const np = policies.find((o) => o.spec?.podSelector?.matchLabels?.['concord.io/datastore'] === 'true');
  if (!np) return ['no NetworkPolicy selects the datastore pods (concord.io/datastore: "true")'];
  const problems: string[] = [];
  if (JSON.stringify(np.spec?.policyTypes) !== JSON.stringify(['Ingress'])) problems.push(`${id(np)}: policyTypes must be [Ingress]`);
  const rules = np.spec?.ingress ?? [];
  const sources = rules.flatMap((r) => r.from ?? []);
  if (rules.length === 0 || rules.some((r) => (r.from ?? []).length === 0)) problems.push(`${id(np)}: every ingress rule must name its sources (an empty "from" admits every pod)`);
  for (const s of sources) {
    if (s.ipBlock || s.namespaceSelector || !s.podSelector) problems.push(`${id(np)}: sources must be Concord pods only (a podSelector), got ${JSON.stringify(s)}`);
    else if (!workloads(objects).every((w) => matches(s.podSelector?.matchLabels ?? {}, w.spec?.template?.metadata?.labels))) {
      problems.push(`${id(np)}: source ${JSON.stringify(s.podSelector)} does not admit every Concord workload`);
    }
  }
  const ports = rules.flatMap((r) => (r.ports ?? []).map((p) => p.port)).sort();
  if (JSON.stringify(ports) !== JSON.stringify([5432, 6379, 9092])) problems.push(`${id(np)}: ports must be 5432, 6379 and 9092, got ${ports.join(', ') || 'all'}`);
  return problems;
}

function checkApiService(objects: K8sObject[]): string[] {
  const api = objects.find((o) => id(o) === 'Deployment/concord-api');
  const svc = objects.find((o) => id(o) === 'Service/concord-api');
  if (!svc) return ['Service/concord-api is missing'];
  const selector = (svc.spec?.selector ?? {}) as Labels;
  const selected = workloads(objects).filter((w) => matches(selector, w.spec?.template?.metadata?.labels));
  if (selected.length !== 1 || selected[0] !== api) return [`Service/concord-api must select the api pods only, selects ${selected.map(id).join(', ') || 'nothing'}`];
  return [];
}
