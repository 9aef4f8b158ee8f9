import { IllegalTransitionError } from './errors.js';

/** The closed set of states an actor (or the process) moves through. */
export type LifecycleState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

const ALLOWED: Readonly<Record<LifecycleState, readonly LifecycleState[]>> = {
  stopped: ['starting'],
  starting: ['running', 'failed', 'draining'],
  running: ['draining', 'failed'],
  draining: ['stopped', 'failed'],
  failed: ['starting', 'stopped'],
};

/** A state machine that throws on a transition the table does not allow. */
export class Lifecycle {
  private current: LifecycleState = 'stopped';

  constructor(
    private readonly owner: string,
    private readonly onChange?: (from: LifecycleState, to: LifecycleState) => void,
  ) {}

  get state(): LifecycleState {
    return this.current;
  }

  canMoveTo(next: LifecycleState): boolean {
    return ALLOWED[this.current].includes(next);
  }

  moveTo(next: LifecycleState): void {
    if (!this.canMoveTo(next)) {
      throw new IllegalTransitionError(`${this.owner}: illegal transition ${this.current} -> ${next}`, {
        owner: this.owner,
        from: this.current,
        to: next,
      });
    }
    const from = this.current;
    this.current = next;
    this.onChange?.(from, next);
  }
}
