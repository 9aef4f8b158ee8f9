import { z } from 'zod';
import { ConfigError } from './errors.js';

/** DuckDB's memory limit when DUCKDB_MEMORY_LIMIT is not set. */
export const DEFAULT_DUCKDB_MEMORY_LIMIT = '256MB';

/**
 * DuckDB's checkpoint_threshold when DUCKDB_CHECKPOINT_THRESHOLD is not set; DuckDB's own is
 * 16MB. A checkpoint runs inside the commit that passes the threshold and stalls the single
 * writer for about as long as the changed tables take to rewrite (0.3 to 1.2 s for the CDC
 * benchmark's 420k-row copy, whatever the WAL size), so fewer of them mean fewer lag spikes
 * and less work, for up to this much WAL to replay after a crash and the changes since the
 * last checkpoint held in memory (about +40 MB for the CDC benchmark's writer).
 */
export const DEFAULT_DUCKDB_CHECKPOINT_THRESHOLD = '128MB';

/**
 * Process configuration, read once from the environment at start and validated
 * (DESIGN rule 9). A bad value stops the process naming the variable, the value
 * and what was expected. Every variable is listed in the README with its default.
 */

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const JWT_ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'ES256', 'PS256'] as const;

const optionalText = z
  .string()
  .trim()
  .transform((s) => (s === '' ? undefined : s))
  .optional();

function intIn(min: number, max: number, fallback: number) {
  return z
    .string()
    .optional()
    .transform((s, ctx) => {
      if (s === undefined || s.trim() === '') return fallback;
      const n = Number(s);
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `an integer from ${min} to ${max}` });
        return z.NEVER;
      }
      return n;
    });
}

function urlWith(protocols: readonly string[], fallback?: string) {
  return z
    .string()
    .optional()
    .transform((s, ctx) => {
      const value = s === undefined || s.trim() === '' ? fallback : s.trim();
      if (value === undefined) return undefined;
      let parsed: URL;
      try {
        parsed = new URL(value);
      } catch {
        ctx.addIssue({ code: 'custom', message: `a URL starting with ${protocols.join(' or ')}` });
        return z.NEVER;
      }
      if (!protocols.includes(parsed.protocol)) {
        ctx.addIssue({ code: 'custom', message: `a URL starting with ${protocols.join(' or ')}` });
        return z.NEVER;
      }
      return value;
    });
}

function oneOf<const T extends readonly string[]>(values: T, fallback: T[number]) {
  return z
    .string()
    .optional()
    .transform((s, ctx): T[number] => {
      const value = s === undefined || s.trim() === '' ? fallback : s.trim();
      if (!values.includes(value)) {
        ctx.addIssue({ code: 'custom', message: `one of ${values.join(', ')}` });
        return z.NEVER;
      }
      return value;
    });
}

const algorithmList = z
  .string()
  .optional()
  .transform((s, ctx) => {
    if (s === undefined || s.trim() === '') return undefined;
    const list = s.split(',').map((a) => a.trim()).filter(Boolean);
    const bad = list.filter((a) => !(JWT_ALGORITHMS as readonly string[]).includes(a));
    if (list.length === 0 || bad.length > 0) {
      ctx.addIssue({ code: 'custom', message: `a comma-separated list of ${JWT_ALGORITHMS.join(', ')}` });
      return z.NEVER;
    }
    return list as Array<(typeof JWT_ALGORITHMS)[number]>;
  });

const boolFlag = (fallback: boolean) =>
  z
    .string()
    .optional()
    .transform((s, ctx) => {
      if (s === undefined || s.trim() === '') return fallback;
      const v = s.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      ctx.addIssue({ code: 'custom', message: 'true or false' });
      return z.NEVER;
    });

const envSchema = z.object({
  PORT: intIn(0, 65535, 8080),
  HOST: optionalText,
  REDIS_URL: urlWith(['redis:', 'rediss:'], 'redis://127.0.0.1:6379'),
  DATABASE_URL: urlWith(['postgres:', 'postgresql:']),
  DUCKDB_DATABASE_PATH: optionalText,
  DUCKDB_MEMORY_LIMIT: z
    .string()
    .optional()
    .refine((s) => s === undefined || s === '' || /^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)$/i.test(s.trim()), {
      message: 'a size such as 2GB or 512MB',
    }),
  DUCKDB_WORKER_THREADS: intIn(1, 256, 2),
  DUCKDB_CHECKPOINT_THRESHOLD: z
    .string()
    .optional()
    .refine((s) => s === undefined || s === '' || /^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$/i.test(s.trim()), {
      message: 'a size such as 16MB or 1GB',
    }),
  LOG_LEVEL: oneOf(LOG_LEVELS, 'info'),
  AUTH_MODE: oneOf(['jwt', 'none'] as const, 'jwt'),
  SECRET_KEY: optionalText,
  AUTH0_DOMAIN: optionalText,
  AUTH_JWKS_URL: urlWith(['https:', 'http:']),
  AUTH_ISSUER: optionalText,
  API_AUDIENCE: optionalText,
  ALGORITHMS: algorithmList,
  SHUTDOWN_TIMEOUT_MS: intIn(100, 600_000, 25_000),
  CONCORD_QUEUE_PREFIX: z
    .string()
    .optional()
    .refine((s) => s === undefined || /^[a-z][a-z0-9_-]{0,31}$/.test(s), {
      message: 'lower-case letters, digits, _ or -, starting with a letter, at most 32 characters',
    }),
  CONCORD_EXPOSE_DOCS: boolFlag(true),
  KAFKA_BROKERS: z
    .string()
    .optional()
    .transform((s, ctx) => {
      if (s === undefined || s.trim() === '') return undefined;
      const brokers = s.split(',').map((b) => b.trim()).filter(Boolean);
      if (brokers.length === 0 || brokers.some((b) => !/^[A-Za-z0-9.-]+:\d{1,5}$/.test(b))) {
        ctx.addIssue({ code: 'custom', message: 'a comma-separated list of host:port' });
        return z.NEVER;
      }
      return brokers;
    }),
});

