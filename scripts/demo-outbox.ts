import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { enqueue } from '../actors/outbox-relay/index.js';

/**
 * Demo business traffic for the outbox: every `everyMs` an order is written with
 * its `order_created` event in the same transaction. The relay delivers the events
 * to Redis Streams (or Kafka with KAFKA_BROKERS): see GET /api/v1/outbox/stats.
 */
export function runDemoOrders(databaseUrl: string, everyMs = 2_000): { stop(): Promise<void> } {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  pool.on('error', () => undefined);
  const tick = async () => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('CREATE TABLE IF NOT EXISTS demo_orders (id uuid PRIMARY KEY, customer text NOT NULL, total numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())');
      const id = randomUUID();
      const customer = `customer-${Math.floor(Math.random() * 10)}`;
      const total = (Math.random() * 200 + 5).toFixed(2);
      await client.query('INSERT INTO demo_orders (id, customer, total) VALUES ($1, $2, $3)', [id, customer, total]);
      await enqueue(client, { topic: 'demo.orders', eventType: 'order_created', aggregateId: customer, aggregateType: 'customer', payload: { order_id: id, customer, total } });
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
