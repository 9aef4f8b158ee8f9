import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { Subject } from 'rxjs';
import { defineQueue, QueueRegistry } from '../../queues/index.js';
import { createLogger, Metrics, QueueSet, RxQueueBridge, pausableFrom } from '../../runtime/index.js';
import { testServices, uniquePrefix } from '../support/services.js';
import { eventually } from '../support/child.js';

const itemsQueue = defineQueue({
  name: 'test.items',
  description: 'batches of numbered items (tests only)',
  schema: z.object({ seq: z.number().int(), items: z.array(z.object({ n: z.number().int(), pad: z.string() })) }),
});

describe('rx bridge', () => {
  let redis: Redis;
  const log = createLogger('silent');
  const metrics = new Metrics({ defaultMetrics: false });
  const newQueues = () => new QueueSet(new QueueRegistry([itemsQueue]), redis, uniquePrefix('rx'));

  beforeAll(() => {
    redis = new Redis(testServices().redisUrl, { maxRetriesPerRequest: null });
  });
  afterAll(() => redis.disconnect());

  it('moves 100k items into the queue as batches, in order', async () => {
    const queues = newQueues();
    const bridge = new RxQueueBridge<number, { n: number; pad: string }>(queues, metrics, log, {
      name: 'order',
      queue: 'test.items',
      mapItem: (n) => ({ n, pad: 'x' }),
      toJobData: (items, seq) => ({ seq, items }),
      batchSize: 1000,
      highWaterMark: 100_000,
    });
    const n = 100_000;
    function* numbers() {
      for (let i = 0; i < n; i++) yield i;
    }
    const result = await bridge.run(pausableFrom(numbers()));
    expect(result).toEqual({ items: n, batches: expect.any(Number), itemErrors: 0 });
    expect(result.batches).toBeGreaterThanOrEqual(n / 1000);

    const jobs = await queues.queue('test.items').getWaiting(0, -1);
    jobs.sort((a, b) => Number(a.id) - Number(b.id)); // ids follow the order Redis received the adds
    expect(jobs.length).toBe(result.batches);
    expect(jobs.every((j) => j.data.items.length <= 1000)).toBe(true);
    expect(jobs.map((j) => j.data.seq)).toEqual(jobs.map((_, i) => i));
    const all = jobs.flatMap((j) => j.data.items.map((it: { n: number }) => it.n));
    expect(all).toEqual(Array.from({ length: n }, (_, i) => i));
    await queues.close();
  });

  it('an item that cannot be mapped is dropped and counted; the pipeline goes on', async () => {
    const queues = newQueues();
    const dropped: number[] = [];
    const bridge = new RxQueueBridge<number, { n: number; pad: string }>(queues, metrics, log, {
      name: 'errors',
      queue: 'test.items',
      mapItem: (n) => {
        if (n % 10 === 3) throw new Error(`bad item ${n}`);
        return { n, pad: '' };
      },
      onItemError: (n) => dropped.push(n),
      toJobData: (items, seq) => ({ seq, items }),
      batchSize: 7,
    });
    const source = new Subject<number>();
    const done = bridge.run(source);
    for (let i = 0; i < 100; i++) source.next(i);
    source.complete();
    const result = await done;
    expect(result.itemErrors).toBe(10);
    expect(result.items).toBe(90);
    expect(dropped).toEqual([3, 13, 23, 33, 43, 53, 63, 73, 83, 93]);
    await queues.close();
  });

  it('pauses the source above the high-water mark, keeps memory bounded, resumes when drained', async () => {
    const queues = newQueues();
    const highWaterMark = 20;
    const bridge = new RxQueueBridge<number, { n: number; pad: string }>(queues, metrics, log, {
      name: 'pause',
      queue: 'test.items',
      mapItem: (n) => ({ n, pad: 'y'.repeat(200) }),
      toJobData: (items, seq) => ({ seq, items }),
      batchSize: 500,
      highWaterMark,
      lowWaterMark: 5,
      depthPollMs: 50,
    });
    let produced = 0;
    let stop = false;
    function* endless() {
      while (!stop) yield produced++;
    }
    const running = bridge.run(pausableFrom(endless()));
    const q = queues.queue('test.items');

    await eventually(async () => bridge.stats.paused, 20_000, 20, 'bridge paused');
    if (global.gc) global.gc();
    const heapAtPause = process.memoryUsage().heapUsed;
    const producedAtPause = produced;
    await new Promise((r) => setTimeout(r, 2_000));
    // Nobody consumes: the source stays paused and barely anything more was produced.
    expect(bridge.stats.paused).toBe(true);
    const bound = bridge.options.maxBuffered + bridge.options.batchSize * bridge.options.maxInFlight;
    expect(produced - producedAtPause).toBeLessThanOrEqual(bound);
    const waiting = await q.getWaitingCount();
    // It paused at the high-water mark, or earlier when its own buffer filled first (a slow Redis on
    // a busy machine); either way it stays paused while the queue is above the low-water mark.
    expect(waiting).toBeGreaterThan(bridge.options.lowWaterMark);
    expect(waiting).toBeLessThanOrEqual(highWaterMark + bridge.options.maxInFlight + Math.ceil(bridge.options.maxBuffered / bridge.options.batchSize));
    expect(process.memoryUsage().heapUsed - heapAtPause).toBeLessThan(64 * 1024 * 1024);

    // Drain the queue: the source resumes (and, still unconsumed, soon pauses again).
    const producedBeforeDrain = produced;
    await q.drain();
    await eventually(async () => produced >= producedBeforeDrain + (highWaterMark - 5) * bridge.options.batchSize, 20_000, 20, 'source resumed');
    await eventually(async () => bridge.stats.paused, 20_000, 20, 'paused again at the high-water mark');
    expect(await q.getWaitingCount()).toBeGreaterThanOrEqual(highWaterMark);
    // End the source: let it resume once more so it sees the end, then everything lands.
    stop = true;
    await q.drain();
    const result = await running;
    expect(result.items).toBe(produced);
    expect(result.itemErrors).toBe(0);
    await queues.close();
  });
});