export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export interface AuthConfig {
  /** `none` turns auth off entirely; only allowed when set explicitly. */
  mode: 'jwt' | 'none';
  /** HS* shared secret (SECRET_KEY). */
  secret: string | undefined;
  /** JWKS endpoint for RS256/ES256 tokens: AUTH_JWKS_URL, or derived from AUTH0_DOMAIN. */
  jwksUrl: string | undefined;
  issuer: string | undefined;
  audience: string | undefined;
  algorithms: JwtAlgorithm[];
}

export interface Config {
  port: number;
  host: string;
  redisUrl: string;
  databaseUrl: string | undefined;
  duckdb: { path: string; memoryLimit: string | undefined; threads: number; checkpointThreshold: string };
  logLevel: (typeof LOG_LEVELS)[number];
  auth: AuthConfig;
  /** @defaultValue 25000 (ms) - bound on a graceful stop after SIGTERM. */
  shutdownTimeoutMs: number;
  /** BullMQ key prefix in Redis. @defaultValue 'concord' */
  queuePrefix: string;
  exposeDocs: boolean;
  /** Kafka bootstrap brokers; unset means Redis Streams is the event transport. */
  kafkaBrokers: string[] | undefined;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const variable = String(issue.path[0] ?? '(environment)');
        return { variable, value: env[variable], expected: issue.message };
      }),
    );
  }
  const e = parsed.data;
  const auth = resolveAuth(e, env);
  return {
    port: e.PORT,
    host: e.HOST ?? '0.0.0.0',
    redisUrl: e.REDIS_URL ?? 'redis://127.0.0.1:6379',
    databaseUrl: e.DATABASE_URL,
    duckdb: {
      path: e.DUCKDB_DATABASE_PATH ?? './data/analytics.duckdb',
      // DuckDB's own default is 80% of the machine's RAM; the process's peak memory should not
      // depend on the size of the copy (DuckDB evicts and spills past the limit).
      memoryLimit: e.DUCKDB_MEMORY_LIMIT?.trim() || DEFAULT_DUCKDB_MEMORY_LIMIT,
      threads: e.DUCKDB_WORKER_THREADS,
      checkpointThreshold: e.DUCKDB_CHECKPOINT_THRESHOLD?.trim() || DEFAULT_DUCKDB_CHECKPOINT_THRESHOLD,
    },
    logLevel: e.LOG_LEVEL,
    auth,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    queuePrefix: e.CONCORD_QUEUE_PREFIX ?? 'concord',
    exposeDocs: e.CONCORD_EXPOSE_DOCS,
    kafkaBrokers: e.KAFKA_BROKERS,
  };
}

function resolveAuth(e: z.infer<typeof envSchema>, env: NodeJS.ProcessEnv): AuthConfig {
  const jwksUrl = e.AUTH_JWKS_URL ?? (e.AUTH0_DOMAIN ? `https://${e.AUTH0_DOMAIN.replace(/\/+$/, '')}/.well-known/jwks.json` : undefined);
  const issuer = e.AUTH_ISSUER ?? (e.AUTH0_DOMAIN ? `https://${e.AUTH0_DOMAIN.replace(/\/+$/, '')}/` : undefined);
  const algorithms: JwtAlgorithm[] =
    e.ALGORITHMS ?? [...(e.SECRET_KEY ? (['HS256'] as const) : []), ...(jwksUrl ? (['RS256'] as const) : [])];
  const problems: Array<{ variable: string; value: string | undefined; expected: string }> = [];
  if (e.AUTH_MODE === 'jwt') {
    if (!e.SECRET_KEY && !jwksUrl) {
      problems.push({
        variable: 'SECRET_KEY',
        value: undefined,
        expected: 'a secret for HS256 tokens, or AUTH0_DOMAIN / AUTH_JWKS_URL for RS256; set AUTH_MODE=none to run without auth',
      });
    }
    if (e.SECRET_KEY && e.SECRET_KEY.length < 32) {
      problems.push({ variable: 'SECRET_KEY', value: '(hidden)', expected: 'at least 32 characters (256 bits for HS256)' });
    }
    const wantsHmac = algorithms.some((a) => a.startsWith('HS'));
    const wantsKeys = algorithms.some((a) => !a.startsWith('HS'));
    if (wantsHmac && !e.SECRET_KEY) {
      problems.push({ variable: 'ALGORITHMS', value: env.ALGORITHMS, expected: 'no HS* algorithm unless SECRET_KEY is set' });
    }
    if (wantsKeys && !jwksUrl) {
      problems.push({ variable: 'ALGORITHMS', value: env.ALGORITHMS, expected: 'no RS*/ES*/PS* algorithm unless AUTH0_DOMAIN or AUTH_JWKS_URL is set' });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { mode: e.AUTH_MODE, secret: e.SECRET_KEY, jwksUrl, issuer, audience: e.API_AUDIENCE, algorithms };
}
