import { randomUUID } from 'node:crypto';
import pg from 'pg';

/**
 * Demo data for the consistency manager: the queue and portfolio databases as two
 * databases on the demo's PostgreSQL, queue entries created and moved through their
 * statuses every few seconds, so a newcomer sees them appear in the portfolio.
 */
export async function createDemoDatabases(adminUrl: string): Promise<{ queueDbUri: string; portfolioDbUri: string }> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    for (const name of ['concord_queue', 'concord_portfolio']) {
      const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (!rowCount) await admin.query(`CREATE DATABASE ${name}`); // fixed names, not input
    }
  } finally {
    await admin.end();
  }
  const withDb = (db: string) => {
    const u = new URL(adminUrl);
    u.pathname = `/${db}`;
    return u.toString();
  };
  return { queueDbUri: withDb('concord_queue'), portfolioDbUri: withDb('concord_portfolio') };
}

const NEXT: Record<string, string> = { pending: 'processing', processing: 'completed' };

/** Every `everyMs`: a few new entries, and some existing ones moved one status forward. */
export function runDemoQueueTraffic(queueDbUri: string, everyMs = 3_000): { stop(): Promise<void> } {
  const pool = new pg.Pool({ connectionString: queueDbUri, max: 2 });
  const users = Array.from({ length: 5 }, () => randomUUID());
  const tick = async () => {
    for (const table of ['investment_queue', 'withdrawal_queue']) {
      const user = users[Math.floor(Math.random() * users.length)];
      await pool.query(`INSERT INTO ${table} (id, user_id, amount, currency) VALUES ($1, $2, $3, 'EUR')`, [randomUUID(), user, (Math.random() * 1000 + 1).toFixed(2)]);
      const { rows } = await pool.query<{ id: string; status: string }>(`SELECT id, status FROM ${table} WHERE status IN ('pending', 'processing') ORDER BY random() LIMIT 2`);
      for (const r of rows) await pool.query(`UPDATE ${table} SET status = $2 WHERE id = $1`, [r.id, NEXT[r.status]]);
    }
  };
  const timer = setInterval(() => void tick().catch(() => undefined), everyMs);
  void tick().catch(() => undefined);
  return {
    async stop() {
      clearInterval(timer);
      await pool.end();
    },
  };
}
