import type { RuntimeServices } from './services.js';

/** A section of /api/v1/stats contributed by a capability (`sync`, `cdc`, ...). */
export interface StatsSection {
  name: string;
  collect(services: RuntimeServices): Promise<unknown>;
}

/** A dependency a capability needs, checked by /ready beside Redis, PostgreSQL and DuckDB. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<unknown>;
}

/**
 * What a capability adds to every process, api or worker, whether or not its
 * actor runs there: stats and readiness. `close` releases what they hold.
 */
export interface CapabilityExtension {
  stats?: StatsSection[];
  readiness?: ReadinessCheck[];
  close(): Promise<void>;
}
