import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { actorsOf, checkManifests, containerEnv, renderKustomize, type Container, type K8sObject } from '../support/k8s-manifests.js';

// Renders k8s/base and both overlays with `kubectl kustomize` (no cluster needed) and checks them
// with test/support/k8s-manifests.ts, which runs Concord's own config loaders and actor selection
// on each container's environment. scripts/ensure-kubectl.mjs installs Debian's kubernetes-client
// when kubectl is missing (as root). KUBECTL=/path/to/kubectl renders with another binary.

interface EnsureKubectlModule {
  ensureKubectl(opts?: { log?: (line: string) => void }): { command: string; version: string; installed: boolean };
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const k8s = (dir: string) => path.join(root, 'k8s', dir);

/** The Secret concord-secrets as README "Operating at scale" tells you to create it. */
const EXAMPLE_SECRET: Record<string, string> = {
  DATABASE_URL: 'postgres://concord:pw@postgres.example.internal:5432/concord',
  REDIS_URL: 'rediss://:pw@redis.example.internal:6379/0',
  SECRET_KEY: 'k'.repeat(64),
  KAFKA_BROKERS: 'kafka-0.example.internal:9092,kafka-1.example.internal:9092',
  QUEUE_DB_URI: 'postgres://concord:pw@postgres.example.internal:5432/queue',
  USER_PORTFOLIO_DB_URI: 'postgres://concord:pw@postgres.example.internal:5432/portfolio',
};
const secrets = (secret: Record<string, string> = EXAMPLE_SECRET) => ({ 'concord-secrets': secret });
const without = (...keys: string[]) => Object.fromEntries(Object.entries(EXAMPLE_SECRET).filter(([k]) => !keys.includes(k)));

const RENDERINGS = {
  base: { dir: 'base', namespace: undefined, replicas: { api: 2, worker: 2 }, sync: { intervalSeconds: 30, batchSize: 100 } },
  development: { dir: 'overlays/development', namespace: 'concord-dev', replicas: { api: 1, worker: 1 }, sync: { intervalSeconds: 15, batchSize: 50 } },
  production: { dir: 'overlays/production', namespace: 'concord', replicas: { api: 2, worker: 3 }, sync: { intervalSeconds: 30, batchSize: 100 } },
} as const;
type Rendering = keyof typeof RENDERINGS;

const rendered = {} as Record<Rendering, K8sObject[]>;
let kubectl: string;

beforeAll(async () => {
  const { ensureKubectl } = (await import(pathToFileURL(path.join(root, 'scripts', 'ensure-kubectl.mjs')).href)) as EnsureKubectlModule;
  kubectl = ensureKubectl({ log: (line) => console.log(`[ensure-kubectl] ${line}`) }).command;
  for (const name of Object.keys(RENDERINGS) as Rendering[]) rendered[name] = renderKustomize(kubectl, k8s(RENDERINGS[name].dir));
}, 600_000);

const copy = (name: Rendering): K8sObject[] => structuredClone(rendered[name]);
const find = (objects: K8sObject[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`${kind}/${name} not rendered`);
  return o;
};
const container = (o: K8sObject, name = 'concord'): Container => {
  const pod = o.spec!.template!.spec;
  return [...(pod.initContainers ?? []), ...pod.containers].find((c) => c.name === name)!;
};
const check = (objects: K8sObject[], name: Rendering = 'production', secret?: Record<string, string>) =>
  checkManifests(objects, { secrets: secrets(secret), sync: RENDERINGS[name].sync });

describe('Kubernetes manifests (kubectl kustomize k8s/...)', () => {
  it.each(Object.keys(RENDERINGS) as Rendering[])('%s renders and passes every check', async (name) => {
    const objects = rendered[name];
    expect(await check(objects, name)).toEqual([]);
    const { namespace, replicas } = RENDERINGS[name];
    for (const o of objects) expect(o.metadata.namespace).toBe(namespace);
    expect(find(objects, 'Deployment', 'concord-api').spec?.replicas).toBe(replicas.api);
    expect(find(objects, 'Deployment', 'concord-worker').spec?.replicas).toBe(replicas.worker);
    expect(find(objects, 'StatefulSet', 'concord-duckdb-writer').spec?.replicas).toBe(1);
  });

  it('the overlays set the sync interval and batch in the ConfigMap (development 15 s / 50, production 30 s / 100)', () => {
    const cm = (name: Rendering) => rendered[name].find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('concord-config'))!.data!;
    expect(cm('development')).toMatchObject({ SYNC_INTERVAL: '15', BATCH_SIZE: '50', CONCORD_PROFILE: 'development' });
    expect(cm('production')).toMatchObject({ SYNC_INTERVAL: '30', BATCH_SIZE: '100', CONCORD_PROFILE: 'production' });
  });

  it('api runs no actors, workers run every enabled actor but the dual-writer, the writer runs only the dual-writer', async () => {
    const objects = rendered.production;
    const run = async (kind: string, name: string) => {
      const c = container(find(objects, kind, name));
      return actorsOf(c.args ?? [], containerEnv(objects, c, secrets()).env);
    };
    expect(await run('Deployment', 'concord-api')).toEqual({ role: 'api', actors: [] });
    const worker = await run('Deployment', 'concord-worker');
    expect(worker.role).toBe('worker');
    expect(worker.actors).not.toContain('dual-writer');
    expect(worker.actors).toEqual(expect.arrayContaining(['sync-scheduler', 'outbox-relay', 'sync-events', 'sequence-allocator', 'saga-coordinator']));
    expect(worker.actors).toContain('validator');
    expect(await run('StatefulSet', 'concord-duckdb-writer')).toEqual({ role: 'worker', actors: ['dual-writer', 'validator'] });
    // The writer's DuckDB file is on its claim; everyone else uses an in-memory database.
    const duckPath = (kind: string, name: string) => containerEnv(objects, container(find(objects, kind, name)), secrets()).env.DUCKDB_DATABASE_PATH;
    expect(duckPath('StatefulSet', 'concord-duckdb-writer')).toBe('/app/data/analytics.duckdb');
    expect(duckPath('Deployment', 'concord-worker')).toBe(':memory:');
  });

  it('required Secret keys are enforced, and a missing consistency-manager URI stops the process naming it', async () => {
    const noKey = (await check(rendered.production, 'production', without('SECRET_KEY'))).join('\n');
    expect(noKey).toMatch(/SECRET_KEY: Secret concord-secrets key SECRET_KEY is required/);
    const noQueueDb = (await check(rendered.production, 'production', without('QUEUE_DB_URI'))).join('\n');
    expect(noQueueDb).toMatch(/would not start: .*QUEUE_DB_URI/s);
    // Kafka is optional: without it the outbox uses Redis Streams, and everything still starts.
    expect(await check(rendered.production, 'production', without('KAFKA_BROKERS'))).toEqual([]);
  });

  it('a configuration that does not load is reported with the variable', async () => {
    const objects = copy('production');
    find(objects, 'ConfigMap', rendered.production.find((o) => o.metadata.name.startsWith('concord-config'))!.metadata.name).data!.AUTH_MODE = 'basic';
    expect((await check(objects)).join('\n')).toMatch(/configuration does not load: .*AUTH_MODE/s);
  });

  it('checks the overlay values: production measured against development expectations fails', async () => {
    expect((await check(rendered.production, 'development')).join('\n')).toMatch(/sync interval 30 s \/ batch 100, expected 15 s \/ 50/);
  });

  it.each<[string, (objects: K8sObject[]) => void, RegExp]>([
    [
      'a worker without its ConfigMap runs a second DuckDB writer',
      (o) => container(find(o, 'Deployment', 'concord-worker')).envFrom!.pop(),
      /exactly one workload must run dual-writer, found 2: .*Deployment\/concord-worker/,
    ],
    [
      'a writer without the validator',
      (o) => (container(find(o, 'StatefulSet', 'concord-duckdb-writer')).args = ['start', '--role', 'worker', '--actors', 'dual-writer']),
      /concord-duckdb-writer must run validator too/,
    ],
    ['a scaled writer', (o) => (find(o, 'StatefulSet', 'concord-duckdb-writer').spec!.replicas = 2), /replicas 2: it must be exactly 1/],
    ['a writable root filesystem', (o) => (container(find(o, 'Deployment', 'concord-worker')).securityContext!.readOnlyRootFilesystem = false), /concord-worker container concord: .*readOnlyRootFilesystem/],
    ['privilege escalation', (o) => (container(find(o, 'Deployment', 'concord-api'), 'migrate').securityContext!.allowPrivilegeEscalation = true), /concord-api container migrate: .*allowPrivilegeEscalation/],
    ['a kept capability', (o) => (container(find(o, 'Deployment', 'concord-api')).securityContext!.capabilities = { drop: ['NET_RAW'] }), /capabilities must drop ALL/],
    ['no /tmp volume', (o) => (container(find(o, 'Deployment', 'concord-api')).volumeMounts = []), /concord-api container concord: TMPDIR \/tmp .* emptyDir/],
    ['a DuckDB file on the root filesystem', (o) => container(find(o, 'StatefulSet', 'concord-duckdb-writer')).volumeMounts!.pop(), /DUCKDB_DATABASE_PATH \/app\/data\/analytics\.duckdb is not on a mounted volume/],
    ['liveness on /ready', (o) => (container(find(o, 'Deployment', 'concord-worker')).livenessProbe!.httpGet!.path = '/ready'), /livenessProbe must GET \/health/],
    ['no readiness probe', (o) => delete container(find(o, 'StatefulSet', 'concord-duckdb-writer')).readinessProbe, /readinessProbe must GET \/ready/],
    ['no memory limit', (o) => delete container(find(o, 'Deployment', 'concord-worker')).resources!.limits!.memory, /resources\.requests\.memory and resources\.limits\.memory must both be set/],
    ['a short grace period', (o) => (find(o, 'Deployment', 'concord-api').spec!.template!.spec.terminationGracePeriodSeconds = 20), /terminationGracePeriodSeconds must exceed SHUTDOWN_TIMEOUT_MS/],
    ['no worker PodDisruptionBudget', (o) => o.splice(o.findIndex((x) => x.kind === 'PodDisruptionBudget'), 1), /exactly one PodDisruptionBudget must select the worker pods, found 0/],
    ['a datastore policy open to every namespace', (o) => find(o, 'NetworkPolicy', 'concord-datastores').spec!.ingress![0]!.from!.push({ namespaceSelector: {} }), /sources must be Concord pods only/],
    ['a datastore policy with no sources', (o) => delete find(o, 'NetworkPolicy', 'concord-datastores').spec!.ingress![0]!.from, /an empty "from" admits every pod/],
    ['a Secret imported whole', (o) => container(find(o, 'Deployment', 'concord-api')).envFrom!.push({ secretRef: { name: 'concord-secrets' } }), /envFrom secretRef concord-secrets/],
  ])('reports %s', async (_name, mutate, expected) => {
    const objects = copy('production');
    mutate(objects);
    expect((await check(objects)).join('\n')).toMatch(expected);
  });

  it('skaffold.yaml builds the image the manifests name and deploys the development overlay, `prod` the production one', () => {
    const sk = parse(readFileSync(path.join(root, 'skaffold.yaml'), 'utf8')) as {
      apiVersion: string;
      metadata: { name: string };
      build: { artifacts: Array<{ image: string; docker?: { dockerfile: string } }> };
      manifests: { kustomize: { paths: string[] } };
      profiles: Array<{ name: string; manifests?: { kustomize: { paths: string[] } } }>;
    };
    expect(sk.apiVersion).toMatch(/^skaffold\/v4/);
    expect(sk.metadata.name).toBe('concord');
    expect(sk.build.artifacts).toEqual([expect.objectContaining({ image: 'concord', docker: { dockerfile: 'Dockerfile' } })]);
    expect(sk.manifests.kustomize.paths).toEqual(['k8s/overlays/development']);
    expect(sk.profiles.find((p) => p.name === 'prod')?.manifests?.kustomize.paths).toEqual(['k8s/overlays/production']);
    // The image Skaffold builds is the one every Concord container runs (before its tag).
    const images = rendered.production.flatMap((o) => [...(o.spec?.template?.spec.initContainers ?? []), ...(o.spec?.template?.spec.containers ?? [])].map((c) => c.image));
    expect(new Set(images.map((i) => i?.split(':')[0]))).toEqual(new Set(['concord']));
  });
});
