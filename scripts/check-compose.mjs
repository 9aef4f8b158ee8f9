#!/usr/bin/env node
// Structural checks for docker-compose.yml, Dockerfile and .dockerignore, for machines without
// a Docker engine (so without `docker compose config`). Needs the dev dependencies (`npm install`).
//
//   node scripts/check-compose.mjs [--compose FILE] [--dockerfile FILE] [--dockerignore FILE]
//
// Prints every problem and exits 1, or prints "ok" and exits 0. The checks encode what the
// deployment relies on: the services exist, workers can be scaled (no host ports, no
// container_name, no named volume, no dual-writer), exactly one duckdb-writer owns the DuckDB
// file on a named volume, Concord services run with a read-only root and /tmp on tmpfs, Redis
// never evicts, PostgreSQL has logical WAL, Concord services start in dependency order; the
// image type-checks in a build stage with dev dependencies, ships production dependencies and
// every source folder the CLI imports, and runs as uid 1000 with a health check, exec-form
// entrypoint and SIGTERM as the stop signal. (scripts/deploy-checks/ holds the checks.)
// The Kubernetes manifests under k8s/ are checked by test/unit/k8s-manifests.test.ts.
//
// docker-compose.yml is parsed with the `yaml` package (YAML 1.2 core schema, with `<<` merge
// keys as Compose resolves them); a syntax error is reported as a problem with its position.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkCompose } from './deploy-checks/compose.mjs';
import { checkDockerfile, checkDockerignore } from './deploy-checks/dockerfile.mjs';

export { checkCompose, parseDuration, REQUIRED_SERVICES } from './deploy-checks/compose.mjs';
export { checkDockerfile, checkDockerignore, dockerInstructions, imageSources } from './deploy-checks/dockerfile.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

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

