/**
 * The order-summary read model: one row per order with its status, item count
 * and total, kept by a projection of the order events, and the query that reads
 * it (cached, invalidated per order by the projection).
 */
import type pg from 'pg';
import { BaseQuery, type QueryHandler, type ValidationResult } from '../buses.js';
import type { Projection } from '../projection.js';
import type { StoredEvent } from '../types.js';
import type { ItemAdded } from './order.js';

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;
const STATUS_RANK: Record<string, number> = { order_created: 1, order_paid: 2, order_shipped: 3 };

export interface OrderSummary {
  order_id: string;
  customer_id: string | null;
  status: 'created' | 'paid' | 'shipped' | 'unknown';
  item_count: number;
  total_cents: number;
  last_position: number;
}

const orderIdOf = (e: StoredEvent) => e.streamId.replace(/^order-/, '');

/**
 * @param table the read model's table (a plain identifier). @defaultValue 'order_summary'
 * The fold relies on the order's statuses only moving forward (created < paid < shipped),
 * so a batch can be summed per order and merged into the row in one statement.
 */
export function orderSummaryProjection(opts: { name?: string; table?: string; failurePolicy?: 'stop' | 'skip' } = {}): Projection {
  const table = opts.table ?? 'order_summary';
  if (!IDENT.test(table)) throw new RangeError(`order summary table ${JSON.stringify(table)}: a lower-case identifier`);
  const applyBatch = async (tx: pg.ClientBase, events: readonly StoredEvent[]) => {
    const rows = new Map<string, { customer: string | null; rank: number; items: number; total: number; position: number }>();
    for (const e of events) {
      const id = orderIdOf(e);
      const r = rows.get(id) ?? { customer: null, rank: 0, items: 0, total: 0, position: 0 };
      if (e.type === 'order_created') r.customer = (e.data as { customer_id: string }).customer_id;
      if (e.type === 'item_added') {
        const d = e.data as ItemAdded;
        if (!Number.isInteger(d.quantity) || !Number.isInteger(d.unit_price_cents)) throw new Error(`item_added at ${e.position}: quantity and unit_price_cents must be integers`);
        r.items += d.quantity;
        r.total += d.quantity * d.unit_price_cents;
      }
      r.rank = Math.max(r.rank, STATUS_RANK[e.type] ?? 0);
      r.position = e.position;
      rows.set(id, r);
    }
    const list = [...rows.entries()];
    await tx.query(
      `INSERT INTO ${table} AS s (order_id, customer_id, status_rank, item_count, total_cents, last_position)
       SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::int[], $5::bigint[], $6::bigint[])
       ON CONFLICT (order_id) DO UPDATE SET customer_id = coalesce(EXCLUDED.customer_id, s.customer_id),
         status_rank = greatest(s.status_rank, EXCLUDED.status_rank), item_count = s.item_count + EXCLUDED.item_count,
         total_cents = s.total_cents + EXCLUDED.total_cents, last_position = EXCLUDED.last_position, updated_at = now()`,
      [list.map(([id]) => id), list.map(([, r]) => r.customer), list.map(([, r]) => r.rank), list.map(([, r]) => r.items), list.map(([, r]) => r.total), list.map(([, r]) => r.position)],
    );
  };
  return {
    name: opts.name ?? 'order-summary',
    eventTypes: ['order_created', 'item_added', 'order_paid', 'order_shipped'],
    failurePolicy: opts.failurePolicy ?? 'stop',
    async setup(tx) {
      await tx.query(
        `CREATE TABLE IF NOT EXISTS ${table} (
           order_id      text PRIMARY KEY,
           customer_id   text,
           status_rank   smallint NOT NULL DEFAULT 0,
           status        text GENERATED ALWAYS AS (CASE status_rank WHEN 1 THEN 'created' WHEN 2 THEN 'paid' WHEN 3 THEN 'shipped' ELSE 'unknown' END) STORED,
           item_count    integer NOT NULL DEFAULT 0,
           total_cents   bigint NOT NULL DEFAULT 0,
           last_position bigint NOT NULL,
           updated_at    timestamptz NOT NULL DEFAULT now())`,
      );
    },
    async reset(tx) {
      await tx.query(`TRUNCATE ${table}`);
    },
    apply: (tx, event) => applyBatch(tx, [event]),
    applyBatch,
    cacheTags: (e) => [`order:${orderIdOf(e)}`],
  };
}

export class GetOrderSummaryQuery extends BaseQuery {
  constructor(readonly order_id: string) {
    super();
  }
  override validate(): ValidationResult {
    return this.order_id ? { is_valid: true, errors: [] } : { is_valid: false, errors: ['Order ID is required'] };
  }
}

export function orderSummaryQueryHandler(pool: pg.Pool, opts: { table?: string; projection?: string } = {}): QueryHandler<GetOrderSummaryQuery, OrderSummary | null> {
  const table = opts.table ?? 'order_summary';
  if (!IDENT.test(table)) throw new RangeError(`order summary table ${JSON.stringify(table)}: a lower-case identifier`);
  return {
    async handle(q) {
      const { rows } = await pool.query<OrderSummary & { last_position: string; total_cents: string }>(
        `SELECT order_id, customer_id, status, item_count, total_cents::text AS total_cents, last_position::text AS last_position FROM ${table} WHERE order_id = $1`,
        [q.order_id],
      );
      const r = rows[0];
      return r ? { ...r, total_cents: Number(r.total_cents), last_position: Number(r.last_position) } : null;
    },
    cacheKey: (q) => q.order_id,
    cacheTags: (q) => [`order:${q.order_id}`, `projection:${opts.projection ?? 'order-summary'}`],
  };
}
