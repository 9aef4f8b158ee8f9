import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sagaStepQueue } from '../../queues/index.js';
import type { Actor, ActorContext } from '../../runtime/index.js';
import type { SagaConfig } from './config.js';
import { SagaOrchestrator } from './orchestrator.js';

export const SAGA_COORDINATOR = 'saga-coordinator';

/** What SAGA_HANDLERS_MODULE exports (default export or `register`). */
export type RegisterSagaHandlers = (orchestrator: SagaOrchestrator) => void | Promise<void>;

async function loadHandlers(path: string): Promise<RegisterSagaHandlers> {
  const mod = (await import(pathToFileURL(resolve(path)).href)) as { default?: unknown; register?: unknown };
  const register = mod.register ?? mod.default;
  if (typeof register !== 'function') throw new Error(`SAGA_HANDLERS_MODULE=${path}: expected a default export or \`register\` function (orchestrator) => void`);
  return register as RegisterSagaHandlers;
}

/**
 * The coordinator in `concord start`: an orchestrator on the process's connections,
 * running the step handlers that SAGA_HANDLERS_MODULE registers. Without that module a
 * process has no handlers, so it takes no step jobs (it would only fail them).
 */
export function sagaCoordinatorActor(config: SagaConfig): Actor {
  let orchestrator: SagaOrchestrator | undefined;
  return {
    name: SAGA_COORDINATOR,
    spec: { restart: 'permanent', shutdownMs: 15_000 },
    async start(ctx: ActorContext) {
      const s = ctx.services;
      s.registry.register(sagaStepQueue);
      if (!config.handlersModule) {
        ctx.log.warn('SAGA_HANDLERS_MODULE is not set: no saga step handlers here, so this process runs no saga steps');
        return;
      }
      const { enabled: _e, handlersModule: _h, ...tuning } = config;
      const o = new SagaOrchestrator('concord', {
        ...tuning,
        databaseUrl: s.config.databaseUrl!,
        connection: s.redis,
        workerConnection: s.workerConnection,
        prefix: s.config.queuePrefix,
        log: ctx.log,
        metrics: s.metrics,
        processId: s.processId,
      });
      try {
        await (await loadHandlers(config.handlersModule))(o);
        await o.start({ workerCount: config.workerCount });
      } catch (err) {
        await o.stop(1000);
        throw err;
      }
      orchestrator = o;
    },
    async stop(timeoutMs: number) {
      const o = orchestrator;
      orchestrator = undefined;
      await o?.stop(timeoutMs);
    },
    describe: () => orchestrator?.describe() ?? { handlers: false },
  };
}
