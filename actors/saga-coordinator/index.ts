import { sagaStepQueue } from '../../queues/index.js';
import { createPgPool, type CapabilityExtension } from '../../runtime/index.js';
import type { ActorFactory } from '../factory.js';
import { loadSagaConfig, type SagaConfig } from './config.js';
import { sagaCoordinatorActor, SAGA_COORDINATOR } from './actor.js';

export { SagaOrchestrator, type SagaOrchestratorOptions, type StartSagaInput, type SagaTuning } from './orchestrator.js';
export type { StepHandler, StepHandlerContext } from './invoke.js';
export { loadSagaConfig, DEFAULT_SAGA_CONFIG, type SagaConfig } from './config.js';
export { SAGA_COORDINATOR, type RegisterSagaHandlers } from './actor.js';

/** The `sagas` section of /api/v1/stats: sagas by status, and those waiting for an operator. */
function sagaExtension(databaseUrl: string): CapabilityExtension {
  const pool = createPgPool(databaseUrl, 1);
  return {
    stats: [
      {
        name: 'sagas',
        async collect() {
          const result = await pool
            .query<{ status: string; n: string; attention: string }>(`SELECT status, count(*) AS n, count(*) FILTER (WHERE attention IS NOT NULL) AS attention FROM sagas GROUP BY status`)
            .catch((err: { code?: string }) => {
              // An unmigrated database is worth a word in stats, not a failed stats request.
              if (err.code === '42P01') return undefined;
              throw err;
            });
          if (!result) return { error: 'the sagas table does not exist: run `concord migrate`' };
          const { rows } = result;
          const byStatus = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
          return { byStatus, needsAttention: rows.reduce((n, r) => n + Number(r.attention), 0) };
        },
      },
    ],
    close: () => pool.end(),
  };
}

export function sagaCoordinatorFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory & { config(): SagaConfig } {
  let config: SagaConfig | undefined;
  const cfg = () => (config ??= loadSagaConfig(env));
  return {
    name: SAGA_COORDINATOR,
    queues: [sagaStepQueue],
    enabled: () => cfg().enabled,
    create: () => sagaCoordinatorActor(cfg()),
    extension: () => sagaExtension(env.DATABASE_URL!),
    config: cfg,
  };
}
