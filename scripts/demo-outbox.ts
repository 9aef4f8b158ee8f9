import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { enqueue } from '../actors/outbox-relay/index.js';

/**
 * Demo business traffic for the outbox: every `everyMs` an order is written with
 * its `order_created` event in the same transaction. The relay delivers the events
 * to Redis Streams (or Kafka with KAFKA_BROKERS): see GET /api/v1/outbox/stats.
 */
const ORDERS_TABLE = 'CREATE TABLE IF NOT EXISTS demo_orders (id uuid PRIMARY KEY, customer text NOT NULL, total numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())';

/** The demo's business table; created before the CDC reader starts, which copies it into DuckDB. */
export async function createDemoOrdersTable(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(ORDERS_TABLE);
  } finally {
    await client.end();
  }
}

/**
 * Also, so the DuckDB copy has more than inserts to follow, every tick raises the
 * total of a recent order and every fifth tick deletes the oldest one.
 */
export function runDemoOrders(databaseUrl: string, everyMs = 2_000): { stop(): Promise<void> } {
  let ticks = 0;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  pool.on('error', () => undefined);
  const tick = async () => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(ORDERS_TABLE);
      const id = randomUUID();
      const customer = `customer-${Math.floor(Math.random() * 10)}`;
      const total = (Math.random() * 200 + 5).toFixed(2);
      await client.query('INSERT INTO demo_orders (id, customer, total) VALUES ($1, $2, $3)', [id, customer, total]);
      await enqueue(client, { topic: 'demo.orders', eventType: 'order_created', aggregateId: customer, aggregateType: 'customer', payload: { order_id: id, customer, total } });
      await client.query('UPDATE demo_orders SET total = total + 1 WHERE id = (SELECT id FROM demo_orders ORDER BY created_at DESC OFFSET 1 LIMIT 1)');
      if (++ticks % 5 === 0) await client.query('DELETE FROM demo_orders WHERE id = (SELECT id FROM demo_orders ORDER BY created_at LIMIT 1)');
      await client.query('COMMIT');
    } catch {
      await client.query('ROLLBACK').catch(() => undefined);
    } finally {
      client.release();
    }
  };
  const timer = setInterval(() => void tick(), everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await pool.end();
    },
  };
}
