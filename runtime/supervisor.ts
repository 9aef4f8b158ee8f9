import { resolveSpec, type Actor, type ActorContext, type ActorSpec } from './actor.js';
import { backoffDelay } from './backoff.js';
import { errorMessage } from './errors.js';
import { Lifecycle, type LifecycleState } from './lifecycle.js';
import type { Logger } from './logger.js';
import type { RuntimeServices } from './services.js';

export interface ActorSnapshot {
  name: string;
  state: LifecycleState;
  restarts: number;
  lastError: string | undefined;
  /** ms since epoch of the last state change */
  since: number;
  detail: Record<string, unknown> | undefined;
}

interface Entry {
  actor: Actor;
  spec: ActorSpec;
  lifecycle: Lifecycle;
  log: Logger;
  /** Bumped on every launch; reports from an older launch are ignored. */
  generation: number;
  restarts: number;
  restartTimes: number[];
  consecutiveFailures: number;
  runningSince: number;
  since: number;
  lastError: string | undefined;
  timer: NodeJS.Timeout | undefined;
}

export interface SupervisorOptions {
  services: RuntimeServices;
  /** Called once when an actor fails more than its intensity allows; the process should exit non-zero. */
  onEscalate: (actor: string, err: Error) => void;
}

/**
 * Starts actors in order, restarts crashed ones with backoff according to their
 * spec, escalates when restarts exceed the spec's intensity within its period,
 * and stops actors in reverse order, each within its shutdown time.
 */
export class Supervisor {
  private readonly entries: Entry[];
  private stopping = false;
  private escalated = false;

  constructor(
    actors: readonly Actor[],
    private readonly opts: SupervisorOptions,
  ) {
    const names = new Set<string>();
    this.entries = actors.map((actor) => {
      if (names.has(actor.name)) throw new RangeError(`actor ${actor.name} is listed twice`);
      names.add(actor.name);
      const log = opts.services.log.child({ actor: actor.name });
      const entry: Entry = {
        actor,
        spec: resolveSpec(actor),
        log,
        lifecycle: new Lifecycle(`actor ${actor.name}`, (from, to) => {
          entry.since = Date.now();
          const gauge = opts.services.metrics.actorState;
          gauge.set({ actor: actor.name, state: from }, 0);
          gauge.set({ actor: actor.name, state: to }, 1);
          log.info({ from, to }, 'actor state');
        }),
        generation: 0,
        restarts: 0,
        restartTimes: [],
        consecutiveFailures: 0,
        runningSince: 0,
        since: Date.now(),
        lastError: undefined,
        timer: undefined,
      };
      return entry;
    });
  }

  async start(): Promise<void> {
    for (const entry of this.entries) {
      if (this.stopping) return;
      await this.launch(entry);
    }
  }

  private async launch(entry: Entry): Promise<void> {
    entry.timer = undefined;
    if (this.stopping) return;
    const generation = ++entry.generation;
    entry.lifecycle.moveTo('starting');
    const current = () => generation === entry.generation && !this.stopping;
    const ctx: ActorContext = {
      name: entry.actor.name,
      log: entry.log,
      services: this.opts.services,
      fail: (err) => {
        if (current()) void this.handleExit(entry, err);
      },
      exit: () => {
        if (current()) void this.handleExit(entry, undefined);
      },
    };
    try {
      await entry.actor.start(ctx);
    } catch (err) {
      if (current()) await this.handleExit(entry, err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (!current() || entry.lifecycle.state !== 'starting') return;
    entry.lifecycle.moveTo('running');
    entry.runningSince = Date.now();
  }

  /** A crash (err set) or a normal exit of the actor's current launch. */
  private async handleExit(entry: Entry, err: Error | undefined): Promise<void> {
    const { spec, log } = entry;
    entry.generation++; // later reports from the dead launch are ignored
    if (err) {
      entry.lastError = errorMessage(err);
      log.error({ err: entry.lastError }, 'actor failed');
      entry.lifecycle.moveTo('failed');
    } else {
      log.info('actor exited normally');
      const state = entry.lifecycle.state;
      if (state === 'running' || state === 'starting') entry.lifecycle.moveTo('draining');
    }
    // Release whatever the failed launch still holds before starting a new one.
    await entry.actor.stop(spec.shutdownMs).catch((stopErr: unknown) => log.warn({ err: errorMessage(stopErr) }, 'cleanup after exit failed'));
    if (this.stopping) return;

    const restart = spec.restart === 'permanent' || (spec.restart === 'transient' && err !== undefined);
    if (!restart) {
      log.info({ restart: spec.restart, failed: err !== undefined }, 'decision: not restarted');
      if (entry.lifecycle.state !== 'stopped' && entry.lifecycle.canMoveTo('stopped')) entry.lifecycle.moveTo('stopped');
      return;
    }
    if (!err && entry.lifecycle.state === 'draining') entry.lifecycle.moveTo('stopped');

    const now = Date.now();
    if (entry.runningSince > 0 && now - entry.runningSince > spec.periodMs) entry.consecutiveFailures = 0;
    entry.restartTimes = entry.restartTimes.filter((t) => now - t < spec.periodMs);
    if (entry.restartTimes.length >= spec.intensity) {
      log.fatal({ restarts: entry.restartTimes.length, intensity: spec.intensity, periodMs: spec.periodMs }, 'decision: escalate (restart intensity exceeded)');
      if (!this.escalated) {
        this.escalated = true;
        this.opts.onEscalate(entry.actor.name, err ?? new Error(`actor ${entry.actor.name} exited too often`));
      }
      return;
    }
    const delay = backoffDelay(entry.consecutiveFailures, spec.backoff);
    entry.consecutiveFailures++;
    entry.restartTimes.push(now);
    entry.restarts++;
    this.opts.services.metrics.actorRestarts.inc({ actor: entry.actor.name });
    log.warn({ delayMs: delay, restarts: entry.restarts }, 'decision: restart after backoff');
    entry.timer = setTimeout(() => void this.launch(entry), delay);
  }

  /** Stop every actor in reverse start order, each draining within its shutdown time. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const entry of [...this.entries].reverse()) {
      clearTimeout(entry.timer);
      const state = entry.lifecycle.state;
      if (state === 'stopped') continue;
      if (state === 'failed') {
        entry.lifecycle.moveTo('stopped');
        continue;
      }
      if (state !== 'draining') entry.lifecycle.moveTo('draining');
      const started = Date.now();
      try {
        await entry.actor.stop(entry.spec.shutdownMs);
      } catch (err) {
        entry.log.warn({ err: errorMessage(err) }, 'actor stop failed');
      }
      entry.lifecycle.moveTo('stopped');
      entry.log.info({ ms: Date.now() - started }, 'actor stopped');
    }
  }

  snapshot(): ActorSnapshot[] {
    return this.entries.map((e) => ({
      name: e.actor.name,
      state: e.lifecycle.state,
      restarts: e.restarts,
      lastError: e.lastError,
      since: e.since,
      detail: e.actor.describe?.(),
    }));
  }
}
