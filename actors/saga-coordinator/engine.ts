import type { Job, Queue } from 'bullmq';
import type pg from 'pg';
import { compileCondition, enqueueSagaResume, isDigest, enqueueSagaSteps, sagaStages, type SagaStatus, type SagaStep, type SagaStepJob } from '../../queues/index.js';
import { backoffDelay, errorMessage, FencedError, type Logger } from '../../runtime/index.js';
import type { ServiceBreakers } from './breaker.js';
import type { SagaConfig } from './config.js';
import type { Outcome, StepHandler } from './invoke.js';
import type { SagaMetrics } from './metrics.js';
import { inlineNext, planCompensation, planForward } from './plan.js';
import { renewLeases, sagaBatchers, whyNotClaimed, writeSaga, type SagaBatchers, type StepState, type Write } from './store.js';
import { contextOf, delayJob, invokeStep, locked, stale, type Session } from './session.js';

export interface EngineDeps {
  pool: pg.Pool;
  queue: Queue;
  owner: string;
  config: Omit<SagaConfig, 'enabled' | 'handlersModule'>;
  actions: ReadonlyMap<string, StepHandler>;
  compensations: ReadonlyMap<string, StepHandler>;
  /** saga_type -> version, for types this process defines. */
  versions: ReadonlyMap<string, string>;
  metrics: SagaMetrics;
  breakers: ServiceBreakers;
  log: Logger;
}

const TERMINAL: ReadonlySet<SagaStatus> = new Set(['completed', 'compensated', 'failed']);
type StepWrite = Write['step'];

/**
 * Runs saga step jobs. A job first takes (or joins) the saga's lease in this process;
 * every change it then makes is one fenced write (store.writeSaga). Decisions come
 * from plan.ts over the step states, under a per-saga lock so the concurrent steps of
 * a parallel group decide one after another.
 */
export class SagaEngine {
  private readonly sessions = new Map<string, Session>();
  private readonly claiming = new Map<string, Promise<Session | undefined>>();
  /** Claims and writes of several sagas, due at once, go as one statement (store.sagaBatchers). */
  private readonly claims: SagaBatchers['claims'];
  private readonly writes: SagaBatchers['writes'];

  constructor(private readonly d: EngineDeps) {
    ({ claims: this.claims, writes: this.writes } = sagaBatchers(d.pool, d.owner, d.config.leaseTtlMs, d.config.pgPoolSize));
  }

  get held(): number {
    return this.sessions.size;
  }

  async handle(data: SagaStepJob, job: Job): Promise<string> {
    const s = await this.acquire(data.saga_id, job, data.kind === 'action' ? (data.step ?? null) : null);
    if (!s) return 'not-active';
    try {
      if (data.kind === 'resume') {
        await locked(s, async () => (s.closed ? stale(s) : this.settle(s, undefined, {}, true)));
        await this.runOn(s, job);
        return 'resumed';
      }
      if (!data.step || !s.defs.has(data.step)) {
        this.d.log.warn({ sagaId: s.saga.id, step: data.step }, 'job names no step of this saga; dropped');
        return 'unknown-step';
      }
      let outcome = data.kind === 'action' ? await this.action(s, data.step, job) : await this.compensation(s, data.step, job);
      outcome = (await this.runOn(s, job)) ?? outcome;
      return outcome;
    } finally {
      await this.leave(s);
    }
  }

  /**
   * Runs, in this job, the steps that writes of this job already started (see plan.inlineNext):
   * a chain of steps then costs one claim and one write per step, and no queue hop.
   */
  private async runOn(s: Session, job: Job): Promise<string | undefined> {
    let outcome: string | undefined;
    while (s.next !== undefined && !s.closed) {
      const step = s.next;
      s.next = undefined;
      outcome = await this.action(s, step, job);
    }
    return outcome;
  }

  // --- ownership --------------------------------------------------------------------------------

