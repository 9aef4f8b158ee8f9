import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface LogLine {
  msg?: string;
  level?: string;
  time?: string;
  [key: string]: unknown;
}

export interface Child {
  proc: ChildProcess;
  pid: number;
  lines: LogLine[];
  /** Raw stderr, for failure messages. */
  stderr(): string;
  /** Resolves with the first log line matching, or rejects after timeoutMs. */
  waitFor(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

const FIXTURE = fileURLToPath(new URL('../fixtures/process.ts', import.meta.url));
const CLI = fileURLToPath(new URL('../../cli/main.ts', import.meta.url));

/** Starts test/fixtures/process.ts as a real process with its own environment. */
export function startFixture(scenario: string, env: Record<string, string>): Child {
  return startTs(FIXTURE, [scenario], env);
}

/** Starts the real CLI (`concord <args>`), e.g. `start --role worker`, as a process of its own. */
export function startConcord(args: readonly string[], env: Record<string, string>): Child {
  return startTs(CLI, args, env);
}

/** Starts a TypeScript script of the repository (e.g. `scripts/demo.ts`) as a process of its own. */
export function startScript(relativePath: string, env: Record<string, string>): Child {
  return startTs(fileURLToPath(new URL(`../../${relativePath}`, import.meta.url)), [], env);
}

function startTs(script: string, args: readonly string[], env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', AUTH_MODE: 'none', LOG_LEVEL: 'info', DUCKDB_DATABASE_PATH: ':memory:', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { msg: text };
    }
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    proc,
    pid: proc.pid!,
    lines,
    stderr: () => err,
    exited,
    kill: (signal = 'SIGKILL') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
    waitFor(match, timeoutMs = 30_000) {
      const found = lines.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${lines.slice(-15).map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${err.slice(-2000)}`));
        }, timeoutMs);
        waiters.push({
          match,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        void exited.then(() => {
          setTimeout(() => {
            clearTimeout(timer);
            reject(new Error(`process exited before a matching line; stderr:\n${err.slice(-2000)}\nlast lines:\n${lines.slice(-15).map((l) => JSON.stringify(l)).join('\n')}`));
          }, 50);
        });
      });
    },
  };
}

/** Polls `check` until it returns a value other than undefined/false, or throws after timeoutMs. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 100, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
