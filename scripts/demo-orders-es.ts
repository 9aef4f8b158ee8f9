import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { CommandBus, EventStore, Upcasters, type BaseCommand } from '../cqrs/index.js';
import { AddItemCommand, CreateOrderCommand, PayOrderCommand, ShipOrderCommand, registerOrderCommands, registerOrderUpcasters } from '../cqrs/example/order.js';

/**
 * Demo traffic for the event store: the example order domain driven through the
 * command bus. Every tick creates an order and moves each open one a step on
 * (item added, then paid, then shipped), so the `projections` actor
 * (PROJECTIONS=order-summary) has orders in every state to fold into the
 * order_summary read model. See GET /api/v1/projections and /api/v1/streams/order-<id>.
 */
type Open = { id: string; stage: 'created' | 'item_added' | 'paid'; totalCents: number };

const SKUS = ['tea', 'mug', 'kettle', 'spoon'];
const pick = () => ({ sku: SKUS[Math.floor(Math.random() * SKUS.length)]!, quantity: 1 + Math.floor(Math.random() * 3), unit_price_cents: 100 * (1 + Math.floor(Math.random() * 20)) });

export function runDemoEventSourcedOrders(databaseUrl: string, opts: { everyMs?: number; warn?: (m: string) => void } = {}): { stop(): Promise<void>; lastOrderId(): string | undefined } {
  const warn = opts.warn ?? ((m: string) => console.warn(`[demo] ${m}`));
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  pool.on('error', () => undefined);
  const commands = registerOrderCommands(new CommandBus(new EventStore(pool, { upcasters: registerOrderUpcasters(new Upcasters()) })));
  const open: Open[] = [];
  let last: string | undefined;
  let busy = false;
  let stopping = false;

  const run = async (cmd: BaseCommand): Promise<{ total_cents?: number } | undefined> => {
    const r = await commands.execute<{ total_cents?: number }>(cmd);
    if (r.status !== 'completed') warn(`${cmd.constructor.name} ${r.status}: ${r.errors.join('; ')}`);
    return r.status === 'completed' ? (r.result_data ?? {}) : undefined;
  };
  // One step per open order: created -> item added -> paid -> shipped (then it leaves the list).
  const advance = async (o: Open): Promise<boolean> => {
    if (o.stage === 'created') {
      const it = pick();
      const r = await run(new AddItemCommand(o.id, it.sku, it.quantity, it.unit_price_cents));
      if (r?.total_cents !== undefined) Object.assign(o, { stage: 'item_added', totalCents: r.total_cents });
      return r !== undefined;
    }
    if (o.stage === 'item_added') {
      const ok = (await run(new PayOrderCommand(o.id, o.totalCents))) !== undefined;
      if (ok) o.stage = 'paid';
      return ok;
    }
    await run(new ShipOrderCommand(o.id));
    return false;
  };
  const tick = async () => {
    if (busy) return; // a slow database: skip a tick rather than pile commands up
    busy = true;
    try {
      for (const o of [...open]) if (!(await advance(o))) open.splice(open.indexOf(o), 1);
      const id = randomUUID();
      const r = await run(new CreateOrderCommand(id, `customer-${Math.floor(Math.random() * 10)}`, [pick()]));
      if (r?.total_cents !== undefined) {
        open.push({ id, stage: 'created', totalCents: r.total_cents });
        last = id;
      }
    } catch (err) {
      // The database going away at shutdown; anything else is worth seeing.
      if (!stopping) warn(`event-sourced order tick failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), opts.everyMs ?? 2_000);
  return {
    lastOrderId: () => last,
    async stop() {
      stopping = true;
      clearInterval(timer);
      while (busy) await new Promise((r) => setTimeout(r, 20));
      await pool.end();
    },
  };
}
