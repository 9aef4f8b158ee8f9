import { cdcApplyQueue } from '../../queues/cdc.js';
import { createPgPool, type CapabilityExtension } from '../../runtime/index.js';
import type { ActorFactory } from '../factory.js';
import { cdcReaderActor, CDC_READER } from './actor.js';
import { loadCdcConfig, type CdcConfig } from './config.js';
import { collectCdcStatus } from './status.js';

export { CDC_READER } from './actor.js';
export { loadCdcConfig, normalizeTable, type CdcConfig } from './config.js';
export { collectCdcStatus, readerStatusKey, type ReaderStatus } from './status.js';
export { CdcSetupError } from './setup.js';

/** The `cdc` stats section, for every process where CDC is enabled. */
function cdcExtension(config: CdcConfig, databaseUrl: string): CapabilityExtension {
  const pool = createPgPool(databaseUrl, 2);
  return {
    stats: [{ name: 'cdc', collect: (services) => collectCdcStatus(pool, services.redis, services.config.queuePrefix, config) }],
    async close() {
      await pool.end().catch(() => undefined);
    },
  };
}

export function cdcReaderFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory & { config(): CdcConfig } {
  let config: CdcConfig | undefined;
  const cfg = () => (config ??= loadCdcConfig(env));
  return {
    name: CDC_READER,
    queues: [cdcApplyQueue],
    enabled: () => cfg().enabled,
    create: () => cdcReaderActor(cfg()),
    extension: () => cdcExtension(cfg(), env.DATABASE_URL!),
    config: cfg,
  };
}
