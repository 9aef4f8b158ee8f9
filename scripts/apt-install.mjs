// Installs a Debian package for a tool the test suite needs (kubectl, Chromium), the same way
// for each: only as root (otherwise the error says what to run), `apt-get update` and a second
// try when a fresh machine's package lists do not know the package yet.
import { spawnSync } from 'node:child_process';

function apt(args, timeoutMs) {
  const res = spawnSync('apt-get', args, {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return { ok: !res.error && res.status === 0, output: `${res.error?.message ?? ''}${res.stdout ?? ''}${res.stderr ?? ''}`.trim() };
}

/**
 * `apt-get install -y --no-install-recommends <pkg>`; throws an Error saying what went wrong,
 * or what to run by hand when this process is not root.
 * @param {string} pkg
 * @param {{ what: string, log?: (line: string) => void, timeoutMs?: number, note?: string }} opts
 */
export function aptInstall(pkg, opts) {
  const log = opts.log ?? (() => undefined);
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    throw new Error(`${opts.what} is not installed, and installing it needs root. Run: sudo apt-get install -y ${pkg} (Debian/Ubuntu)${opts.note ? `, ${opts.note}` : ''}; then run the tests again.`);
  }
  log(`${opts.what} not found: apt-get install -y --no-install-recommends ${pkg}`);
  let install = apt(['install', '-y', '--no-install-recommends', pkg], timeoutMs);
  if (!install.ok) {
    log('apt-get install failed; running apt-get update and trying again');
    const update = apt(['update'], timeoutMs);
    if (!update.ok) throw new Error(`apt-get update failed:\n${update.output.slice(-2000)}`);
    install = apt(['install', '-y', '--no-install-recommends', pkg], timeoutMs);
  }
  if (!install.ok) throw new Error(`apt-get install -y ${pkg} failed:\n${install.output.slice(-2000)}`);
}
