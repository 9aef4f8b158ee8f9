import { randomUUID } from 'node:crypto';
import { ValidationError, errorMessage } from '../runtime/errors.js';
import type { AggregateRoot } from './aggregate.js';
import { BusinessRuleViolation, HandlerNotFoundError, WrongExpectedVersionError } from './errors.js';
import type { EventStore } from './event-store.js';
import type { QueryCache } from './query-cache.js';
import type { AppendResult } from './types.js';

/** What `validate()` returns, as in the seed. */
export interface ValidationResult {
  is_valid: boolean;
  errors: string[];
}

export abstract class BaseCommand {
  readonly command_id: string = randomUUID();
  readonly timestamp: Date = new Date();
  /** Business-rule-free checks of the command's own fields. */
  validate(): ValidationResult {
    return { is_valid: true, errors: [] };
  }
}

export abstract class BaseQuery {
  readonly query_id: string = randomUUID();
  validate(): ValidationResult {
    return { is_valid: true, errors: [] };
  }
}

export type CommandStatus = 'completed' | 'failed' | 'rejected';

export interface CommandResult<R = unknown> {
  command_id: string;
  status: CommandStatus;
  result_data: R | null;
  errors: string[];
  /** Ids of the events the command stored. */
  events_generated: string[];
}

export interface CommandContext {
  readonly store: EventStore;
  readonly command_id: string;
  /** 1 for the first try; more after version conflicts. */
  readonly attempt: number;
  /** Saves an aggregate, tagging its events with the command id, and records them as generated. */
  save(aggregate: AggregateRoot, opts?: Parameters<EventStore['saveAggregate']>[1]): Promise<AppendResult>;
}

export interface CommandHandler<C extends BaseCommand, R = unknown> {
  /** Returns the command's `result_data`. Throw BusinessRuleViolation to fail it. */
  handle(command: C, ctx: CommandContext): Promise<R>;
}

export interface QueryHandler<Q extends BaseQuery, R> {
  handle(query: Q): Promise<R>;
  /** The cache key of a query; without it the query's own fields (JSON) are the key. */
  cacheKey?(query: Q): string;
  /** Tags projections invalidate when the data behind this result changes (`order:42`). */
  cacheTags?(query: Q): string[];
}

type Ctor<T> = abstract new (...args: never[]) => T;

const validationOf = (message: unknown): ValidationResult => ({ is_valid: false, errors: [`validate() threw: ${errorMessage(message)}`] });
function runValidate(target: { validate(): ValidationResult }): ValidationResult {
  try {
    const r = target.validate();
    return r.is_valid && r.errors.length === 0 ? r : { is_valid: false, errors: r.errors.length ? r.errors : ['invalid'] };
  } catch (err) {
    return validationOf(err);
  }
}

/**
 * Runs each command through its handler: an invalid command is rejected before
 * the handler runs; a version conflict re-runs the handler (which reloads its
 * aggregate) up to `maxConflictRetries` times; a BusinessRuleViolation or
 * conflicts past the retries give `failed`. Other errors (a database down)
 * are thrown to the caller: they say nothing about the command.
 */
export class CommandBus {
  private readonly handlers = new Map<Ctor<BaseCommand>, CommandHandler<BaseCommand>>();
  private readonly opts: { maxConflictRetries: number; retryDelayMs: number };

  constructor(
    private readonly store: EventStore,
    opts: { /** @defaultValue 3 */ maxConflictRetries?: number; /** @defaultValue 5 (ms, times the attempt, with jitter) */ retryDelayMs?: number } = {},
  ) {
    this.opts = { maxConflictRetries: 3, retryDelayMs: 5, ...opts };
    if (!Number.isInteger(this.opts.maxConflictRetries) || this.opts.maxConflictRetries < 0) throw new RangeError(`maxConflictRetries must be an integer >= 0, got ${this.opts.maxConflictRetries}`);
  }

  register<C extends BaseCommand>(type: Ctor<C>, handler: CommandHandler<C>): this {
    if (this.handlers.has(type)) throw new Error(`a handler for command ${type.name} is already registered`);
    this.handlers.set(type, handler as unknown as CommandHandler<BaseCommand>);
    return this;
  }

