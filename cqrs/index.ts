/**
 * CQRS and event sourcing: command and query buses, the PostgreSQL event store
 * with snapshots and upcasting, inline and async projections, the query cache.
 * The async runner process is the `projections` actor (actors/projections/).
 */
export type { Json, ExpectedVersion, NewEvent, StoredEvent, AppendResult } from './types.js';
export { WrongExpectedVersionError, EventIdConflictError, BusinessRuleViolation, HandlerNotFoundError } from './errors.js';
export { EventStore, type AppendOptions, type BeforeCommit, type AfterCommit } from './event-store.js';
export { Upcasters, type Upcaster } from './upcasters.js';
export { AggregateRoot, streamIdOf, type AggregateClass, type DomainEvent } from './aggregate.js';
export { AggregateRepository, type SnapshotPolicy } from './repository.js';
export {
  BaseCommand, BaseQuery, CommandBus, QueryBus,
  type CommandHandler, type QueryHandler, type CommandResult, type CommandStatus, type CommandContext, type ValidationResult, type QueryCachingOptions,
} from './buses.js';
export { QueryCache } from './query-cache.js';
export { LogReader } from './log-reader.js';
export {
  projectionStatuses, requestRebuild, resumeProjection, projectionDeadLetters, PROJECTION_NAME,
  type Projection, type ProjectionStatus, type ProjectionDeadLetter, type FailurePolicy,
} from './projection.js';
export { ProjectionRunner, type ProjectionRunnerOptions } from './projection-runner.js';
export { useInlineProjection } from './inline.js';
export { registerProjection, projectionCatalog, type CatalogEntry } from './catalog.js';
