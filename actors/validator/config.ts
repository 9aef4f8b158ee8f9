import { z } from 'zod';
import { EnvReader, qualifiedTable } from '../../runtime/env-reader.js';
import { CHECK_TYPES, type CheckType } from '../../queues/validate.js';

/** A declarative rule on one table: every row satisfies `predicate`, or `aggregate` is equal in both stores. */
export interface BusinessRule {
  name: string;
  predicate?: string;
  aggregate?: string;
  /** Aggregates: largest absolute difference still equal. @defaultValue 0 */
  tolerance: number;
}

export interface ValidatorConfig {
  /** @defaultValue DATA_SYNC_ENABLED (true when DATABASE_URL is set) */
  enabled: boolean;
  /** `schema.table` names that may be checked. @defaultValue DATA_SYNC_TABLES, else CDC_MONITORED_TABLES minus CDC_EXCLUDED_TABLES */
  tables: string[];
  /** Scheduled run every this many seconds over every table; 0 turns the schedule off. @defaultValue 3600 (s) */
  intervalSeconds: number;
  /** Check types of scheduled runs. @defaultValue all four */
  scheduledCheckTypes: CheckType[];
  /** Least sub-segments per differing segment (more when rows / download threshold is larger). @defaultValue 32 */
  bisectionFactor: number;
  /** A segment with at most this many rows (on either side) is downloaded instead of bisected. @defaultValue 256 (rows) */
  downloadThreshold: number;
  /** Differing rows are read again after this delay (they may have been in flight through CDC) before being reported. @defaultValue 5 (s) */
  recheckDelaySeconds: number;
  /** Differing keys stored per check (the total is always stored). @defaultValue 1000 */
  diffKeysCap: number;
  /** Reports older than this are deleted. @defaultValue 30 (days) */
  retentionDays: number;
  /** Rows one checksum job scans at most; a bigger segment becomes several jobs (spread over workers). @defaultValue 1000000 */
  maxRowsPerJob: number;
  /** Side jobs (segment checksums) one process works on at once, per side. @defaultValue 2 */
  segmentConcurrency: number;
  /** PostgreSQL-side sub-segment checksums remembered per process between runs (see checksum-cache.ts); 0 turns it off. @defaultValue 1000000 */
  checksumCacheBuckets: number;
  /** How long a run waits for one side job. @defaultValue 600000 (ms) */
  sideTimeoutMs: number;
  /** VALIDATOR_BUSINESS_RULES: JSON `{table: [{name, predicate} | {name, aggregate, tolerance?}]}`. */
  rules: Record<string, BusinessRule[]>;
}

/** `users` → `public.users`; null when not a plain lower-case identifier (the dual-writer's rule too). */
export const normalizeTable = qualifiedTable;

// One statement, no comments: the text is wrapped as an expression in a SELECT.
const sqlFragment = z
  .string()
  .trim()
  .min(1)
  .max(2000)
  .refine((s) => !/;|--|\/\*/.test(s), 'a single SQL expression: no ";" and no comments');
const ruleSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/, 'lower-case letters, digits and _'),
    predicate: sqlFragment.optional(),
    aggregate: sqlFragment.optional(),
    tolerance: z.number().min(0).default(0),
  })
  .strict()
  .refine((r) => (r.predicate === undefined) !== (r.aggregate === undefined), 'exactly one of predicate or aggregate');
const rulesSchema = z.record(z.string(), z.array(ruleSchema));

function readRules(read: EnvReader, tables: string[]): Record<string, BusinessRule[]> {
  const raw = read.raw('VALIDATOR_BUSINESS_RULES');
  if (raw === undefined || raw.trim() === '') return {};
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    read.problem('VALIDATOR_BUSINESS_RULES', raw, 'JSON: {"table": [{"name": "...", "predicate": "..."}]}');
    return {};
  }
  const parsed = rulesSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    read.problem('VALIDATOR_BUSINESS_RULES', raw, `${issue.path.join('.') || 'rules'}: ${issue.message}`);
    return {};
  }
  const out: Record<string, BusinessRule[]> = {};
  for (const [name, rules] of Object.entries(parsed.data)) {
    const table = normalizeTable(name);
    if (table === null || !tables.includes(table)) {
      read.problem('VALIDATOR_BUSINESS_RULES', raw, `rules for ${JSON.stringify(name)}: not one of the checked tables (${tables.join(', ') || 'none'})`);
      continue;
    }
    const names = rules.map((r) => r.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) read.problem('VALIDATOR_BUSINESS_RULES', raw, `rule name ${dup} used twice for ${table}`);
    out[table] = rules.map((r) => ({ name: r.name, predicate: r.predicate, aggregate: r.aggregate, tolerance: r.tolerance }) as BusinessRule);
  }
  return out;
}

export function loadValidatorConfig(env: NodeJS.ProcessEnv = process.env): ValidatorConfig {
  const read = new EnvReader(env);
  const hasDb = Boolean(read.raw('DATABASE_URL'));
  const enabled = read.bool('VALIDATOR_ENABLED', read.bool('DATA_SYNC_ENABLED', hasDb));
  if (enabled && !hasDb) read.problem('DATABASE_URL', undefined, 'a postgres:// URL: the validator compares PostgreSQL with its DuckDB copy');
  const excluded = read.tables('CDC_EXCLUDED_TABLES') ?? [];
  const tables = read.tables('VALIDATOR_TABLES') ?? read.tables('DATA_SYNC_TABLES') ?? (read.tables('CDC_MONITORED_TABLES') ?? []).filter((t) => !excluded.includes(t));
  const typesRaw = read.raw('VALIDATOR_SCHEDULED_CHECK_TYPES');
  const scheduledCheckTypes = typesRaw === undefined ? [...CHECK_TYPES] : (typesRaw.split(',').map((s) => s.trim()).filter(Boolean) as CheckType[]);
  for (const t of scheduledCheckTypes) if (!CHECK_TYPES.includes(t)) read.problem('VALIDATOR_SCHEDULED_CHECK_TYPES', typesRaw, `check types among ${CHECK_TYPES.join(', ')} (got ${t})`);
  const config: ValidatorConfig = {
    enabled,
    tables,
    intervalSeconds: read.int('VALIDATOR_CHECK_INTERVAL_SECONDS', 3600, 0, 30 * 24 * 3600),
    scheduledCheckTypes,
    bisectionFactor: read.int('VALIDATOR_BISECTION_FACTOR', 32, 2, 1024),
    downloadThreshold: read.int('VALIDATOR_DOWNLOAD_THRESHOLD', 256, 1, 1_000_000),
    recheckDelaySeconds: read.int('VALIDATOR_RECHECK_DELAY_SECONDS', 5, 0, 3600),
    diffKeysCap: read.int('VALIDATOR_DIFF_KEYS_CAP', 1000, 1, 100_000),
    retentionDays: read.int('VALIDATOR_REPORT_RETENTION_DAYS', 30, 1, 3650),
    maxRowsPerJob: read.int('VALIDATOR_MAX_ROWS_PER_JOB', 1_000_000, 1000, 1_000_000_000),
    segmentConcurrency: read.int('VALIDATOR_SEGMENT_CONCURRENCY', 2, 1, 64),
    checksumCacheBuckets: read.int('VALIDATOR_CHECKSUM_CACHE_BUCKETS', 1_000_000, 0, 100_000_000),
    sideTimeoutMs: read.int('VALIDATOR_SIDE_TIMEOUT_MS', 600_000, 1000, 24 * 3600_000),
    rules: readRules(read, tables),
  };
  read.done();
  return config;
}
