import { interval, map } from 'rxjs';
import { z } from 'zod';
import { defineQueue } from '../queues/index.js';
import { queueActor, RxQueueBridge, type Actor, type ActorContext } from '../runtime/index.js';

/**
 * A small live workload for `npm run demo` only, so the runtime has something to
 * show before capabilities are enabled: an rx pipeline produces batches of
 * readings, an actor consumes them, and one reading in 500 (about one batch in ten) is malformed, so its batch
 * lands in the DLQ (retry or discard it from the API or Bull Board).
 */
export const demoReadings = defineQueue({
  name: 'demo.readings',
  description: 'demo: batches of sensor readings (npm run demo only)',
  schema: z.object({
    seq: z.number().int(),
    readings: z.array(z.object({ sensor: z.string().min(1), value: z.number().finite() })).min(1),
  }),
  jobOptions: { attempts: 3, backoff: { type: 'exponential', delay: 500, jitter: 0.5 } },
});

export function demoConsumer(): Actor {
  return queueActor({
    name: 'demo-consumer',
    queue: demoReadings,
    mailbox: { concurrency: 4 },
    handler: async (data, _job, log) => {
      const mean = data.readings.reduce((s, r) => s + r.value, 0) / data.readings.length;
      log.debug({ seq: data.seq, count: data.readings.length, mean }, 'readings batch');
      return { count: data.readings.length, mean };
    },
  });
}

export function demoProducer(): Actor {
  let bridge: RxQueueBridge<number, { sensor: string; value: number }> | undefined;
  return {
    name: 'demo-producer',
    async start(ctx: ActorContext) {
      const { services } = ctx;
      services.registry.register(demoReadings);
      bridge = new RxQueueBridge(services.queues, services.metrics, ctx.log, {
        name: 'demo-readings',
        queue: 'demo.readings',
        batchSize: 50,
        batchTimeMs: 1_000,
        mapItem: (i) => ({ sensor: `s${i % 7}`, value: i % 500 === 499 ? Number.NaN : Math.sin(i / 10) * 20 + 20 }),
        // NaN becomes null in JSON: the consumer's schema refuses it -> DLQ, no retries.
        toJobData: (readings, seq) => ({ seq, readings }),
      });
      bridge.run(interval(20).pipe(map((i) => i))).catch((err: unknown) => ctx.fail(err instanceof Error ? err : new Error(String(err))));
    },
    async stop() {
      bridge?.stop();
      bridge = undefined;
    },
  };
}
