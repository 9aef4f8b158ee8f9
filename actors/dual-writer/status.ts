import { cdcApplyQueue } from '../../queues/cdc.js';
import { dualWriteQueue, tableSyncQueue } from '../../queues/dual-write.js';
import { errorMessage, type RuntimeServices } from '../../runtime/index.js';
import { writerReportKey, type WriterReport } from './actor.js';
import type { DualWriterConfig } from './config.js';
import { opCounts } from './ops-log.js';

/** The `dualWrite` stats section and GET /sync/status: config, the holder's report, queues, the operation log, recent syncs. */
export async function dataSyncStatus(services: RuntimeServices, config: DualWriterConfig) {
  const queue = (name: string) => services.queues.queue(name);
  const [raw, legs, cdc, syncCounts, recent, ops] = await Promise.all([
    services.redis.get(writerReportKey(services.config.queuePrefix)),
    queue(dualWriteQueue.name).getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed'),
    queue(cdcApplyQueue.name).getJobCounts('waiting', 'active', 'delayed', 'failed'),
    queue(tableSyncQueue.name).getJobCounts('waiting', 'active', 'failed'),
    queue(tableSyncQueue.name).getJobs(['active', 'waiting', 'completed', 'failed'], 0, 9),
    config.enabled ? opCounts(services.pg()).catch((err: unknown) => ({ error: errorMessage(err) })) : Promise.resolve(undefined),
  ]);
  const writer = raw ? (JSON.parse(raw) as WriterReport) : undefined;
  const dlq = (name: string) => services.queues.queue(name, { dlq: true }).getWaitingCount();
  const [legsDlq, cdcDlq] = await Promise.all([dlq(dualWriteQueue.name), dlq(cdcApplyQueue.name)]);
  return {
    enabled: config.enabled,
    dualWriteEnabled: config.dualWriteEnabled,
    strategy: config.strategy,
    consistencyLevel: config.consistency,
    batchSize: config.batchSize,
    maxConcurrentOperations: config.maxConcurrentOperations,
    tables: config.tables,
    writer: writer ?? { breaker: 'unknown', duckdbOpen: false, note: 'no process holds the DuckDB writer lease right now' },
    queues: {
      dualwrite: { ...legs, dlq: legsDlq },
      cdcApply: { ...cdc, dlq: cdcDlq },
      tableSync: syncCounts,
    },
    operations: ops,
    tableSyncs: await Promise.all(
      recent.filter(Boolean).map(async (j) => ({
        jobId: j.id,
        table: (j.data as { table: string }).table,
        mode: (j.data as { mode: string }).mode,
        state: await j.getState(),
        progress: j.progress,
        result: j.returnvalue ?? undefined,
        failedReason: j.failedReason || undefined,
      })),
    ),
  };
}
