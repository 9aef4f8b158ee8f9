#!/usr/bin/env node
// Make sure node_modules matches package.json / package-lock.json before running anything
// else. Plain Node ESM with no dependencies: it runs before node_modules may exist.
// Fast path (nothing to do) is a few stat() calls.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** mtime in ms, or null when the file does not exist */
function mtime(file) {
  try {
    return statSync(path.join(root, file)).mtimeMs;
  } catch {
    return null;
  }
}

const installed = mtime('node_modules/.package-lock.json');
const lock = mtime('package-lock.json');
const manifest = mtime('package.json');

let reason = null;
if (installed === null) reason = 'node_modules is missing';
else if (lock !== null && lock > installed) reason = 'package-lock.json is newer than node_modules';
else if (manifest !== null && manifest > installed) reason = 'package.json is newer than node_modules';

if (reason === null) {
  console.log('ensure-deps: node_modules is up to date');
  process.exit(0);
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (args) => {
  console.log(`ensure-deps: ${reason}; running npm ${args.join(' ')}`);
  const result = spawnSync(npm, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (result.error) {
    console.error(`ensure-deps: could not run npm (${result.error.message}). Install Node.js with npm, then run \`npm ${args.join(' ')}\` in ${root}.`);
    process.exit(1);
  }
  return result;
};

let args = lock !== null ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund'];
let result = run(args);
if (result.status !== 0 && args[0] === 'ci') {
  // npm 11 leaves other platforms' optional packages (DuckDB, rollup, msgpackr
  // bindings) out of a lock written on Linux, and `npm ci` then calls the lock out
  // of sync. `npm install` still installs the locked versions and fills them in.
  console.log('ensure-deps: npm ci refused the lock file; falling back to npm install (same locked versions)');
  args = ['install', '--no-audit', '--no-fund'];
  result = run(args);
}
if (result.status !== 0) {
  console.error(
    `ensure-deps: \`npm ${args.join(' ')}\` failed (${result.signal ? `signal ${result.signal}` : `exit code ${result.status}`}). ` +
      'Fix the error above and re-run.',
  );
  process.exit(result.status || 1);
}
console.log(`ensure-deps: npm ${args[0]} done`);