  private async acquire(id: string, job: Job, startStep: string | null): Promise<Session | undefined> {
    for (;;) {
      const s = this.sessions.get(id);
      if (s) {
        if (s.closing) {
          await s.closing;
          continue;
        }
        s.jobs++;
        return s;
      }
      const pending = this.claiming.get(id);
      if (pending) {
        await pending;
        continue;
      }
      const claim = this.claim(id, job, startStep);
      this.claiming.set(id, claim);
      try {
        const got = await claim;
        if (!got) return undefined;
      } finally {
        this.claiming.delete(id);
      }
    }
  }

  private async claim(id: string, job: Job, startStep: string | null): Promise<Session | undefined> {
    const { pool } = this.d;
    const saga = await this.claims.add({ id, startStep });
    if (!saga) {
      const why = await whyNotClaimed(pool, id);
      if ('done' in why) return undefined;
      // Another live process holds it: come back when its lease ends or it lets go.
      const backoff = 25 * 2 ** Math.min(job.attemptsStarted ?? 0, 7);
      await delayJob(job, Math.min(why.leaseMs + 20, backoff) + Math.random() * 20);
    }
    const s: Session = {
      saga: saga!,
      states: saga!.states,
      defs: new Map(saga!.steps.map((x) => [x.step_name, x])),
      stages: sagaStages(saga!.steps),
      jobs: 0,
      inflight: new Set(),
      inflightComp: new Set(),
      closed: false,
      closing: undefined,
      lock: Promise.resolve(),
      lost: new AbortController(),
      prestarted: new Set(saga!.started && startStep ? [startStep] : []),
      next: undefined,
    };
    this.sessions.set(id, s);
    // Sagas started with inline steps carry their own steps (version = their digest); those
    // started from a defined type must meet the same version here.
    const expected = this.d.versions.get(saga!.saga_type);
    if (expected !== undefined && !isDigest(saga!.definition_version) && expected !== saga!.definition_version) {
      const msg = `saga started under definition version ${saga!.definition_version}; this process defines ${saga!.saga_type} as ${expected}: not resumed`;
      this.d.log.warn({ sagaId: id, sagaType: saga!.saga_type, version: saga!.definition_version, expected }, msg);
      this.d.metrics.versionMismatches.inc({ saga_type: saga!.saga_type });
      s.jobs = 1;
      const undo = saga!.started && startStep ? { name: startStep, change: 'unstart' as const } : undefined;
      await this.write(s, this.base(s, { attention: 'definition_version_mismatch', lastError: msg, release: true }, undo), undefined, true);
      return undefined;
    }
    return s;
  }

  private async leave(s: Session): Promise<void> {
    s.jobs--;
    if (s.jobs > 0 || s.closed || s.closing) return;
    await locked(s, async () => {
      if (s.jobs > 0 || s.closed || s.closing) return;
      await this.write(s, this.base(s, { release: true }), undefined, true).catch((err: unknown) => this.d.log.warn({ sagaId: s.saga.id, err: errorMessage(err) }, 'lease release failed; it expires'));
    });
  }

  /** Keeps the leases of every saga this process works on; drops those it lost. */
  async renew(): Promise<void> {
    const held = [...this.sessions.values()].filter((s) => !s.closed && !s.closing);
    const kept = await renewLeases(this.d.pool, this.d.owner, held.map((s) => ({ id: s.saga.id, epoch: s.saga.epoch })), this.d.config.leaseTtlMs);
    for (const s of held) if (!kept.has(s.saga.id) && !s.closed && !s.closing) this.invalidate(s, 'lease lost');
  }

  private invalidate(s: Session, why: string): void {
    if (s.closed) return;
    s.closed = true;
    if (this.sessions.get(s.saga.id) === s) this.sessions.delete(s.saga.id);
    s.lost.abort(new FencedError(`saga ${s.saga.id}: ${why}`));
  }

