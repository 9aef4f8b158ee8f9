import { QueueEvents, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { validateDuckQueue, validatePgQueue, type SideWork } from '../../queues/validate.js';
import { createRedis, DependencyError, type RuntimeServices } from '../../runtime/index.js';
import type { Sides } from './bisect.js';
import type { SideResult } from './side-work.js';

/**
 * Side work through the two side queues (PostgreSQL by any worker, DuckDB by the lease
 * holder), each call waiting for its job's result through QueueEvents. Owns one
 * blocking Redis connection per queue; `close` releases them.
 */
export class SideClient implements Sides {
  private readonly queues: { pg: Queue; duck: Queue };
  private events: Promise<{ pg: QueueEvents; duck: QueueEvents; connections: Redis[] }> | undefined;

  constructor(
    private readonly services: RuntimeServices,
    private readonly timeoutMs: number,
  ) {
    services.registry.register(validatePgQueue);
    services.registry.register(validateDuckQueue);
    this.queues = { pg: services.queues.queue(validatePgQueue.name), duck: services.queues.queue(validateDuckQueue.name) };
    // Each waiting job listens for its queue closing: hundreds wait during a bisection level.
    for (const q of Object.values(this.queues)) q.setMaxListeners(0);
  }

  pg(work: SideWork, timeoutMs = this.timeoutMs): Promise<SideResult> {
    return this.call('pg', work, timeoutMs);
  }

  duck(work: SideWork, timeoutMs = this.timeoutMs): Promise<SideResult> {
    return this.call('duck', work, timeoutMs);
  }

  private async call(side: 'pg' | 'duck', work: SideWork, timeoutMs: number): Promise<SideResult> {
    const events = await this.open();
    const job = await this.queues[side].add(work.op, work);
    try {
      return (await job.waitUntilFinished(events[side], timeoutMs)) as SideResult;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (/timed out/i.test(message)) {
        // Nobody took it in time: drop it so it does not run later for nobody.
        await job.remove().catch(() => undefined);
        const who = side === 'duck' ? 'the process holding the DuckDB lease (dual-writer with the validator actor)' : 'a validator worker';
        throw new DependencyError(`${side === 'duck' ? 'DuckDB' : 'PostgreSQL'} side of ${work.op} on ${work.table} got no answer in ${timeoutMs} ms: is ${who} running?`, { table: work.table, op: work.op });
      }
      throw err;
    }
  }

  private open(): Promise<{ pg: QueueEvents; duck: QueueEvents; connections: Redis[] }> {
    this.events ??= (async () => {
      const { redisUrl, queuePrefix: prefix } = this.services.config;
      const connections = [createRedis(redisUrl, 'worker', 'concord-validator-events'), createRedis(redisUrl, 'worker', 'concord-validator-events')];
      const pg = new QueueEvents(validatePgQueue.name, { connection: connections[0]!, prefix });
      const duck = new QueueEvents(validateDuckQueue.name, { connection: connections[1]!, prefix });
      // Every side job in flight waits with its own listeners (hundreds during a bisection level).
      for (const e of [pg, duck]) e.setMaxListeners(0);
      await Promise.all([pg.waitUntilReady(), duck.waitUntilReady()]);
      return { pg, duck, connections };
    })();
    return this.events;
  }

  async close(): Promise<void> {
    const events = await this.events?.catch(() => undefined);
    this.events = undefined;
    if (!events) return;
    await Promise.allSettled([events.pg.close(), events.duck.close()]);
    for (const c of events.connections) c.disconnect();
  }
}
