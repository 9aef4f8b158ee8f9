import type { RuntimeServices } from '../../runtime/index.js';
import type { CdcText } from '../../queues/cdc.js';
import type { BreakerState } from './writer.js';

/** What the lease holder offers other code of its own process: DuckDB legs without a queue hop. */
export interface LocalLegs {
  refresh(table: string, key: CdcText[]): Promise<void>;
  breakerState(): BreakerState;
  /** When an open breaker lets the next trial through (ms since epoch). */
  retryAt(): number;
}

/** Set while this process holds the DuckDB writer lease (keyed by the process's services). */
export const localLegs = new WeakMap<RuntimeServices, LocalLegs>();
