export interface BackoffOptions {
  /** First delay. @defaultValue 200 (ms) */
  minMs: number;
  /** Ceiling of the delay. @defaultValue 30000 (ms) */
  maxMs: number;
  /** Fraction of the delay that is randomised, 0..1. @defaultValue 0.2 */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { minMs: 200, maxMs: 30_000, jitter: 0.2 };

/**
 * Exponential backoff with jitter: attempt 0 waits about minMs, each next attempt
 * doubles, capped at maxMs; the jitter spreads restarts of many processes apart.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(opts.maxMs, opts.minMs * 2 ** Math.max(0, attempt));
  const spread = base * opts.jitter;
  return Math.max(0, Math.round(base - spread + random() * spread));
}

export function validateBackoff(opts: BackoffOptions, owner: string): void {
  if (!(opts.minMs >= 0)) throw new RangeError(`${owner}: backoff.minMs must be >= 0, got ${opts.minMs}`);
  if (!(opts.maxMs >= opts.minMs)) throw new RangeError(`${owner}: backoff.maxMs must be >= minMs, got ${opts.maxMs}`);
  if (!(opts.jitter >= 0 && opts.jitter <= 1)) throw new RangeError(`${owner}: backoff.jitter must be in 0..1, got ${opts.jitter}`);
}
