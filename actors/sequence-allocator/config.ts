import { EnvReader } from '../../runtime/env-reader.js';
import { MAX_INGEST_LANES, type StreamMode } from '../../queues/index.js';

export interface SequenceConfig {
  enabled: boolean;
  /** `symbol`: one stream per symbol; `global`: one stream for every symbol. @defaultValue 'symbol' */
  mode: StreamMode;
  /** Numbers reserved in PostgreSQL per round trip; a Redis flush/restart skips at most this many per stream. @defaultValue 10000 */
  reserveSize: number;
  /** Numbers a process takes from Redis at once for library `next()` calls. @defaultValue 1000 */
  blockSize: number;
  /** Consume the Kafka topic (needs KAFKA_BROKERS). @defaultValue true when KAFKA_BROKERS is set */
  kafkaEnabled: boolean;
  /** @defaultValue 'market_data' */
  topic: string;
  /** Kafka consumer group. @defaultValue 'concord-klines' */
  groupId: string;
  /** Pub/sub channel of a symbol: prefix + symbol. @defaultValue 'market:klines:' */
  channelPrefix: string;
  /** How long the consumer waits for a batch to be stored before Kafka redelivers it. @defaultValue 120000 (ms) */
  ingestWaitMs: number;
  /**
   * Ingest lanes: queues klines.ingest (lane 0) and klines.ingest.<i>, each stored one batch at
   * a time, a symbol always in the same lane. Must be the same in every process; 1 in global mode.
   * @defaultValue 1
   */
  lanes: number;
}

export function loadSequenceConfig(env: NodeJS.ProcessEnv = process.env): SequenceConfig {
  const read = new EnvReader(env);
  const hasDb = Boolean(read.raw('DATABASE_URL'));
  const enabled = read.bool('SEQUENCES_ENABLED', hasDb);
  if (enabled && !hasDb) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: market_klines and sequence_tracker live there');
  const hasKafka = Boolean(read.raw('KAFKA_BROKERS'));
  const kafkaEnabled = read.bool('KLINES_KAFKA_ENABLED', hasKafka);
  if (enabled && kafkaEnabled && !hasKafka) read.problem('KAFKA_BROKERS', undefined, 'a comma-separated broker list (or KLINES_KAFKA_ENABLED=false)');
  const topic = read.raw('KLINES_KAFKA_TOPIC') ?? 'market_data';
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(topic)) read.problem('KLINES_KAFKA_TOPIC', topic, 'a Kafka topic name (letters, digits, . _ -)');
  const groupId = read.raw('KLINES_KAFKA_GROUP_ID') ?? 'concord-klines';
  if (groupId.length > 255) read.problem('KLINES_KAFKA_GROUP_ID', groupId, 'at most 255 characters');
  const channelPrefix = read.raw('KLINES_CHANNEL_PREFIX') ?? 'market:klines:';
  if (channelPrefix.length > 100) read.problem('KLINES_CHANNEL_PREFIX', channelPrefix, 'at most 100 characters');
  const reserveSize = read.int('SEQUENCE_RESERVE_SIZE', 10_000, 1, 1_000_000);
  const mode = read.oneOf('SEQUENCE_STREAM_MODE', ['symbol', 'global'] as const, 'symbol');
  // Default 1: on the 2-core benchmark machine, 2 lanes cost more CPU per kline than they gained (README).
  const lanes = read.int('KLINES_INGEST_LANES', 1, 1, MAX_INGEST_LANES);
  // One stream for every symbol: batches in two lanes would stamp it in parallel, out of stored order.
  if (mode === 'global' && lanes > 1) read.problem('KLINES_INGEST_LANES', String(lanes), '1 in global mode (one stream, one lane)');
  const config: SequenceConfig = {
    enabled,
    mode,
    lanes,
    reserveSize,
    blockSize: read.int('SEQUENCE_BLOCK_SIZE', Math.min(1000, reserveSize), 1, reserveSize),
    kafkaEnabled,
    topic,
    groupId,
    channelPrefix,
    ingestWaitMs: read.int('KLINES_INGEST_WAIT_MS', 120_000, 1000, 3_600_000),
  };
  read.done();
  return config;
}
