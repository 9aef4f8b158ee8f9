import { defineConfig } from 'vitest/config';

// Integration tests share one set of spawned services (see test/setup/global.ts) and
// run files one at a time: the machine has 2 cores and the tests kill real processes.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 180_000,
    reporters: ['default'],
  },
});
