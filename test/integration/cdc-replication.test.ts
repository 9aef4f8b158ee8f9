import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { ReplicationConnection } from '../../actors/cdc-reader/replication.js';
import { PgoutputDecoder } from '../../actors/cdc-reader/pgoutput.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { freshDatabase } from '../support/databases.js';

const ROWS = 20_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The replication connection's read pause (CDC_READ_PAUSE_MS) against a real walsender: with
 * it on or off every change arrives, and it never ends a backpressure pause early.
 */
describe('ReplicationConnection read pause', () => {
  let dbUrl: string;
  let db: pg.Client;
  const slots: string[] = [];

  beforeAll(async () => {
    dbUrl = await freshDatabase(testServices().databaseUrl, uniquePrefix('cdc_repl').replace(/-/g, '_'));
    db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    await db.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
    await db.query('CREATE PUBLICATION p FOR TABLE t');
    for (const pause of [0, 1]) {
      const slot = `s_${pause}_${Math.random().toString(36).slice(2, 8)}`;
      await db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      slots.push(slot);
    }
    await db.query(`INSERT INTO t SELECT g, 'value ' || g FROM generate_series(1, ${ROWS}) g`);
  });
  afterAll(async () => {
    for (const s of slots) await db.query('SELECT pg_drop_replication_slot($1)', [s]).catch(() => undefined);
    await db.end();
  });

  for (const [i, pause] of [0, 1].entries()) {
    it(`reads every change with CDC_READ_PAUSE_MS=${pause}; a backpressure pause holds until resume()`, async () => {
      const conn = new ReplicationConnection(dbUrl, pause);
      await conn.connect();
      let inserts = 0;
      const decoder = new PgoutputDecoder({ begin() {}, commit() {}, relation() {}, insert: () => void inserts++, update() {}, delete() {}, truncate() {}, message() {} });
      try {
        void conn.start(slots[i]!, 'p', { data: (b, at) => decoder.decode(b, at), keepalive: () => undefined }).catch(() => undefined);
        // Backpressure as the reader applies it: pause as soon as some changes have arrived.
        for (let waited = 0; inserts === 0 && waited < 10_000; waited += 5) await sleep(5);
        conn.pause();
        await sleep(50); // what was already read is delivered
        const held = inserts;
        await sleep(300); // many read-pause periods: none may resume the socket
        expect(inserts).toBe(held);
        expect(held).toBeLessThan(ROWS);
        conn.resume();
        for (let waited = 0; inserts < ROWS && waited < 20_000; waited += 10) await sleep(10);
        expect(inserts).toBe(ROWS);
      } finally {
        await conn.end();
      }
    });
  }
});
