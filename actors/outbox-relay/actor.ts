import type pg from 'pg';
import { backoffDelay, createPgPool, errorMessage, type Actor, type ActorContext, type RuntimeServices } from '../../runtime/index.js';
import type { Broker } from './broker.js';
import type { OutboxConfig } from './config.js';
import { outboxMetrics, type OutboxMetrics } from './metrics.js';
import { OUTBOX_NOTIFY_CHANNEL as NOTIFY_CHANNEL } from '../../queues/index.js';
import { PARTITIONS, PARTITIONS_PER_BATCH, relayBatch } from './relay.js';

export const OUTBOX_RELAY = 'outbox-relay';
const RETENTION_EVERY_MS = 60_000;

/**
 * Delivers outbox events to the broker. Not a singleton: every worker process
 * may run it, and relays share the table's 64 partitions through advisory locks,
 * batch by batch. NOTIFY at commit wakes the loops; the polling interval is the
 * sweep for anything missed.
 */
export function outboxRelayActor(config: OutboxConfig, makeBroker: (services: RuntimeServices) => Broker): Actor {
  let running = false;
  let pool: pg.Pool | undefined;
  let listener: pg.PoolClient | undefined;
  let broker: Broker | undefined;
  let loops: Promise<void>[] = [];
  let retention: NodeJS.Timeout | undefined;
  const sleepers = new Set<() => void>();
  const wake = () => {
    for (const s of sleepers) s();
    sleepers.clear();
  };
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      sleepers.add(done);
    });

  async function loop(index: number, ctx: ActorContext, metrics: OutboxMetrics): Promise<void> {
    let start = (index * PARTITIONS_PER_BATCH) % PARTITIONS;
    let failures = 0;
    // Sleep only after an empty pass over every partition set: a woken loop must
    // find the new event whichever partition it hashed to.
    let emptyBatches = 0;
    while (running) {
      try {
        const client = await pool!.connect();
        let res;
        try {
          res = await relayBatch(client, broker!, config, metrics, ctx.log, start);
        } finally {
          client.release();
        }
        start = (start + PARTITIONS_PER_BATCH) % PARTITIONS;
        if (res.unavailable) {
          await sleep(backoffDelay(failures++, { minMs: 250, maxMs: 15_000, jitter: 0.3 }));
          continue;
        }
        failures = 0;
        if (res.published + res.failed > 0) emptyBatches = 0;
        else if (++emptyBatches >= PARTITIONS / PARTITIONS_PER_BATCH) {
          emptyBatches = 0;
          await sleep(config.pollingIntervalMs);
        }
      } catch (err) {
        ctx.log.error({ err: errorMessage(err), loop: index }, 'relay batch failed; retrying');
        await sleep(backoffDelay(failures++, { minMs: 250, maxMs: 15_000, jitter: 0.3 }));
      }
    }
  }

  async function listen(ctx: ActorContext): Promise<void> {
    try {
      listener = await pool!.connect();
      listener.on('notification', wake);
      listener.on('error', (err) => ctx.log.warn({ err: errorMessage(err) }, 'LISTEN connection lost; polling only'));
      await listener.query(`LISTEN ${NOTIFY_CHANNEL}`);
    } catch (err) {
      ctx.log.warn({ err: errorMessage(err) }, 'LISTEN failed; polling only');
    }
  }

  async function deletePublished(ctx: ActorContext): Promise<void> {
    if (config.retentionHours <= 0) return;
    try {
      const { rowCount } = await pool!.query(
        `DELETE FROM concord_outbox WHERE id IN (
           SELECT id FROM concord_outbox WHERE status = 'published' AND published_at < now() - ($1::int * interval '1 hour') LIMIT 10000)`,
        [config.retentionHours],
      );
      if (rowCount) ctx.log.info({ deleted: rowCount }, 'published events past retention deleted');
    } catch (err) {
      ctx.log.warn({ err: errorMessage(err) }, 'retention delete failed');
    }
  }

  return {
    name: OUTBOX_RELAY,
    spec: { restart: 'permanent', shutdownMs: 15_000 },
    async start(ctx) {
      const { services } = ctx;
      const url = services.config.databaseUrl;
      if (!url) throw new Error('outbox relay needs DATABASE_URL');
      pool = createPgPool(url, config.concurrency + 2);
      const metrics = outboxMetrics(services.metrics.registry, () => pool!);
      broker = makeBroker(services);
      // A broker down at start is an outage like any other: the loops wait for it.
      await broker.connect().catch((err: unknown) => ctx.log.warn({ err: errorMessage(err) }, 'broker not reachable yet'));
      running = true;
      await listen(ctx);
      loops = Array.from({ length: config.concurrency }, (_, i) => loop(i, ctx, metrics));
      retention = setInterval(() => void deletePublished(ctx), RETENTION_EVERY_MS);
      retention.unref();
      ctx.log.info({ broker: broker.kind, concurrency: config.concurrency }, 'outbox relay running');
    },
    async stop() {
      running = false;
      clearInterval(retention);
      wake();
      await Promise.allSettled(loops);
      loops = [];
      listener?.release();
      listener = undefined;
      await broker?.close().catch(() => undefined);
      await pool?.end().catch(() => undefined);
      pool = undefined;
    },
    describe: () => ({ broker: broker?.kind, loops: loops.length }),
  };
}
