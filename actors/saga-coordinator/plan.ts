import type { StepState } from './store.js';

/**
 * What a saga needs next, decided from its step states alone (no I/O), so every
 * decision the coordinator takes can be unit-tested and re-taken after a crash.
 * `inflight` holds the steps this process is running for the saga right now.
 */
export type Plan =
  | { kind: 'run'; steps: string[] }
  | { kind: 'complete' }
  | { kind: 'compensate'; steps: string[] }
  | { kind: 'compensated' }
  | { kind: 'failed'; step: string }
  /** Work of this process is still in flight; whoever finishes it decides again. */
  | { kind: 'wait' };

const DONE = new Set(['completed', 'skipped']);

export function planForward(stages: readonly string[][], states: ReadonlyMap<string, StepState>, inflight: ReadonlySet<string>): Plan {
  for (const stage of stages) {
    const open = stage.filter((s) => !DONE.has(states.get(s)!.state));
    if (open.length === 0) continue;
    const runnable = open.filter((s) => !inflight.has(s) && ['pending', 'running'].includes(states.get(s)!.state));
    return runnable.length > 0 ? { kind: 'run', steps: runnable } : { kind: 'wait' };
  }
  return { kind: 'complete' };
}

/** A step that completed, or whose attempt may have acted (timed out, abandoned), is undone. */
export function needsCompensation(s: StepState): boolean {
  return s.comp_state !== 'compensated' && (s.state === 'completed' || s.uncertain || s.state === 'running');
}

/**
 * Compensation goes stage by stage in reverse; a parallel group's steps are undone
 * together. It waits while this process still runs an action of the saga: that
 * action's outcome decides whether it too needs undoing.
 */
export function planCompensation(
  stages: readonly string[][],
  states: ReadonlyMap<string, StepState>,
  inflightActions: ReadonlySet<string>,
  inflightCompensations: ReadonlySet<string>,
): Plan {
  if (inflightActions.size > 0) return { kind: 'wait' };
  for (let i = stages.length - 1; i >= 0; i--) {
    const open = stages[i]!.filter((s) => needsCompensation(states.get(s)!));
    if (open.length === 0) continue;
    const failed = open.find((s) => states.get(s)!.comp_state === 'failed');
    // Siblings of a compensation that failed for good are still undone (and recorded) first.
    const runnable = open.filter((s) => !inflightCompensations.has(s) && states.get(s)!.comp_state !== 'failed');
    if (runnable.length > 0) return { kind: 'compensate', steps: runnable };
    if (open.some((s) => inflightCompensations.has(s))) return { kind: 'wait' };
    return { kind: 'failed', step: failed! };
  }
  return { kind: 'compensated' };
}

/**
 * The step a job that just moved a running saga forward may run itself, instead of a
 * queue hop and a new claim: the plan runs exactly one step, still pending, and
 * `runsHere` says this process can run it now (handler here, no condition, breaker closed).
 * Parallel groups, conditions and compensations go through the queue.
 */
export function inlineNext(plan: Plan, states: ReadonlyMap<string, StepState>, runsHere: (step: string) => boolean): string | undefined {
  if (plan.kind !== 'run' || plan.steps.length !== 1) return undefined;
  const step = plan.steps[0]!;
  return states.get(step)!.state === 'pending' && runsHere(step) ? step : undefined;
}
