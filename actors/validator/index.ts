import { dualWriteQueue } from '../../queues/dual-write.js';
import { validateDuckQueue, validatePgQueue, validateRunQueue } from '../../queues/validate.js';
import type { RuntimeServices } from '../../runtime/index.js';
import type { ActorFactory } from '../factory.js';
import { validatorActor, VALIDATOR } from './actor.js';
import { ValidatorApi } from './api.js';
import { loadValidatorConfig, type ValidatorConfig } from './config.js';

export { VALIDATOR, SCHEDULER_ID } from './actor.js';
export { ValidatorApi } from './api.js';
export { loadValidatorConfig, normalizeTable, type ValidatorConfig, type BusinessRule } from './config.js';
export { CHECK_WEIGHTS, consistencyScore, type CheckResult } from './checks.js';
export { dataHash, compareRows, type Sides, type DiffKey, type HashOutcome } from './bisect.js';
export { pgSideWork, duckSideWork, PG_SESSION_OPTIONS, type SideResult } from './side-work.js';
export { latestTableStates, type TableState } from '../../queues/consistency-reports.js';
export { tableScoreHistory, type TableScorePoint } from './store.js';

export function validatorFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory & { config(): ValidatorConfig; api(services: RuntimeServices): ValidatorApi } {
  let config: ValidatorConfig | undefined;
  const cfg = () => (config ??= loadValidatorConfig(env));
  // One API object per process (it owns QueueEvents connections), closed with the extension.
  const made = new Map<RuntimeServices, ValidatorApi>();
  return {
    name: VALIDATOR,
    queues: [validateRunQueue, validatePgQueue, validateDuckQueue, dualWriteQueue],
    enabled: () => cfg().enabled,
    create: () => validatorActor(cfg()),
    extension: () => ({
      close: async () => {
        await Promise.all([...made.values()].map((a) => a.close()));
        made.clear();
      },
    }),
    config: cfg,
    api: (services) => {
      let a = made.get(services);
      if (!a) made.set(services, (a = new ValidatorApi(services, cfg())));
      return a;
    },
  };
}