  /** Gives up every lease (shutdown): another process resumes at once. */
  async releaseAll(): Promise<void> {
    for (const s of [...this.sessions.values()]) this.invalidate(s, 'process stopping');
  }

  private base(s: Session, saga: Write['saga'], step?: StepWrite): Write {
    return { sagaId: s.saga.id, epoch: s.saga.epoch, owner: this.d.owner, leaseMs: this.d.config.leaseTtlMs, step, saga };
  }

  /** One fenced write; `release` closes the session first so no job joins a lease being given up. */
  private async write(s: Session, w: Write, tx: pg.PoolClient | undefined, release: boolean) {
    let done: () => void = () => undefined;
    if (release) s.closing = new Promise<void>((r) => (done = r));
    try {
      // A write inside a handler's transaction commits with that transaction, alone.
      const res = tx ? await writeSaga(tx, w) : await this.writes.add(w);
      if (tx) await tx.query('COMMIT');
      tx?.release();
      if (release) {
        s.closed = true;
        if (this.sessions.get(s.saga.id) === s) this.sessions.delete(s.saga.id);
      }
      return res;
    } catch (err) {
      if (tx) await tx.query('ROLLBACK').then(() => tx.release(), () => tx.release(true));
      this.invalidate(s, `write failed: ${errorMessage(err)}`);
      throw err;
    } finally {
      if (release) {
        s.closing = undefined;
        done();
      }
    }
  }

  // --- decisions --------------------------------------------------------------------------------

  /**
   * Records `step` (if any), then decides what the saga needs next and writes that in the
   * same statement: a new status, a release of the lease when this job is the last one
   * this process has of the saga. Then enqueues the next steps.
   */
  private async settle(s: Session, step: StepWrite, change: { toCompensating?: { failedStep: string; error: string } }, endsJob: boolean, tx?: pg.PoolClient): Promise<void> {
    const saga: Write['saga'] = { release: false, currentStep: step?.name };
    let status = s.saga.status;
    if (change.toCompensating) {
      status = 'compensating';
      saga.failedStep = change.toCompensating.failedStep;
      saga.lastError = change.toCompensating.error;
    } else if (s.saga.cancel_requested && status === 'running') {
      status = 'compensating';
      saga.lastError = 'cancelled by request';
    }
    const plan = status === 'compensating' ? planCompensation(s.stages, s.states, s.inflight, s.inflightComp) : planForward(s.stages, s.states, s.inflight);
    if (plan.kind === 'complete') status = 'completed';
    else if (plan.kind === 'compensated') status = 'compensated';
    else if (plan.kind === 'failed') {
      status = 'failed';
      saga.failedStep = plan.step;
      saga.attention = 'compensation_failed';
      saga.lastError = `compensation of step ${plan.step} failed after its retries`;
    }
    if (status !== s.saga.status) saga.status = status;
    const terminal = TERMINAL.has(status);
    const next =
      endsJob && s.jobs === 1 && !s.closed && !s.saga.cancel_requested && status === 'running'
        ? inlineNext(plan, s.states, (step) => {
            const def = s.defs.get(step)!;
            return def.condition === undefined && this.d.actions.has(step) && !this.d.breakers.isOpen(def.service_name);
          })
        : undefined;
    saga.release = terminal || (endsJob && s.jobs === 1 && next === undefined);
    if (next !== undefined) saga.currentStep = next;
    const res = await this.write(s, { ...this.base(s, saga, step), startNext: next }, tx, saga.release);
    s.saga.status = status;
    if (next !== undefined && res.started) {
      // The write started it: the job in hand runs it next (action() finds it prestarted).
      Object.assign(s.states.get(next)!, { state: 'running', attempts: res.started.attempts, uncertain: res.started.uncertain });
      s.prestarted.add(next);
      s.next = next;
    }
    if (terminal) {
      const labels = { saga_type: s.saga.saga_type, status };
      this.d.metrics.finished.inc(labels);
      if (res.durationSeconds !== null) this.d.metrics.duration.observe(labels, res.durationSeconds);
    }
    if (plan.kind === 'run' && s.next === undefined) await enqueueSagaSteps(this.d.queue, s.saga.id, 'action', s.saga.gen, plan.steps);
    else if (plan.kind === 'compensate') await enqueueSagaSteps(this.d.queue, s.saga.id, 'compensation', s.saga.gen, plan.steps);
    if (res.cancelRequested && !s.saga.cancel_requested && status === 'running') {
      // A cancel arrived meanwhile: act on it now if we still hold the saga, else wake a resume.
      s.saga.cancel_requested = true;
      // A continued step sees the cancel when it runs: it unstarts, and the saga compensates.
      if (s.next !== undefined) return;
      if (saga.release) await enqueueSagaResume(this.d.queue, s.saga.id, `cancel-${Date.now()}`);
      else await this.settle(s, undefined, {}, false);
    }
  }

