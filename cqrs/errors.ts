import { ConcordError, type ErrorDetails } from '../runtime/errors.js';
import type { ExpectedVersion } from './types.js';

/**
 * The stream was not at the expected version: someone else appended first.
 * Retryable: reload the aggregate and decide again (the command bus does so).
 */
export class WrongExpectedVersionError extends ConcordError {
  readonly code = 'conflict' as const;
  readonly status = 409;
  readonly retryable = true;
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedVersion,
    readonly actual: number,
  ) {
    super(`stream ${streamId}: expected version ${String(expected)}, found ${actual}`, { streamId, expected, actual });
  }
}

/** An event id was already stored in another stream: ids are global. Not retryable. */
export class EventIdConflictError extends ConcordError {
  readonly code = 'conflict' as const;
  readonly status = 409;
  readonly retryable = false;
}

/** A domain rule refused the command (an order paid twice). Not retryable. */
export class BusinessRuleViolation extends ConcordError {
  readonly code = 'conflict' as const;
  readonly status = 409;
  readonly retryable = false;
  constructor(message: string, details?: ErrorDetails) {
    super(message, details);
  }
}

/** No handler registered for a command or query type: a wiring bug. */
export class HandlerNotFoundError extends ConcordError {
  readonly code = 'internal' as const;
  readonly status = 500;
  readonly retryable = false;
}
