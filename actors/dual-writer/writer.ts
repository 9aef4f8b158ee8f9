import type { DuckDBConnection } from '@duckdb/node-api';
import { BrokenCircuitError, CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhen, type CircuitBreakerPolicy } from 'cockatiel';
import type { DuckDb } from '../../runtime/index.js';
import { newApplyCache, type ApplyCache } from './apply-plans.js';
import { CopyDriftError, ensureStateTables } from './copy-schema.js';

export { BrokenCircuitError };

export type BreakerState = 'closed' | 'open' | 'half_open' | 'isolated';
const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half_open',
  [CircuitState.Isolated]: 'isolated',
};

/**
 * DuckDB errors that say the statement or the data is wrong while DuckDB itself is
 * fine: they fail that piece of work but must not open the breaker (one poison row
 * would otherwise stop every other write).
 */
const DATA_ERROR = /^(Conversion|Constraint|Binder|Parser|Invalid Input|Not implemented|Catalog) Error/;
export function isDataError(err: unknown): boolean {
  return err instanceof CopyDriftError || err instanceof TypeError || (err instanceof Error && DATA_ERROR.test(err.message));
}

export interface WriterOptions {
  /** Opens (or returns the already open) DuckDB of this process. */
  open: () => Promise<DuckDb>;
  breakerThreshold: number;
  breakerHalfOpenMs: number;
  onBreakerState?: (state: BreakerState) => void;
}

/**
 * The one path to the DuckDB file in the lease holder: every write runs exclusively
 * (one transaction at a time on one connection) through a circuit breaker (cockatiel).
 * The breaker counts failures of DuckDB itself (cannot open the file, I/O) and, once
 * open, fails calls at once with BrokenCircuitError for `breakerHalfOpenMs`, then lets a
 * trial through. Callers turn an open breaker into queued work, never into lost work.
 */
export class DuckWriter {
  readonly breaker: CircuitBreakerPolicy;
  private tail: Promise<unknown> = Promise.resolve();
  private db: DuckDb | undefined;
  private cache: ApplyCache = newApplyCache();
  private closed = false;

  constructor(private readonly opts: WriterOptions) {
    this.breaker = circuitBreaker(
      handleWhen((err) => !isDataError(err)),
      { halfOpenAfter: opts.breakerHalfOpenMs, breaker: new ConsecutiveBreaker(opts.breakerThreshold) },
    );
    this.breaker.onStateChange((s) => opts.onBreakerState?.(STATE_NAMES[s]));
  }

  get breakerState(): BreakerState {
    return STATE_NAMES[this.breaker.state];
  }

  /** Whether DuckDB is open in this writer. */
  get isOpen(): boolean {
    return this.db !== undefined;
  }

  /**
   * Runs `work` alone on the DuckDB connection, through the breaker. A failed piece
   * of work drops the per-connection caches (a rolled-back transaction may have taken
   * a staging table or a copy-table change with it).
   */
  exclusive<T>(work: (conn: DuckDBConnection, cache: ApplyCache) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.closed) throw new Error('the DuckDB writer is closed (this process no longer holds the lease)');
      return this.breaker.execute(async () => {
        const db = await this.opts.open();
        if (db !== this.db) {
          this.db = db;
          this.cache = newApplyCache();
          await ensureStateTables(db.connection);
        }
        try {
          return await work(db.connection, this.cache);
        } catch (err) {
          this.cache = newApplyCache();
          throw err;
        }
      });
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** `work` inside BEGIN/COMMIT; ROLLBACK when it throws. */
  static async transaction<T>(conn: DuckDBConnection, work: () => Promise<T>): Promise<T> {
    await conn.run('BEGIN TRANSACTION');
    try {
      const out = await work();
      await conn.run('COMMIT');
      return out;
    } catch (err) {
      // A failed COMMIT has already rolled back, and then ROLLBACK itself fails: the first error is the one to report.
      await conn.run('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  /** Waits for the work in flight, then refuses more. */
  async close(): Promise<void> {
    this.closed = true;
    await this.tail;
    this.db = undefined;
  }
}
