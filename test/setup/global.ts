import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startServices, type Services } from '../../scripts/services/index.js';

declare module 'vitest' {
  export interface ProvidedContext {
    services: { redisUrl: string; databaseUrl: string };
  }
}

/**
 * True when this run certainly needs no services: not watch mode, and every selected
 * test file lives under test/unit. Uses Vitest's (internal) CLI filename filters; when
 * they can't be read we say "no" and start the services anyway.
 */
async function onlyUnitTests(project: TestProject): Promise<boolean> {
  const vitest = project.vitest;
  if (vitest.config.watch) return false;
  const patterns: unknown = Reflect.get(vitest, 'filenamePattern');
  let filters: string[] | undefined;
  if (patterns === undefined) filters = undefined;
  else if (Array.isArray(patterns) && patterns.every((p): p is string => typeof p === 'string')) filters = patterns;
  else return false;
  try {
    const specs = await vitest.globTestSpecifications(filters);
    const unitDir = path.join(project.config.root, 'test', 'unit') + path.sep;
    return specs.length > 0 && specs.every((spec) => spec.moduleId.startsWith(unitDir));
  } catch {
    return false;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (await onlyUnitTests(project)) {
    return async () => {};
  }

  const started = Date.now();
  const lines: string[] = [];
  let services: Services;
  try {
    services = await startServices({ mode: 'test', log: (m) => lines.push(m) });
  } catch (err) {
    if (lines.length > 0) console.error(lines.join('\n'));
    throw err;
  }
  console.log(
    `[services] redis ${services.redis.url}${services.redis.owned ? '' : ' (external)'}, ` +
      `postgres ${services.postgres.url}${services.postgres.owned ? '' : ' (external)'}; ready in ${Date.now() - started}ms`,
  );

  project.provide('services', { redisUrl: services.redis.url, databaseUrl: services.postgres.url });

  return async () => {
    await services.stop();
  };
}
