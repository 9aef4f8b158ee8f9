import { ConfigError } from './errors.js';

const TABLE = /^(?:([a-z_][a-z0-9_$]{0,62})\.)?([a-z_][a-z0-9_$]{0,62})$/;

/** `users` → `public.users`; null when not a plain (lower-case, unquoted) identifier. */
export function qualifiedTable(name: string): string | null {
  const m = TABLE.exec(name.trim());
  return m ? `${m[1] ?? 'public'}.${m[2]!}` : null;
}

type Problem = { variable: string; value: string | undefined; expected: string };

/**
 * Reads a capability's variables from the environment, collecting every problem
 * so one start reports them all (DESIGN rule 9); `done()` throws them as a
 * ConfigError naming each variable, its value and what was expected.
 */
export class EnvReader {
  private readonly problems: Problem[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  raw(name: string): string | undefined {
    const v = this.env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const raw = this.raw(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      this.problem(name, raw, `an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }

  /** true/false, yes/no, on/off, 1/0; `fallback` when unset. */
  bool(name: string, fallback: boolean): boolean {
    const raw = this.raw(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    this.problem(name, this.env[name], 'true or false');
    return fallback;
  }

  oneOf<const T extends readonly string[]>(name: string, values: T, fallback: T[number]): T[number] {
    const raw = this.raw(name);
    if (raw === undefined) return fallback;
    if ((values as readonly string[]).includes(raw)) return raw;
    this.problem(name, raw, values.join(' or '));
    return fallback;
  }

  /**
   * Comma-separated PostgreSQL table names (`users`, `analytics.events`), each as
   * `schema.table` (`public` by default), without repeats; undefined when unset.
   */
  tables(name: string): string[] | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    const out: string[] = [];
    for (const part of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
      const t = qualifiedTable(part);
      if (t === null) this.problem(name, raw, `comma-separated table names like users or analytics.events (got ${JSON.stringify(part)})`);
      else if (!out.includes(t)) out.push(t);
    }
    return out;
  }

  /** A URL whose scheme is one of `protocols` (e.g. 'postgres:'). */
  url(name: string, protocols: readonly string[]): string | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    let ok = false;
    try {
      ok = protocols.includes(new URL(raw).protocol);
    } catch {
      ok = false;
    }
    if (!ok) this.problem(name, raw, `a URL starting with ${protocols.join(' or ')}`);
    return raw;
  }

  problem(variable: string, value: string | undefined, expected: string): void {
    this.problems.push({ variable, value, expected });
  }

  done(): void {
    if (this.problems.length > 0) throw new ConfigError(this.problems);
  }
}
