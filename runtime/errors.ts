/**
 * Named errors of the runtime. Each says whether retrying could help (`retryable`)
 * and which HTTP status it maps to at the edge (DESIGN rule 8).
 */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'dependency_unavailable'
  | 'illegal_transition'
  | 'fenced'
  | 'config_invalid'
  | 'internal';

export interface ErrorDetails {
  [key: string]: unknown;
}

export abstract class ConcordError extends Error {
  abstract readonly code: ErrorCode;
  abstract readonly status: number;
  abstract readonly retryable: boolean;
  readonly details: ErrorDetails | undefined;

  constructor(message: string, details?: ErrorDetails, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.details = details;
  }
}

/** Bad input: a field and the reason. Never retried. */
export class ValidationError extends ConcordError {
  readonly code = 'bad_request' as const;
  readonly status = 400;
  readonly retryable = false;
  constructor(
    message: string,
    readonly issues: ReadonlyArray<{ field: string; reason: string }> = [],
  ) {
    super(message, { issues });
  }
}

export class UnauthorizedError extends ConcordError {
  readonly code = 'unauthorized' as const;
  readonly status = 401;
  readonly retryable = false;
}

export class ForbiddenError extends ConcordError {
  readonly code = 'forbidden' as const;
  readonly status = 403;
  readonly retryable = false;
}

export class NotFoundError extends ConcordError {
  readonly code = 'not_found' as const;
  readonly status = 404;
  readonly retryable = false;
}

export class ConflictError extends ConcordError {
  readonly code = 'conflict' as const;
  readonly status = 409;
  readonly retryable = false;
}

/** A dependency (Redis, PostgreSQL, DuckDB, a broker) did not answer. Worth retrying. */
export class DependencyError extends ConcordError {
  readonly code = 'dependency_unavailable' as const;
  readonly status = 503;
  readonly retryable = true;
}

/** A lifecycle state machine was asked for a transition it does not allow: a bug. */
export class IllegalTransitionError extends ConcordError {
  readonly code = 'illegal_transition' as const;
  readonly status = 500;
  readonly retryable = false;
}

/** A singleton's write carried an epoch older than the lease's: the writer lost its lease. */
export class FencedError extends ConcordError {
  readonly code = 'fenced' as const;
  readonly status = 409;
  readonly retryable = false;
}

/** A configuration value is wrong; the process must not start. */
export class ConfigError extends ConcordError {
  readonly code = 'config_invalid' as const;
  readonly status = 500;
  readonly retryable = false;
  constructor(readonly problems: ReadonlyArray<{ variable: string; value: string | undefined; expected: string }>) {
    super(
      'Invalid configuration:\n' +
        problems
          .map((p) => `  ${p.variable}=${p.value === undefined ? '(unset)' : JSON.stringify(p.value)}: expected ${p.expected}`)
          .join('\n'),
      { problems },
    );
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
