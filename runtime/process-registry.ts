import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { ActorSnapshot } from './supervisor.js';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

export type Role = 'all' | 'api' | 'worker';

export interface DependencyStatus {
  ok: boolean;
  error?: string;
}

/** What each process publishes about itself, so any api process can report the whole runtime. */
export interface ProcessRecord {
  id: string;
  pid: number;
  host: string;
  role: Role;
  startedAt: number;
  heartbeatAt: number;
  actors: ActorSnapshot[];
  /** Dependencies only this process can check (DuckDB is owned by one process). */
  dependencies: Record<string, DependencyStatus>;
}

/**
 * A heartbeat record per process in Redis, expiring after three missed beats.
 * Stats and readiness in an api-only process read the worker processes' records.
 */
export class ProcessRegistry {
  private timer: NodeJS.Timeout | undefined;
  private readonly key: string;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly self: () => Omit<ProcessRecord, 'heartbeatAt'>,
    private readonly log: Logger,
    /** @defaultValue 5000 (ms) */
    readonly intervalMs = 5_000,
  ) {
    this.key = `${prefix}:process:${self().id}`;
  }

  async start(): Promise<void> {
    await this.beat();
    const tick = () => {
      this.timer = setTimeout(() => void this.beat().finally(tick), this.intervalMs);
      this.timer.unref();
    };
    tick();
  }

  async beat(): Promise<void> {
    try {
      const record: ProcessRecord = { ...this.self(), heartbeatAt: Date.now() };
      await this.redis.set(this.key, JSON.stringify(record), 'PX', this.intervalMs * 3);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'heartbeat failed');
    }
  }

  async list(): Promise<ProcessRecord[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', `${this.prefix}:process:*`, 'COUNT', 200);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    if (keys.length === 0) return [];
    const values = await this.redis.mget(keys);
    return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as ProcessRecord);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.redis.del(this.key).catch(() => undefined);
  }
}

export function newProcessId(role: Role): string {
  return `${hostname()}-${process.pid}-${role}-${Date.now().toString(36)}`;
}
