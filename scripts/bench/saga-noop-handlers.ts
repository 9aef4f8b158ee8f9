/** SAGA_HANDLERS_MODULE of the sagas benchmark: a 3-step saga type with no-op handlers. */
import type { SagaOrchestrator } from '../../actors/saga-coordinator/index.js';

export const BENCH_STEPS = ['reserve', 'charge', 'ship'].map((step_name) => ({ step_name, service_name: `svc-${step_name}`, action: 'do', compensation_action: 'undo' }));

export default async function register(o: SagaOrchestrator): Promise<void> {
  for (const s of BENCH_STEPS) {
    o.registerStepHandler(s.step_name, () => ({ ok: true }));
    o.registerCompensationHandler(s.step_name, () => ({ undone: true }));
  }
  await o.defineSaga('bench3', { version: 'v1', steps: BENCH_STEPS });
}
