#!/usr/bin/env node
// Makes sure a Chromium binary is here, for the dashboard's browser test
// (test/integration/dashboard.test.ts drives it with playwright-core; playwright's own browser
// downloads cannot be fetched on these machines, Debian's package can).
//
//   node scripts/ensure-chromium.mjs      prints the Chromium it found or installed, or exits 1 saying why
//   CHROMIUM=/path/to/chrome ...          use that binary instead of /usr/bin/chromium
//
// When /usr/bin/chromium is missing and this process is root, it installs Debian's `chromium`
// package (apt-get install -y --no-install-recommends chromium; `apt-get update` first when the
// package lists do not know it yet). That is about 100 MB of packages. Not root: it says what to run.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { aptInstall } from './apt-install.mjs';

const APT_PACKAGE = 'chromium';
export const DEFAULT_CHROMIUM = '/usr/bin/chromium';

/** `chromium --version` output when `command` runs, else undefined. */
export function chromiumVersion(command = DEFAULT_CHROMIUM) {
  const res = spawnSync(command, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (res.error || res.status !== 0) return undefined;
  return `${res.stdout}`.trim().split('\n')[0];
}

/**
 * The Chromium executable to launch. Installs Debian's chromium when it is missing and we are
 * root; otherwise throws an Error that says what to install.
 * @param {{ log?: (line: string) => void }} [opts]
 * @returns {{ executablePath: string, version: string, installed: boolean }}
 */
export function ensureChromium(opts = {}) {
  const log = opts.log ?? (() => undefined);
  const chosen = process.env.CHROMIUM?.trim();
  if (chosen) {
    const version = chromiumVersion(chosen);
    if (!version) throw new Error(`CHROMIUM=${chosen}: \`${chosen} --version\` fails`);
    return { executablePath: chosen, version, installed: false };
  }
  const found = chromiumVersion();
  if (found) return { executablePath: DEFAULT_CHROMIUM, version: found, installed: false };

  aptInstall(APT_PACKAGE, { what: `Chromium (${DEFAULT_CHROMIUM})`, note: 'or set CHROMIUM=/path/to/chrome', log, timeoutMs: 900_000 });
  const version = chromiumVersion();
  if (!version) throw new Error(`${APT_PACKAGE} is installed but \`${DEFAULT_CHROMIUM} --version\` still fails`);
  return { executablePath: DEFAULT_CHROMIUM, version, installed: true };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const c = ensureChromium({ log: (line) => console.error(line) });
    console.log(`${c.installed ? 'installed' : 'found'}: ${c.version} (${c.executablePath})`);
  } catch (err) {
    console.error(`ensure-chromium: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