  async execute<R = unknown>(command: BaseCommand): Promise<CommandResult<R>> {
    const handler = this.handlers.get(command.constructor as Ctor<BaseCommand>);
    if (!handler) throw new HandlerNotFoundError(`no handler registered for command ${command.constructor.name}`, { command: command.constructor.name });
    const base = { command_id: command.command_id, result_data: null, errors: [] as string[], events_generated: [] as string[] };
    const validation = runValidate(command);
    if (!validation.is_valid) return { ...base, status: 'rejected', errors: validation.errors };
    for (let attempt = 1; ; attempt++) {
      const generated: string[] = [];
      const ctx: CommandContext = {
        store: this.store,
        command_id: command.command_id,
        attempt,
        save: async (aggregate, opts) => {
          const r = await this.store.saveAggregate(aggregate, { ...opts, metadata: { command_id: command.command_id, ...opts?.metadata } });
          generated.push(...r.events.map((e) => e.id));
          return r;
        },
      };
      try {
        const data = (await handler.handle(command, ctx)) as R;
        return { ...base, status: 'completed', result_data: data ?? null, events_generated: generated };
      } catch (err) {
        if (err instanceof WrongExpectedVersionError && attempt <= this.opts.maxConflictRetries) {
          await new Promise((r) => setTimeout(r, this.opts.retryDelayMs * attempt * (0.5 + Math.random())));
          continue;
        }
        if (err instanceof BusinessRuleViolation || err instanceof WrongExpectedVersionError) return { ...base, status: 'failed', errors: [err.message], events_generated: generated };
        throw err;
      }
    }
  }
}

export interface QueryCachingOptions {
  /** @defaultValue true (when the bus has a cache) */
  enable_caching?: boolean;
  /** @defaultValue 300 (seconds) */
  cache_ttl_seconds?: number;
}

/**
 * Runs queries through their handlers, with results cached in Redis when the
 * bus has a QueryCache and caching is on for the query type. Entries expire
 * after `cache_ttl_seconds` and are invalidated earlier by the projections
 * whose events touch their tags. An invalid query throws ValidationError (400).
 */
export class QueryBus {
  private readonly handlers = new Map<Ctor<BaseQuery>, { handler: QueryHandler<BaseQuery, unknown>; caching: Required<QueryCachingOptions> }>();
  private readonly defaults: Required<QueryCachingOptions>;
  readonly stats = { hits: 0, misses: 0 };

  constructor(
    private readonly cache?: QueryCache,
    defaults: QueryCachingOptions = {},
  ) {
    this.defaults = { enable_caching: true, cache_ttl_seconds: 300, ...defaults };
  }

  register<Q extends BaseQuery, R>(type: Ctor<Q>, handler: QueryHandler<Q, R>, caching: QueryCachingOptions = {}): this {
    if (this.handlers.has(type)) throw new Error(`a handler for query ${type.name} is already registered`);
    const merged = { ...this.defaults, ...caching };
    if (!(Number.isInteger(merged.cache_ttl_seconds) && merged.cache_ttl_seconds > 0)) throw new RangeError(`${type.name}: cache_ttl_seconds must be a positive integer, got ${merged.cache_ttl_seconds}`);
    this.handlers.set(type, { handler: handler as unknown as QueryHandler<BaseQuery, unknown>, caching: merged });
    return this;
  }

  async execute<R>(query: BaseQuery): Promise<R> {
    const entry = this.handlers.get(query.constructor as Ctor<BaseQuery>);
    if (!entry) throw new HandlerNotFoundError(`no handler registered for query ${query.constructor.name}`, { query: query.constructor.name });
    const validation = runValidate(query);
    if (!validation.is_valid) throw new ValidationError(`invalid ${query.constructor.name}`, validation.errors.map((reason) => ({ field: query.constructor.name, reason })));
    const { handler, caching } = entry;
    if (!this.cache || !caching.enable_caching) return (await handler.handle(query)) as R;
    const { query_id: _id, ...fields } = query as BaseQuery & Record<string, unknown>;
    const key = `${query.constructor.name}:${handler.cacheKey?.(query) ?? JSON.stringify(fields)}`;
    const tags = handler.cacheTags?.(query) ?? [];
    const found = await this.cache.lookup(key, tags);
    if (found.hit) {
      this.stats.hits++;
      return found.data as R;
    }
    this.stats.misses++;
    const data = await handler.handle(query);
    if (data !== undefined) await this.cache.set(key, data, found.versions, caching.cache_ttl_seconds);
    return data as R;
  }
}
