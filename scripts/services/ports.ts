import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Ask the kernel for a free TCP port on 127.0.0.1 (listen on port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: could not read the listening address'));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** True when nothing listens on 127.0.0.1:<port> (we can bind it ourselves). */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Process-exit cleanup shared by the service launchers.
//
// Cleanups run synchronously on process 'exit' (normal end, process.exit()).
// For SIGINT/SIGTERM/SIGHUP we install a listener (prepended, so it runs
// before listeners added later) that only acts when nobody else listens for
// that signal: it runs the cleanups and re-raises the signal so the process
// still dies with the default behaviour. When another listener exists (vitest,
// a demo's graceful shutdown), that listener owns the shutdown and will end in
// process.exit(), which fires 'exit' and so our cleanups.
// ---------------------------------------------------------------------------

type Cleanup = () => void;
const cleanups = new Set<Cleanup>();
let hooksInstalled = false;

function runCleanups(): void {
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // best effort: the process is going away
    }
  }
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', runCleanups);
  for (const sig of SIGNALS) {
    const handler = (): void => {
      if (process.listenerCount(sig) > 1) return; // someone else handles shutdown
      runCleanups();
      process.removeListener(sig, handler);
      process.kill(process.pid, sig);
    };
    process.prependListener(sig, handler);
  }
}

/**
 * Register a synchronous cleanup to run when the process exits (see above).
 * Returns a function that unregisters it (call it once the resource is released).
 */
export function onProcessExit(fn: Cleanup): () => void {
  installHooks();
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

/** Block the current thread for `ms` (only for use inside exit handlers). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---------------------------------------------------------------------------
// Crash leftovers. Test-mode servers live in temp dirs named `<prefix>*` holding an
// owner file. If the node process that started them was SIGKILLed, no exit handler
// ran; the next start sweeps such dirs: it stops the server (only if /proc says it is
// the expected binary) and deletes the dir. Dirs whose owner is alive are left alone.
// ---------------------------------------------------------------------------

const OWNER_FILE = 'concord-owner.json';

export function writeOwnerFile(dir: string, serverPid: number | null): void {
  fs.writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify({ owner: process.pid, server: serverPid }));
}

/** True while a process with this pid exists (signal 0 only checks, it delivers nothing). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function commOf(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

export async function sweepStaleTempDirs(opts: {
  prefix: string;
  /** expected /proc/<pid>/comm prefix of the server, e.g. 'redis-server' or 'postgres' */
  comm: string;
  /** read the server pid for a dir (default: the owner file's `server`) */
  serverPid?: (dir: string, recorded: number | null) => number | null;
  signal: NodeJS.Signals;
  log: (m: string) => void;
}): Promise<void> {
  const base = os.tmpdir();
  let entries: string[];
  try {
    entries = fs.readdirSync(base).filter((name) => name.startsWith(opts.prefix));
  } catch {
    return;
  }
  for (const name of entries) {
    const dir = path.join(base, name);
    let owner: number | null = null;
    let recorded: number | null = null;
    try {
      const parsed: unknown = JSON.parse(fs.readFileSync(path.join(dir, OWNER_FILE), 'utf8'));
      if (typeof parsed === 'object' && parsed !== null) {
        const o: unknown = Reflect.get(parsed, 'owner');
        const s: unknown = Reflect.get(parsed, 'server');
        if (typeof o === 'number') owner = o;
        if (typeof s === 'number') recorded = s;
      }
    } catch {
      continue; // no owner file (being created right now, or not ours): leave it
    }
    if (owner === null || isAlive(owner)) continue;
    const pid = opts.serverPid ? opts.serverPid(dir, recorded) : recorded;
    if (pid !== null && isAlive(pid) && (commOf(pid) ?? '').startsWith(opts.comm)) {
      opts.log(`sweeping ${opts.comm} pid ${pid} left behind by dead process ${owner} (${dir})`);
      try {
        process.kill(pid, opts.signal);
      } catch {
        // gone
      }
      for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(50);
      if (isAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
