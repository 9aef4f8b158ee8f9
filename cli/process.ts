import { readFileSync } from 'node:fs';
import type { Actor, CapabilityExtension, Config, Logger, Role } from '../runtime/index.js';
import { ConcordRuntime, createLogger, errorMessage } from '../runtime/index.js';
import type { QueueDefinition } from '../queues/index.js';
import { createHttpApp } from '../http/app.js';
import type { RouteSpec } from '../http/route.js';
import { listen, type HttpServer } from '../http/server.js';

export interface ProcessOptions {
  config: Config;
  role: Role;
  actors?: readonly Actor[];
  queues?: ReadonlyArray<QueueDefinition<unknown>>;
  /** Routes of enabled capabilities, built once the runtime exists. */
  routes?: (runtime: ConcordRuntime) => RouteSpec[];
  /** Stats sections and readiness checks of enabled capabilities; closed on stop. */
  extensions?: CapabilityExtension[];
  log?: Logger;
  /** What to do when an actor exceeds its restart intensity. @defaultValue exit the process with code 1 */
  onEscalate?: (actor: string, err: Error) => void;
}

export interface RunningProcess {
  runtime: ConcordRuntime;
  http: HttpServer;
  /** Stop taking work, drain, close. Resolves true when everything drained within the bound. */
  stop(timeoutMs?: number): Promise<boolean>;
}

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string; description: string };

/**
 * One Concord process: the runtime (actors in `all`/`worker`), plus HTTP: the
 * whole control plane in `all`/`api`, only health, readiness and metrics in
 * `worker` (so every process can be probed and scraped).
 */
export async function startProcess(opts: ProcessOptions): Promise<RunningProcess> {
  const log = opts.log ?? createLogger(opts.config.logLevel);
  // Filled in once started; an escalation before that simply exits.
  const started: { proc?: RunningProcess } = {};
  const runtime = new ConcordRuntime({
    config: opts.config,
    role: opts.role,
    actors: opts.actors ?? [],
    queues: opts.queues ?? [],
    log,
    onEscalate:
      opts.onEscalate ??
      ((actor, err) => {
        log.fatal({ actor, err: errorMessage(err) }, 'actor exceeded its restart intensity; exiting with code 1');
        const exit = () => process.exit(1);
        // Try to release what we hold, but never wait long: a process manager restarts us.
        void Promise.race([started.proc?.stop(Math.min(5_000, opts.config.shutdownTimeoutMs)), new Promise((r) => setTimeout(r, 5_000))]).finally(exit);
      }),
  });
  const { app } = createHttpApp(runtime, {
    info: { name: pkg.name, version: pkg.version, description: pkg.description },
    surface: opts.role === 'worker' ? 'ops' : 'control',
    routes: opts.routes?.(runtime),
    stats: (opts.extensions ?? []).flatMap((e) => e.stats ?? []),
    readiness: (opts.extensions ?? []).flatMap((e) => e.readiness ?? []),
  });
  await runtime.start();
  const http = await listen(app, opts.config.port, opts.config.host);
  runtime.services.log.info({ url: http.url, role: opts.role }, 'listening');

  let stopping: Promise<boolean> | undefined;
  const running: RunningProcess = {
    runtime,
    http,
    stop(timeoutMs = opts.config.shutdownTimeoutMs) {
      stopping ??= (async () => {
        const deadline = new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref());
        const orderly = (async () => {
          await http.close(Math.min(5_000, timeoutMs));
          await runtime.stop();
          await Promise.allSettled((opts.extensions ?? []).map((e) => e.close()));
          return true;
        })();
        return Promise.race([orderly, deadline]);
      })();
      return stopping;
    },
  };
  started.proc = running;
  return running;
}

/**
 * SIGTERM/SIGINT: stop taking work, drain in-flight jobs, close connections and
 * exit 0 within the configured bound (1 if the bound was hit). A second signal
 * exits at once.
 */
export function exitOnSignals(proc: RunningProcess, log: Logger, timeoutMs: number): void {
  let received = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    received = true;
    log.info({ signal, timeoutMs }, 'shutting down');
    void proc.stop(timeoutMs).then(
      (clean) => {
        log.info({ clean }, clean ? 'shutdown complete' : 'shutdown bound reached; exiting anyway');
        process.exit(clean ? 0 : 1);
      },
      (err: unknown) => {
        log.error({ err: errorMessage(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
