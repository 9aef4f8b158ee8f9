import { startPostgres, type PostgresHandle } from './postgres.js';
import { startRedis, type RedisHandle } from './redis.js';

export { freePort } from './ports.js';
export { startRedis, findRedisServer, pingRedis, NO_REDIS_MESSAGE } from './redis.js';
export type { RedisHandle, StartRedisOptions } from './redis.js';
export { startPostgres, DEFAULT_DEMO_DATA_DIR } from './postgres.js';
export type { PostgresHandle, StartPostgresOptions } from './postgres.js';

export interface Services {
  redis: RedisHandle;
  postgres: PostgresHandle;
  stop(): Promise<void>;
}

/** Start Redis and PostgreSQL concurrently (see startRedis / startPostgres for the rules). */
export async function startServices(opts: { mode: 'test' | 'demo'; log?: (m: string) => void }): Promise<Services> {
  const [redis, postgres] = await Promise.allSettled([
    startRedis({ mode: opts.mode, log: opts.log }),
    startPostgres({ mode: opts.mode, log: opts.log }),
  ]);
  if (redis.status === 'rejected' || postgres.status === 'rejected') {
    // Don't leave the half that did start running.
    await Promise.allSettled([
      redis.status === 'fulfilled' ? redis.value.stop() : Promise.resolve(),
      postgres.status === 'fulfilled' ? postgres.value.stop() : Promise.resolve(),
    ]);
    const reasons = [redis, postgres]
      .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      .map((r): unknown => r.reason);
    if (reasons.length === 1) throw reasons[0];
    throw new AggregateError(reasons, `starting services failed:\n${reasons.map((r) => `- ${String(r)}`).join('\n')}`);
  }
  const services: Services = {
    redis: redis.value,
    postgres: postgres.value,
    async stop(): Promise<void> {
      await Promise.all([redis.value.stop(), postgres.value.stop()]);
    },
  };
  return services;
}
