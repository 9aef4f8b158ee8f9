import { randomUUID } from 'node:crypto';
import type { NewEvent } from '../../cqrs/index.js';

/** An order's events as the example domain writes them (item_added at schema version 2). */
export function orderEvents(orderId: string, items: number, opts: { paid?: boolean; customer?: string } = {}): NewEvent[] {
  const events: NewEvent[] = [{ type: 'order_created', data: { order_id: orderId, customer_id: opts.customer ?? `c-${orderId}` } }];
  let total = 0;
  for (let i = 0; i < items; i++) {
    const price = 100 + ((i * 37) % 900);
    total += price;
    events.push({ id: randomUUID(), type: 'item_added', schemaVersion: 2, data: { sku: `sku-${i}`, quantity: 1, unit_price_cents: price } });
  }
  if (opts.paid) events.push({ type: 'order_paid', data: { amount_cents: total } });
  return events;
}
