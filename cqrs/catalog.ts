import { registerOrderUpcasters } from './example/order.js';
import { orderSummaryProjection } from './example/order-summary.js';
import { checkProjection, type Projection } from './projection.js';
import type { Upcasters } from './upcasters.js';

export interface CatalogEntry {
  make(): Projection;
  /** Upcasters the projection's events need on read. */
  upcasters?(u: Upcasters): void;
}

/**
 * Projections the `projections` actor can run, by name (`PROJECTIONS=a,b`).
 * An application embedding Concord registers its own before starting the
 * process; the example domain's `order-summary` is always there.
 */
const catalog = new Map<string, CatalogEntry>([['order-summary', { make: () => orderSummaryProjection(), upcasters: registerOrderUpcasters }]]);

export function registerProjection(name: string, entry: CatalogEntry): void {
  if (catalog.has(name)) throw new Error(`projection ${name} is already registered`);
  checkProjection({ ...entry.make(), name });
  catalog.set(name, entry);
}

export function projectionCatalog(): ReadonlyMap<string, CatalogEntry> {
  return catalog;
}
