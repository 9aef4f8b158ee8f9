import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { percentile } from './proc.js';

// The sync-events benchmark's server processes (scripts/bench/sync-events-server.ts), started
// and stopped from the benchmark, and one autocannon load run against them.

export type ServerMode = 'concord' | 'concord-api' | 'bare-insert' | 'bare-hello';
export interface Server {
  pid: number;
  port: number;
  /** Output lines at warn level or above (Concord logs JSON lines), and anything that is not JSON. */
  trouble: string[];
  stop(): Promise<void>;
}

export interface ServerOptions {
  /** Extra node arguments (e.g. --cpu-prof). */
  nodeArgs: readonly string[];
  /** Registers the stop step with the benchmark's teardown. */
  register(stop: () => Promise<void>): void;
  onSpawn?(pid: number): void;
}

export async function startServer(mode: ServerMode, env: Record<string, string>, opts: ServerOptions): Promise<Server> {
  const entry = fileURLToPath(new URL('./sync-events-server.ts', import.meta.url));
  const proc: ChildProcess = spawn(process.execPath, [...opts.nodeArgs, '--import', 'tsx', entry, mode], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  opts.onSpawn?.(proc.pid!);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const trouble: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => trouble.push(l));
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  opts.register(stop);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${mode} server: not listening within 60 s; output:\n${trouble.slice(-20).join('\n')}`)), 60_000);
    void exited.then(() => reject(new Error(`${mode} server exited (code ${proc.exitCode}); output:\n${trouble.slice(-20).join('\n')}`)));
    createInterface({ input: proc.stdout! }).on('line', (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        trouble.push(text);
        return;
      }
      if (line.bench_server === 'listening') {
        clearTimeout(timer);
        resolve(Number(line.port));
      } else if (['warn', 'error', 'fatal'].includes(String(line.level))) trouble.push(text);
    });
  });
  return { pid: proc.pid!, port, trouble, stop };
}

export interface LoadResult {
  connections: number;
  seconds: number;
  /** Responses received (autocannon neither waits for nor counts those in flight when it stops). */
  requests: number;
  ok: number;
  non2xx: number;
  errors: number;
  requestsPerS: number;
  p50: number;
  p99: number;
  max: number;
  startedAt: number;
  endedAt: number;
}


/** One autocannon run of POST /sync-events bodies from `nextBody`, with every response's latency. */
export async function load(nextBody: () => string, port: number, token: string, connections: number, seconds: number): Promise<LoadResult> {
  let latencies = new Float64Array(1 << 16);
  let n = 0;
  let ok = 0;
  const startedAt = performance.now();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections,
        pipelining: 1,
        duration: seconds,
        timeout: 10,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        requests: [{ method: 'POST', path: '/sync-events', setupRequest: (req) => ({ ...req, body: nextBody() }) }],
      },
      (err: unknown, res) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (n === latencies.length) {
        const grown = new Float64Array(n * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[n++] = responseTime;
      if (statusCode >= 200 && statusCode < 300) ok++;
    });
  });
  const endedAt = performance.now();
  const sorted = latencies.slice(0, n).sort();
  return {
    connections,
    seconds: result.duration,
    requests: n,
    ok,
    non2xx: n - ok,
    errors: result.errors,
    requestsPerS: n / result.duration,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: percentile(sorted, 1),
    startedAt,
    endedAt,
  };
}