  private async action(s: Session, step: string, job: Job): Promise<string> {
    const def = s.defs.get(step)!;
    const st = s.states.get(step)!;
    const start = await locked(s, async (): Promise<'run' | 'skip' | 'wait' | 'done'> => {
      if (s.closed) return stale(s);
      // The claim may already have marked this step running (one round trip less).
      const pre = s.prestarted.delete(step);
      const unstart = async () => {
        if (!pre) return;
        await this.write(s, this.base(s, { release: false }, { name: step, change: 'unstart' }), undefined, false);
        st.state = 'pending';
        st.attempts--;
      };
      const plan = s.saga.status === 'running' && !s.saga.cancel_requested ? planForward(s.stages, s.states, s.inflight) : undefined;
      if (!plan || plan.kind !== 'run' || !plan.steps.includes(step)) {
        // Not this step's turn (a duplicate, a cancel, a compensation under way): make sure the saga moves on.
        await unstart();
        await this.settle(s, undefined, {}, true);
        return 'skip';
      }
      if (def.condition !== undefined && !compileCondition(def.condition).test(contextOf(s))) {
        if (pre) st.attempts--;
        st.state = 'skipped';
        await this.settle(s, { name: step, change: 'skipped' }, {}, true);
        return 'done';
      }
      if (this.d.breakers.isOpen(def.service_name)) {
        await unstart();
        return 'wait';
      }
      if (!pre) {
        await this.write(s, this.base(s, { release: false, currentStep: step }, { name: step, change: 'start' }), undefined, false);
        st.uncertain ||= st.state === 'running';
        st.state = 'running';
        st.attempts++;
      }
      s.inflight.add(step);
      return 'run';
    });
    if (start === 'wait') return delayJob(job, this.d.breakers.waitMs);
    if (start !== 'run') return start;
    const outcome = await invokeStep(this.d, s, def, 'action', st.attempts);
    return locked(s, async () => {
      s.inflight.delete(step);
      if (outcome.ok) {
        st.state = 'completed';
        s.saga.results = { ...s.saga.results, [step]: outcome.value ?? null };
        await this.settle(s, { name: step, change: 'completed', result: outcome.value ?? null }, {}, true, outcome.tx);
        return 'completed';
      }
      return this.actionFailed(s, def, st, outcome, job);
    });
  }

