import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// scripts/check-compose.mjs is plain JavaScript with no declaration file; this is the part of
// its interface the tests use.
interface CheckComposeModule {
  checkDeployFiles(files?: { compose?: string; dockerfile?: string; dockerignore?: string }): string[];
  checkCompose(source: string, file?: string): string[];
  checkDockerfile(source: string, file?: string): string[];
  imageSources(): string[];
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = path.join(root, 'scripts', 'check-compose.mjs');
const composeText = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
const dockerfileText = readFileSync(path.join(root, 'Dockerfile'), 'utf8');

let check: CheckComposeModule;
let tmp: string;

beforeAll(async () => {
  check = (await import(pathToFileURL(script).href)) as CheckComposeModule;
  tmp = mkdtempSync(path.join(os.tmpdir(), 'concord-deploy-files-'));
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function runCli(...args: string[]) {
  return spawnSync(process.execPath, [script, ...args], { cwd: root, encoding: 'utf8', timeout: 30_000 });
}

/** Apply `edit` to `text`, failing the test when it changed nothing (the fixture drifted). */
function mutate(text: string, edit: (s: string) => string): string {
  const out = edit(text);
  expect(out, 'the mutation did not change the file').not.toBe(text);
  return out;
}

/** `edit` applied to one service's block of docker-compose.yml (from `  name:` to the next service or section). */
function editService(text: string, name: string, edit: (block: string) => string): string {
  return mutate(text, (s) => s.replace(new RegExp(`^ {2}${name}:\\n(?: {4}.*\\n|\\n(?= {4}))*`, 'm'), edit));
}

/** docker-compose.yml with `ports` added to the worker service. */
function composeWithWorkerPorts(): string {
  return mutate(composeText, (s) => s.replace(/^( {2}worker:\n)/m, '$1    ports:\n      - "8081:8080"\n'));
}

describe('deployment files (scripts/check-compose.mjs)', () => {
  it('the repository docker-compose.yml, Dockerfile and .dockerignore pass', () => {
    expect(check.checkDeployFiles()).toEqual([]);
  });

  it('the command line exits 0 on the repository files', () => {
    const res = runCli();
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(res.stdout).toContain('ok');
  });

  it('fails on a copy of the compose file where worker publishes ports, and names the problem', () => {
    const file = path.join(tmp, 'docker-compose.worker-ports.yml');
    writeFileSync(file, composeWithWorkerPorts());

    const problems = check.checkDeployFiles({ compose: file });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/service "worker": must not have `ports`/);
    expect(problems[0]).toContain('--scale worker=3');

    const res = runCli('--compose', file);
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/service "worker": must not have `ports`/);
  });

  it.each<[string, (s: string) => string, RegExp]>([
    ['redis without noeviction', (s) => s.replace('"--maxmemory-policy", "noeviction", ', ''), /redis.*noeviction/],
    ['postgres without logical WAL', (s) => s.replace('-c wal_level=logical ', ''), /postgres.*wal_level=logical/],
    ['api without its port', (s) => s.replace(/ {4}ports:\n {6}- "8080:8080"\n/, ''), /api.*8080/],
    ['a missing service', (s) => s.replace(/^ {2}kafka:\n/m, '  broker:\n'), /service "kafka" is missing/],
    [
      'depends_on in the short list form',
      (s) => s.replace(/(depends_on:\n)( {6}postgres:\n {8}condition: service_healthy\n)/, '$1      - postgres\n'),
      /migrate.*depends_on must be the long form/,
    ],
    [
      'api without the migrate condition',
      (s) => editService(s, 'api', (b) => b.replace('      <<: *concord-depends\n', '      redis:\n        condition: service_healthy\n      postgres:\n        condition: service_healthy\n')),
      /api.*"migrate" with condition service_completed_successfully/,
    ],
    [
      'scaled workers sharing the DuckDB volume',
      (s) => editService(s, 'worker', (b) => `${b}    volumes:\n      - duckdb-data:/app/data\n`),
      /"worker": duckdb-data is mounted at \/app\/data, so scaled workers would share it[\s\S]*"worker": mounts the duckdb-writer's volume/,
    ],
    ['a worker running the dual-writer', (s) => editService(s, 'worker', (b) => b.replace(/ *DATA_SYNC_ENABLED: "false"\n/, '')), /"worker": DATA_SYNC_ENABLED must be "false"/],
    ['a writer on an anonymous volume', (s) => editService(s, 'duckdb-writer', (b) => b.replace('- duckdb-data:/app/data', '- /app/data')), /"duckdb-writer": .* must be on a named volume/],
    ['a scaled writer', (s) => editService(s, 'duckdb-writer', (b) => `${b}    deploy:\n      replicas: 2\n`), /"duckdb-writer": must run one replica, got 2/],
    ['a writable root filesystem', (s) => s.replace('  read_only: true\n', ''), /"api": read_only must be true/],
    ['no /tmp tmpfs', (s) => s.replace(/ {2}tmpfs:\n {4}- \/tmp\n/, ''), /"worker": \/tmp \(TMPDIR, tsx's cache\) must be a tmpfs or a volume/],
    ['a worker container_name', (s) => s.replace(/^( {2}worker:\n)/m, '$1    container_name: concord-worker\n'), /worker.*container_name/],
    ['a literal SECRET_KEY', (s) => s.replace('${SECRET_KEY:?set SECRET_KEY (32+ chars)}', 'not-a-secret-at-all-but-32-chars-long'), /SECRET_KEY must be \$\{SECRET_KEY:\?/],
    ['a short worker stop_grace_period', (s) => editService(s, 'worker', (b) => b.replace('stop_grace_period: 30s', 'stop_grace_period: 10s')), /"worker": stop_grace_period/],
  ])('compose: %s is reported', (_name, edit, expected) => {
    const problems = check.checkCompose(mutate(composeText, edit));
    expect(problems.join('\n')).toMatch(expected);
  });

  it.each<[string, RegExp, RegExp]>([
    ['USER', /^USER 1000:1000\n/m, /no USER line/],
    ['HEALTHCHECK', /^HEALTHCHECK [^\n]*\\\n[^\n]*\n/m, /no HEALTHCHECK line/],
    ['ENTRYPOINT', /^ENTRYPOINT .*\n/m, /no ENTRYPOINT line/],
    ['STOPSIGNAL', /^STOPSIGNAL .*\n/m, /no STOPSIGNAL line/],
  ])('Dockerfile: a missing %s line is reported', (_name, line, expected) => {
    const problems = check.checkDockerfile(mutate(dockerfileText, (s) => s.replace(line, '')));
    expect(problems.join('\n')).toMatch(expected);
  });

  it('Dockerfile: a shell-form ENTRYPOINT and a root USER are reported', () => {
    const text = mutate(dockerfileText, (s) => s.replace('ENTRYPOINT ["node", "bin/concord.js"]', 'ENTRYPOINT node bin/concord.js').replace('USER 1000:1000', 'USER root'));
    const problems = check.checkDockerfile(text).join('\n');
    expect(problems).toMatch(/ENTRYPOINT must be the exec form/);
    expect(problems).toMatch(/USER root: must be the numeric non-root uid 1000/);
  });

  it.each<[string, (s: string) => string, RegExp]>([
    ['no type check in the build stage', (s) => s.replace(/^RUN npx tsc .*\n/m, ''), /no build stage/],
    ['sources copied from the context, not the build stage', (s) => s.replace(/^COPY --from=build \/app\/(\w+) /gm, 'COPY $1 '), /must COPY the sources --from=build/],
    ['a source folder left out (cqrs/, imported by actors/projections)', (s) => s.replace('COPY --from=build /app/cqrs ./cqrs\n', ''), /does not COPY cqrs/],
    ['no /tmp volume', (s) => s.replace('VOLUME ["/app/data", "/tmp"]', 'VOLUME ["/app/data"]'), /VOLUME \/tmp/],
  ])('Dockerfile: %s is reported', (_name, edit, expected) => {
    expect(check.checkDockerfile(mutate(dockerfileText, edit)).join('\n')).toMatch(expected);
  });

  it('the image ships every folder the CLI imports (cqrs/ included) and the files read at run time', () => {
    expect(check.imageSources()).toEqual(expect.arrayContaining(['bin', 'cli', 'runtime', 'queues', 'http', 'actors', 'cqrs', 'migrations', 'package.json', 'tsconfig.json']));
  });

  it('compose: a YAML syntax error is reported as one problem with its position', () => {
    const problems = check.checkCompose('services:\n  api:\n    command: [start\n');
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^docker-compose\.yml: invalid YAML: .*at line \d+, column \d+$/);
  });
});
