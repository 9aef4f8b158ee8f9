import { EnvReader } from '../../runtime/env-reader.js';
import { projectionCatalog } from '../../cqrs/index.js';

export interface ProjectionsConfig {
  /** Routes and stats of the event store and projections. @defaultValue true when DATABASE_URL is set */
  enabled: boolean;
  /** Projections this process runs (names from the catalog). @defaultValue [] */
  projections: string[];
  /** Events per projection transaction (one read round trip each: larger batches cost less per event). @defaultValue 1000 */
  batchSize: number;
  /** Idle poll of a caught-up projection. @defaultValue 100 (ms) */
  pollIntervalMs: number;
  /** Tries of a failing event before its dead letter. @defaultValue 3 */
  maxAttempts: number;
  /** Overrides each projection's own failure policy when set. @defaultValue unset */
  failurePolicy: 'stop' | 'skip' | undefined;
  /** The seed's CQRSConfig.enable_caching: query results cached in Redis. @defaultValue true */
  enableCaching: boolean;
  /** The seed's CQRSConfig.cache_ttl_seconds. @defaultValue 300 (s) */
  cacheTtlSeconds: number;
}

export function loadProjectionsConfig(env: NodeJS.ProcessEnv = process.env): ProjectionsConfig {
  const read = new EnvReader(env);
  const hasDb = Boolean(read.raw('DATABASE_URL'));
  const enabled = read.bool('CQRS_ENABLED', hasDb);
  const projections = (read.raw('PROJECTIONS') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const known = [...projectionCatalog().keys()];
  const unknown = projections.filter((p) => !known.includes(p));
  if (unknown.length > 0) read.problem('PROJECTIONS', read.raw('PROJECTIONS'), `names from the projection catalog (${known.join(', ')}); unknown: ${unknown.join(', ')}`);
  if ((enabled || projections.length > 0) && !hasDb) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: the event store lives there');
  const policy = read.raw('PROJECTION_FAILURE_POLICY');
  const config: ProjectionsConfig = {
    enabled: enabled || projections.length > 0,
    projections,
    batchSize: read.int('PROJECTION_BATCH_SIZE', 1000, 1, 100_000),
    pollIntervalMs: read.int('PROJECTION_POLL_INTERVAL_MS', 100, 1, 600_000),
    maxAttempts: read.int('PROJECTION_MAX_ATTEMPTS', 3, 1, 100),
    failurePolicy: policy === undefined ? undefined : read.oneOf('PROJECTION_FAILURE_POLICY', ['stop', 'skip'] as const, 'stop'),
    enableCaching: read.bool('CQRS_ENABLE_CACHING', true),
    cacheTtlSeconds: read.int('CQRS_CACHE_TTL_SECONDS', 300, 1, 7 * 24 * 3600),
  };
  read.done();
  return config;
}
