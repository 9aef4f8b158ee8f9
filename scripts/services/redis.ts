import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, isPortFree, onProcessExit, sleep, sweepStaleTempDirs, writeOwnerFile } from './ports.js';

export interface RedisHandle {
  url: string; // redis://127.0.0.1:<port>
  port: number;
  /** true when we spawned it (tests may stop/restart it); false for REDIS_URL or an already-running server */
  owned: boolean;
  /** owned: SIGTERM the redis-server and wait for exit (SIGKILL after 5s); not owned: no-op */
  stop(): Promise<void>;
  /** owned only: start again on the SAME port (throws if not owned); waits until PING answers */
  restart(): Promise<void>;
}

export interface StartRedisOptions {
  mode?: 'test' | 'demo';
  log?: (m: string) => void;
}

const HOST = '127.0.0.1';
const DEMO_PORT = 6379;
const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const TEMP_PREFIX = 'concord-redis-';

export const NO_REDIS_MESSAGE =
  'No Redis available: `redis-server` was not found on PATH and REDIS_URL is not set. ' +
  'Concord needs Redis. Either install it (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`), ' +
  'or start the compose service with `docker compose up redis`, ' +
  'or point REDIS_URL at a running server (e.g. REDIS_URL=redis://127.0.0.1:6379).';

/** Locate an executable `redis-server` on the PATH as it is *now* (read at call time). */
export function findRedisServer(): string | null {
  const searchPath = process.env.PATH ?? '';
  for (const dir of searchPath.split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'redis-server');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** Send an inline PING; resolves true only on `+PONG`. Never rejects. */
export function pingRedis(port: number, host = HOST, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    let received = '';
    const socket = net.connect({ host, port });
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
      if (received.includes('\r\n')) finish(received.startsWith('+PONG'));
    });
    socket.once('error', () => finish(false));
    socket.once('close', () => finish(false));
  });
}

function readTail(file: string, max = 4_000): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.length > max ? text.slice(-max) : text;
  } catch {
    return '(no output captured)';
  }
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Wait for a child's exit; SIGTERM first, SIGKILL after `graceMs`. */
function terminate(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve) => {
    const killTimer = setTimeout(() => {
      if (!hasExited(child)) child.kill('SIGKILL');
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(killTimer);
      resolve();
    });
    if (!child.kill('SIGTERM') && hasExited(child)) {
      clearTimeout(killTimer);
      resolve();
    }
  });
}

class SpawnedRedis implements RedisHandle {
  readonly owned = true;
  readonly url: string;
  private child: ChildProcess | null = null;
  private unregisterExit: (() => void) | null = null;

  constructor(
    readonly port: number,
    private readonly binary: string,
    private readonly dir: string,
    private readonly log: (m: string) => void,
  ) {
    this.url = `redis://${HOST}:${port}`;
  }

  get logFile(): string {
    return path.join(this.dir, 'redis.log');
  }

  async start(): Promise<void> {
    const started = Date.now();
    fs.mkdirSync(this.dir, { recursive: true });
    const fd = fs.openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(
        this.binary,
        [
          '--port', String(this.port),
          '--bind', HOST,
          '--save', '',
          '--appendonly', 'no',
          '--maxmemory-policy', 'noeviction',
          '--daemonize', 'no',
          '--dir', this.dir,
        ],
        // Own process group: a Ctrl-C in the terminal must not kill Redis before the
        // node process had a chance to shut down gracefully (we stop it on exit).
        { stdio: ['ignore', fd, fd], detached: true },
      );
    } finally {
      fs.closeSync(fd);
    }
    let spawnError: Error | null = null;
    child.once('error', (err) => {
      spawnError = err;
    });
    child.unref(); // never keep the event loop alive just for Redis; we kill it on exit
    this.child = child;
    const pid = child.pid;
    writeOwnerFile(this.dir, pid ?? null);
    const dir = this.dir;
    this.unregisterExit = onProcessExit(() => {
      if (pid !== undefined && !hasExited(child)) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    });

    const deadline = started + READY_TIMEOUT_MS;
    for (;;) {
      if (spawnError !== null || hasExited(child)) {
        const reason = spawnError !== null ? String(spawnError) : `exit code ${String(child.exitCode ?? child.signalCode)}`;
        this.forget();
        throw new Error(
          `redis-server (${this.binary}) failed to start on port ${this.port} (${reason}). Output:\n${readTail(this.logFile)}`,
        );
      }
      if (await pingRedis(this.port, HOST, 500)) break;
      if (Date.now() > deadline) {
        await terminate(child, 1_000);
        this.forget();
        throw new Error(
          `redis-server did not answer PING on port ${this.port} within ${READY_TIMEOUT_MS / 1000}s. Output:\n${readTail(this.logFile)}`,
        );
      }
      await sleep(25);
    }
    this.log(`redis: started redis-server pid ${String(pid)} on ${this.url} in ${Date.now() - started}ms`);
  }

  private forget(): void {
    this.child = null;
    this.unregisterExit?.();
    this.unregisterExit = null;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    this.forget();
    await terminate(child);
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.log(`redis: stopped redis-server on port ${this.port}`);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

class ExternalRedis implements RedisHandle {
  readonly owned = false;
  constructor(
    readonly url: string,
    readonly port: number,
  ) {}
  async stop(): Promise<void> {
    // not ours: never stop, flush or reconfigure it
  }
  async restart(): Promise<void> {
    throw new Error(`cannot restart Redis at ${this.url}: it was not started by this process (owned=false)`);
  }
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisHandle> {
  const mode = opts.mode ?? 'test';
  const log = opts.log ?? ((): void => {});

  const envUrl = process.env.REDIS_URL;
  if (envUrl !== undefined && envUrl !== '') {
    let port = DEMO_PORT;
    try {
      const parsed = new URL(envUrl);
      if (parsed.port !== '') port = Number(parsed.port);
    } catch {
      throw new Error(`REDIS_URL is not a valid URL: ${envUrl}`);
    }
    log(`redis: using REDIS_URL (${envUrl})`);
    return new ExternalRedis(envUrl, port);
  }

  let port: number | null = null;
  if (mode === 'demo') {
    if (await pingRedis(DEMO_PORT, HOST, 300)) {
      const url = `redis://${HOST}:${DEMO_PORT}`;
      log(`redis: using the Redis already running on ${url}`);
      return new ExternalRedis(url, DEMO_PORT);
    }
    if (await isPortFree(DEMO_PORT)) port = DEMO_PORT;
  }

  const binary = findRedisServer();
  if (binary === null) throw new Error(NO_REDIS_MESSAGE);

  await sweepStaleTempDirs({ prefix: TEMP_PREFIX, comm: 'redis-server', signal: 'SIGTERM', log: (m) => log(`redis: ${m}`) });
  port ??= await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${TEMP_PREFIX}${port}-`));
  const handle = new SpawnedRedis(port, binary, dir, log);
  try {
    await handle.start();
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return handle;
}
