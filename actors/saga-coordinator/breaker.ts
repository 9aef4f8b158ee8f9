import type { CircuitBreakerPolicy } from 'cockatiel';
import { CircuitState, ConsecutiveBreaker, circuitBreaker, handleAll, BrokenCircuitError, IsolatedCircuitError } from 'cockatiel';

/**
 * One circuit breaker per service_name (cockatiel), in this process. While a circuit
 * is open (or a half-open probe is out), steps for that service wait instead of
 * spending their attempts: the coordinator delays their jobs.
 */
export class ServiceBreakers {
  private readonly byService = new Map<string, CircuitBreakerPolicy>();
  private readonly openedAt = new Map<string, number>();

  constructor(
    private readonly threshold: number,
    private readonly halfOpenAfterMs: number,
    private readonly onChange: (service: string, open: boolean) => void = () => undefined,
  ) {}

  get(service: string): CircuitBreakerPolicy {
    let b = this.byService.get(service);
    if (!b) {
      b = circuitBreaker(handleAll, { halfOpenAfter: this.halfOpenAfterMs, breaker: new ConsecutiveBreaker(this.threshold) });
      b.onStateChange((s) => {
        if (s === CircuitState.Open) this.openedAt.set(service, Date.now());
        this.onChange(service, s === CircuitState.Open || s === CircuitState.Isolated);
      });
      this.byService.set(service, b);
    }
    return b;
  }

  /**
   * Whether a call now would be refused: open and not yet due for a probe. (cockatiel
   * moves an open circuit to half-open only when a call is made, so past that time a
   * step is let through to be the probe.)
   */
  isOpen(service: string): boolean {
    const b = this.byService.get(service);
    if (b === undefined) return false;
    if (b.state === CircuitState.Isolated) return true;
    return b.state === CircuitState.Open && Date.now() < (this.openedAt.get(service) ?? 0) + this.halfOpenAfterMs;
  }

  /** How long a waiting step should sleep before looking again. */
  get waitMs(): number {
    return Math.max(50, Math.floor(this.halfOpenAfterMs / 2));
  }

  states(): Record<string, string> {
    return Object.fromEntries([...this.byService].map(([s, b]) => [s, CircuitState[b.state].toLowerCase()]));
  }
}

export function isBrokenCircuit(err: unknown): boolean {
  return err instanceof BrokenCircuitError || err instanceof IsolatedCircuitError;
}
