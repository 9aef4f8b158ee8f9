import type pg from 'pg';

/**
 * Consumer-side deduplication. Runs `handler` and records `eventId` in one
 * transaction; a redelivered event (at-least-once) finds its id recorded and is
 * skipped. Returns whether the handler ran. `client` must not be in a transaction.
 */
export async function handleOnce<T>(
  client: pg.ClientBase,
  eventId: string,
  handler: (tx: pg.ClientBase) => Promise<T>,
  consumer = 'default',
): Promise<{ handled: boolean; result?: T }> {
  await client.query('BEGIN');
  try {
    const claimed = await client.query('INSERT INTO concord_inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [consumer, eventId]);
    if (claimed.rowCount === 0) {
      await client.query('ROLLBACK');
      return { handled: false };
    }
    const result = await handler(client);
    await client.query('COMMIT');
    return { handled: true, result };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export const inbox = { handleOnce };
