import type { ActorFactory } from '../factory.js';
import { createBroker } from './brokers.js';
import { loadOutboxConfig, type OutboxConfig } from './config.js';
import { outboxRelayActor, OUTBOX_RELAY } from './actor.js';

export { outbox, enqueue, enqueueMany, inbox, handleOnce, type OutboxEvent, type Queryable } from '../../queues/index.js';
export { loadOutboxConfig, type OutboxConfig } from './config.js';
export { OUTBOX_RELAY } from './actor.js';

export function outboxRelayFactory(env: NodeJS.ProcessEnv = process.env): ActorFactory {
  let config: OutboxConfig | undefined;
  const cfg = () => (config ??= loadOutboxConfig(env));
  return {
    name: OUTBOX_RELAY,
    queues: [],
    enabled: () => cfg().enabled,
    create: () =>
      outboxRelayActor(cfg(), (services) =>
        createBroker({ kafkaBrokers: services.config.kafkaBrokers, redis: services.redis, prefix: services.config.queuePrefix, log: (msg, extra) => services.log.info(extra ?? {}, msg) }),
      ),
  };
}
