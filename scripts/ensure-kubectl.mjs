#!/usr/bin/env node
// Makes sure `kubectl` is here, for `kubectl kustomize` (test/unit/k8s-manifests.test.ts renders
// the manifests under k8s/ with it; no cluster is needed).
//
//   node scripts/ensure-kubectl.mjs      prints the kubectl it found or installed, or exits 1 saying why
//   KUBECTL=/path/to/kubectl ...         use that binary instead of the one on PATH
//
// When kubectl is missing and this process is root, it installs Debian's `kubernetes-client`
// package (apt-get; `apt-get update` first when the package lists do not know it yet). Debian
// bookworm's is kubectl 1.20, whose built-in kustomize is v2.0.3: the manifests under k8s/ are
// written to render with it as well as with current kubectl. Not root: it says what to run.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { aptInstall } from './apt-install.mjs';

const APT_PACKAGE = 'kubernetes-client';

/** `kubectl version --client` output when `command` runs, else undefined. */
export function kubectlVersion(command = 'kubectl') {
  const res = spawnSync(command, ['version', '--client'], { encoding: 'utf8', timeout: 30_000 });
  if (res.error || res.status !== 0) return undefined;
  return `${res.stdout}`.trim().split('\n')[0];
}

/**
 * The kubectl command to run. Installs Debian's kubernetes-client when kubectl is missing and we
 * are root; otherwise throws an Error that says what to install.
 * @param {{ log?: (line: string) => void }} [opts]
 * @returns {{ command: string, version: string, installed: boolean }}
 */
export function ensureKubectl(opts = {}) {
  const log = opts.log ?? (() => undefined);
  // KUBECTL=/path/to/kubectl picks a binary (e.g. to render with an older kubectl's kustomize).
  const chosen = process.env.KUBECTL?.trim();
  if (chosen) {
    const version = kubectlVersion(chosen);
    if (!version) throw new Error(`KUBECTL=${chosen}: \`${chosen} version --client\` fails`);
    return { command: chosen, version, installed: false };
  }
  const found = kubectlVersion();
  if (found) return { command: 'kubectl', version: found, installed: false };

  aptInstall(APT_PACKAGE, { what: `kubectl`, note: 'or install kubectl from your distribution', log });
  const version = kubectlVersion();
  if (!version) throw new Error(`${APT_PACKAGE} is installed but \`kubectl version --client\` still fails`);
  return { command: 'kubectl', version, installed: true };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const k = ensureKubectl({ log: (line) => console.error(line) });
    console.log(`${k.installed ? 'installed' : 'found'}: ${k.version}`);
  } catch (err) {
    console.error(`ensure-kubectl: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
