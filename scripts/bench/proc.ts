import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

// CPU and memory of processes and of the machine, from Linux /proc (n/a elsewhere), shared by the
// benchmarks that report CPU per part (postgres, kafka, relay, ...) beside their throughput.

export const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** A memory field of /proc/<pid>/status (VmHWM, VmRSS) of a live process, in bytes. */
function statusBytes(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** Peak resident memory (VmHWM) of a live process, in bytes. */
export const procPeakRss = (pid: number): number | undefined => statusBytes(pid, 'VmHWM');

/** Resident memory now (VmRSS) of a live process, in bytes. */
export const procRss = (pid: number): number | undefined => statusBytes(pid, 'VmRSS');

/** Parent pid, CPU seconds of all its threads, and of the children it has reaped. */
export function procStat(pid: number): { ppid: number; cpu: number; reaped: number } | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / clockTicks, reaped: (Number(f[13]) + Number(f[14])) / clockTicks };
  } catch {
    return undefined;
  }
}

/** A process and its children (live ones, and those it has reaped), in CPU seconds. */
export function treeCpu(root: number): number {
  const top = procStat(root);
  if (!top) return NaN;
  let total = top.cpu + top.reaped;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = procStat(Number(entry));
    if (s && s.ppid === root) total += s.cpu;
  }
  return total;
}

/** The machine's busy and total CPU seconds since boot (all cores). */
export function machineCpu(): { busy: number; total: number } {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((s, x) => s + x, 0);
    return { busy: (total - v[3]! - v[4]!) / clockTicks, total: total / clockTicks }; // busy: minus idle and iowait
  } catch {
    return { busy: NaN, total: NaN };
  }
}

export interface CpuSample {
  /** Machine busy / total CPU ticks. */
  busy: number;
  total: number;
  /** Per part of the benchmark: this process, and the subtree of each of its children, in ticks. */
  parts: Map<string, number>;
}

const KNOWN_COMMANDS: Readonly<Record<string, string>> = { postgres: 'postgres', java: 'kafka', 'redis-server': 'redis' };

/**
 * CPU ticks of the whole machine, and of this process's children by part: `labels` names
 * children by pid; other children are named by command (postgres, kafka, redis).
 */
export function cpuSample(labels: ReadonlyMap<number, string>, selfLabel: string): CpuSample | undefined {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((s, x) => s + x, 0);
    const children = new Map<number, number[]>();
    const ticks = new Map<number, number>();
    const comm = new Map<number, string>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue; // gone meanwhile
      }
      const pid = Number(entry);
      const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      (children.get(Number(f[1])) ?? children.set(Number(f[1]), []).get(Number(f[1]))!).push(pid);
      comm.set(pid, stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(') ')));
      // utime + stime + cutime + cstime: a reaped child's time moves into its parent's c-fields
      ticks.set(pid, Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
    }
    const subtree = (root: number) => {
      let sum = 0;
      for (const stack = [root]; stack.length > 0; ) {
        const pid = stack.pop()!;
        sum += ticks.get(pid) ?? 0;
        stack.push(...(children.get(pid) ?? []));
      }
      return sum;
    };
    const parts = new Map<string, number>([[selfLabel, ticks.get(process.pid) ?? 0]]);
    for (const child of children.get(process.pid) ?? []) {
      const label = labels.get(child) ?? KNOWN_COMMANDS[comm.get(child) ?? ''] ?? `other (${comm.get(child)})`;
      parts.set(label, (parts.get(label) ?? 0) + subtree(child));
    }
    return { busy: total - v[3]! - v[4]!, total, parts };
  } catch {
    return undefined;
  }
}

/** The q-quantile of an ascending array (nearest rank). */
export const percentile = (sorted: ArrayLike<number>, q: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;

/** Teardown steps run in reverse order, also on Ctrl-C. */
export function cleanupRegistry(note: (m: string) => void): { add(step: () => Promise<unknown>): void; run(): Promise<void> } {
  const steps: Array<() => Promise<unknown>> = [];
  const run = async () => {
    for (const c of steps.splice(0).reverse()) await c().catch((err: unknown) => note(`cleanup: ${String(err)}`));
  };
  process.once('SIGINT', () => void run().finally(() => process.exit(130)));
  return { add: (step) => steps.push(step), run };
}

/**
 * CPU seconds of a live process's threads, summed by thread name (V8's and libuv's helpers name
 * theirs; DuckDB's keep the process's name), the main thread as `main`: where a process's CPU
 * goes when it is not all JavaScript.
 */
export function threadCpu(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const tid of tasks) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(') '));
      const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      byName.set(name, (byName.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / clockTicks);
    } catch {
      // the thread ended meanwhile
    }
  }
  return byName;
}
