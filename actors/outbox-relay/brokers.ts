import type { Redis } from 'ioredis';
import type { Broker } from './broker.js';
import { createKafkaBroker } from './kafka-broker.js';
import { createRedisStreamsBroker } from './redis-streams-broker.js';

export interface BrokerConfig {
  /** Kafka bootstrap servers; empty or unset selects Redis Streams. */
  kafkaBrokers?: string[] | undefined;
  redis: Redis;
  /** Key prefix of the Redis streams (the queue prefix). */
  prefix: string;
  log?: (msg: string, extra?: object) => void;
}

/** Kafka when brokers are configured, else Redis Streams on the runtime's own Redis. */
export function createBroker(cfg: BrokerConfig): Broker {
  const brokers = (cfg.kafkaBrokers ?? []).map((b) => b.trim()).filter((b) => b.length > 0);
  if (brokers.length > 0) return createKafkaBroker({ brokers, log: cfg.log });
  return createRedisStreamsBroker({ redis: cfg.redis, prefix: cfg.prefix });
}
