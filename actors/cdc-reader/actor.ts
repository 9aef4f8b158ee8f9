import { cdcApplyQueue } from '../../queues/cdc.js';
import { singleton, type Actor } from '../../runtime/index.js';
import type { CdcConfig } from './config.js';
import { cdcMetrics } from './metrics.js';
import { CdcReader } from './reader.js';

export const CDC_READER = 'cdc-reader';

/**
 * The slot reader as a singleton: every worker process runs a standby, and the
 * one holding the lease `cdc-reader.<slot>` reads. When the holder dies its lease
 * expires after CDC_LEASE_TTL_MS and a standby takes over, resuming from the
 * slot's confirmed position (replays are filtered by the applier's LSN).
 */
export function cdcReaderActor(config: CdcConfig): Actor {
  return singleton(
    { name: CDC_READER, lease: `${CDC_READER}.${config.slot}`, ttlMs: config.leaseTtlMs, spec: { restart: 'permanent', intensity: 10, periodMs: 60_000, backoff: { minMs: 500, maxMs: 15_000, jitter: 0.3 }, shutdownMs: 10_000 } },
    ({ lease, epoch }) => {
      let reader: CdcReader | undefined;
      return {
        name: CDC_READER,
        async start(ctx) {
          const { services } = ctx;
          const url = services.config.databaseUrl;
          if (!url) throw new Error('cdc-reader needs DATABASE_URL');
          reader = new CdcReader({
            config,
            databaseUrl: url,
            redis: services.redis,
            prefix: services.config.queuePrefix,
            queue: services.queues.queue(cdcApplyQueue.name),
            epoch,
            fence: () => lease.check(epoch),
            log: ctx.log,
            metrics: cdcMetrics(services.metrics.registry),
            onFatal: (err) => ctx.fail(err),
          });
          try {
            await reader.start();
          } catch (err) {
            await reader.stop(1000).catch(() => undefined);
            throw err;
          }
        },
        async stop(timeoutMs) {
          await reader?.stop(timeoutMs);
          reader = undefined;
        },
        describe: () => {
          const s = reader?.status();
          return s ? { phase: s.phase, receivedLsn: s.receivedLsn, confirmedLsn: s.confirmedLsn, paused: s.paused } : {};
        },
      };
    },
  );
}
