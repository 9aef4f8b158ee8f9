import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../runtime/errors.js';
import { zodIssues } from '../runtime/validation.js';
import { compileCondition, ConditionError } from './saga-condition.js';

/** Step names, saga types and parallel groups: they appear in job ids and metrics. */
const NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const NAME_REASON = '1 to 100 letters, digits, _ . -';

/** One step as users write it (the seed's field names). */
export const sagaStepSchema = z
  .object({
    step_name: z.string().regex(NAME, NAME_REASON),
    service_name: z.string().regex(NAME, NAME_REASON),
    action: z.string().min(1).max(200),
    /** Absent: the step has nothing to undo and is never compensated. */
    compensation_action: z.string().min(1).max(200).optional(),
    data: z.record(z.string(), z.unknown()).default({}),
    /** Consecutive steps with the same group run concurrently. */
    parallel_group: z.string().regex(NAME, NAME_REASON).optional(),
    /** A safe expression over the saga context; false skips the step. */
    condition: z
      .string()
      .max(500)
      .optional()
      .superRefine((value, ctx) => {
        if (value === undefined) return;
        try {
          compileCondition(value);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: err instanceof ConditionError ? `invalid condition: ${err.reason}` : String(err) });
        }
      }),
    /** Per attempt. @defaultValue the orchestrator's stepTimeoutMs */
    timeout_ms: z.number().int().min(1).max(86_400_000).optional(),
    /** Retries after the first attempt. @defaultValue the orchestrator's stepRetryAttempts */
    retry_attempts: z.number().int().min(0).max(100).optional(),
  })
  .strict();

export type SagaStepInput = z.input<typeof sagaStepSchema>;
export type SagaStep = z.output<typeof sagaStepSchema>;

export const sagaStepsSchema = z
  .array(sagaStepSchema)
  .min(1)
  .max(100)
  .superRefine((steps, ctx) => {
    const seen = new Map<string, number>();
    steps.forEach((s, i) => {
      if (seen.has(s.step_name)) ctx.addIssue({ code: 'custom', path: [i, 'step_name'], message: `duplicate step_name ${s.step_name} (also step ${seen.get(s.step_name)})` });
      seen.set(s.step_name, i);
    });
    // A group must be one run of consecutive steps: the saga waits for the whole group.
    const closed = new Set<string>();
    steps.forEach((s, i) => {
      const prev = steps[i - 1]?.parallel_group;
      if (prev !== undefined && prev !== s.parallel_group) closed.add(prev);
      if (s.parallel_group !== undefined && closed.has(s.parallel_group)) {
        ctx.addIssue({ code: 'custom', path: [i, 'parallel_group'], message: `parallel_group ${s.parallel_group} must be consecutive steps` });
      }
    });
  });

export const sagaTypeSchema = z.string().regex(NAME, NAME_REASON);

/** Validates steps or throws a 400 naming each bad field (`steps.2.condition`, ...). */
export function parseSagaSteps(input: unknown, root = 'steps'): SagaStep[] {
  const r = sagaStepsSchema.safeParse(input);
  if (!r.success) throw new ValidationError('invalid saga steps', zodIssues(r.error, root));
  return r.data;
}

/** Steps grouped into stages run one after another; a stage is one step or one parallel group. */
export function sagaStages(steps: readonly SagaStep[]): string[][] {
  const stages: string[][] = [];
  steps.forEach((s, i) => {
    const prev = steps[i - 1];
    if (i > 0 && s.parallel_group !== undefined && prev!.parallel_group === s.parallel_group) stages[stages.length - 1]!.push(s.step_name);
    else stages.push([s.step_name]);
  });
  return stages;
}

const DIGEST_PREFIX = 'sha256:';

/** A version for steps given inline (not those of a defined type): a digest of their definition. */
export function stepsDigest(steps: readonly SagaStep[]): string {
  return DIGEST_PREFIX + createHash('sha256').update(JSON.stringify(steps)).digest('hex').slice(0, 16);
}

/** Whether a recorded version is an inline digest (reserved: defineSaga refuses such versions). */
export function isDigest(version: string): boolean {
  return version.startsWith(DIGEST_PREFIX);
}
