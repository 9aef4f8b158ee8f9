import { cdcApplyQueue } from '../../queues/cdc.js';
import { dualWriteQueue, tableSyncQueue } from '../../queues/dual-write.js';
import type { ActorFactory } from '../factory.js';
import { dualWriterActor, DUAL_WRITER } from './actor.js';
import { loadDualWriterConfig, MAX_SYNC_BATCH_SIZE, normalizeTable, type DualWriterConfig } from './config.js';
import { dataSyncStatus } from './status.js';
import { DualWrite, type DualWriteOptions, type PrimaryKey } from './dual-write.js';
import type { RuntimeServices } from '../../runtime/index.js';

export { DUAL_WRITER, DUCKDB_WRITER_LEASE, writerReportKey, type WriterReport } from './actor.js';
export { loadDualWriterConfig, normalizeTable, MAX_SYNC_BATCH_SIZE, CONSISTENCY_LEVELS, SYNC_STRATEGIES, type DualWriterConfig, type ConsistencyLevel, type SyncStrategy } from './config.js';
export { DualWrite, resolveStrategy, type DualWriteOptions, type DualWriteResult, type PrimaryKey } from './dual-write.js';
export { dataSyncStatus } from './status.js';
export { copyTable, mapColumn, pgArrayToJson } from './pg-types.js';
export { reduceBatch } from './reduce.js';
export { DuckWriter } from './writer.js';
export { CdcApplier, readAppliedLsn } from './cdc-apply.js';
export { dualWriterActor } from './actor.js';

export function dualWriterFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory & { config(): DualWriterConfig; dualWrite(services: RuntimeServices): DualWrite } {
  let config: DualWriterConfig | undefined;
  const cfg = () => (config ??= loadDualWriterConfig(env));
  // One API object per process (it owns a QueueEvents connection), closed with the extension.
  const made = new Map<RuntimeServices, DualWrite>();
  return {
    name: DUAL_WRITER,
    queues: [cdcApplyQueue, dualWriteQueue, tableSyncQueue],
    enabled: () => cfg().enabled,
    create: () => dualWriterActor(cfg()),
    extension: () => ({
      stats: [{ name: 'dualWrite', collect: (services) => dataSyncStatus(services, cfg()) }],
      close: async () => {
        await Promise.all([...made.values()].map((d) => d.close()));
        made.clear();
      },
    }),
    config: cfg,
    dualWrite: (services) => {
      let d = made.get(services);
      if (!d) made.set(services, (d = new DualWrite(services, cfg())));
      return d;
    },
  };
}

/** What http/routes/data-sync.ts needs, bound to this process (structurally its DataSyncDeps). */
export function dataSyncDeps(services: RuntimeServices, config: DualWriterConfig, dualWrite: DualWrite) {
  return {
    tables: config.tables,
    defaultBatchSize: config.batchSize,
    maxBatchSize: MAX_SYNC_BATCH_SIZE,
    updatedAtColumn: config.updatedAtColumn,
    normalizeTable,
    status: () => dataSyncStatus(services, config),
    columns: async (table: string) => (await dualWrite.relation(table)).columns.map((c) => c.name),
    write: (kind: 'create' | 'update' | 'delete', table: string, primaryKey: PrimaryKey | undefined, data: Record<string, unknown>, opts: DualWriteOptions) =>
      kind === 'create' ? dualWrite.create(table, primaryKey, data, opts) : kind === 'update' ? dualWrite.update(table, primaryKey as PrimaryKey, data, opts) : dualWrite.delete(table, primaryKey as PrimaryKey, data, opts),
  };
}