  private async actionFailed(s: Session, def: SagaStep, st: StepState, o: Extract<Outcome, { ok: false }>, job: Job): Promise<string> {
    const step = def.step_name;
    if (o.refused) {
      st.state = 'pending';
      st.attempts--;
      await this.write(s, this.base(s, { release: s.jobs === 1 }, { name: step, change: 'unstart' }), undefined, s.jobs === 1);
      return delayJob(job, this.d.breakers.waitMs);
    }
    st.uncertain ||= o.timedOut;
    const maxAttempts = (def.retry_attempts ?? this.d.config.stepRetryAttempts) + 1;
    if (st.attempts < maxAttempts) {
      st.state = 'pending';
      this.d.metrics.stepRetries.inc({ service: def.service_name, phase: 'action' });
      await this.write(s, this.base(s, { release: s.jobs === 1 }, { name: step, change: 'retry', error: o.error, uncertain: o.timedOut }), undefined, s.jobs === 1);
      return delayJob(job, this.retryDelay(st.attempts));
    }
    st.state = 'failed';
    const error = `step ${step} failed after ${st.attempts} attempt(s): ${o.error}`;
    await this.settle(s, { name: step, change: 'failed', error: o.error, uncertain: o.timedOut }, { toCompensating: { failedStep: step, error } }, true);
    return 'failed';
  }

  private async compensation(s: Session, step: string, job: Job): Promise<string> {
    const def = s.defs.get(step)!;
    const st = s.states.get(step)!;
    const start = await locked(s, async (): Promise<'run' | 'skip' | 'wait' | 'done'> => {
      if (s.closed) return stale(s);
      const plan = s.saga.status === 'compensating' ? planCompensation(s.stages, s.states, s.inflight, s.inflightComp) : undefined;
      if (!plan || plan.kind !== 'compensate' || !plan.steps.includes(step)) {
        await this.settle(s, undefined, {}, true);
        return 'skip';
      }
      if (def.compensation_action === undefined) {
        // Nothing to undo: recorded as compensated without a handler.
        st.comp_state = 'compensated';
        await this.write(s, this.base(s, { release: false }, { name: step, change: 'comp_start' }), undefined, false);
        await this.settle(s, { name: step, change: 'comp_done' }, {}, true);
        return 'done';
      }
      if (this.d.breakers.isOpen(def.service_name)) return 'wait';
      await this.write(s, this.base(s, { release: false, currentStep: step }, { name: step, change: 'comp_start' }), undefined, false);
      if (st.state === 'running') {
        st.state = 'failed';
        st.uncertain = true;
      }
      st.comp_state = 'running';
      st.compensation_attempts++;
      s.inflightComp.add(step);
      return 'run';
    });
    if (start === 'wait') return delayJob(job, this.d.breakers.waitMs);
    if (start !== 'run') return start;
    const outcome = await invokeStep(this.d, s, def, 'compensation', st.compensation_attempts);
    return locked(s, async () => {
      s.inflightComp.delete(step);
      if (outcome.ok) {
        st.comp_state = 'compensated';
        await this.settle(s, { name: step, change: 'comp_done' }, {}, true, outcome.tx);
        return 'compensated';
      }
      if (outcome.refused) {
        st.comp_state = null;
        st.compensation_attempts--;
        await this.write(s, this.base(s, { release: s.jobs === 1 }, { name: step, change: 'comp_unstart' }), undefined, s.jobs === 1);
        return delayJob(job, this.d.breakers.waitMs);
      }
      if (st.compensation_attempts < this.d.config.compensationRetryAttempts + 1) {
        st.comp_state = null;
        this.d.metrics.stepRetries.inc({ service: def.service_name, phase: 'compensation' });
        await this.write(s, this.base(s, { release: s.jobs === 1 }, { name: step, change: 'comp_retry', error: outcome.error }), undefined, s.jobs === 1);
        return delayJob(job, this.retryDelay(st.compensation_attempts));
      }
      st.comp_state = 'failed';
      this.d.log.error({ sagaId: s.saga.id, step, err: outcome.error }, 'compensation failed after its retries; saga failed, listed for an operator');
      await this.settle(s, { name: step, change: 'comp_failed', error: outcome.error }, {}, true);
      return 'compensation-failed';
    });
  }

  private retryDelay(attempts: number): number {
    return backoffDelay(attempts - 1, { minMs: this.d.config.retryDelayMs, maxMs: this.d.config.retryMaxDelayMs, jitter: 0.3 });
  }
}

