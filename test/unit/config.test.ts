import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../runtime/index.js';

const SECRET = 'a'.repeat(32);

function problems(env: Record<string, string>) {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('has documented defaults', () => {
    const c = loadConfig({ SECRET_KEY: SECRET });
    expect(c).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      redisUrl: 'redis://127.0.0.1:6379',
      databaseUrl: undefined,
      duckdb: { path: './data/analytics.duckdb', memoryLimit: '256MB', threads: 2, checkpointThreshold: '128MB' },
      logLevel: 'info',
      shutdownTimeoutMs: 25_000,
      queuePrefix: 'concord',
      auth: { mode: 'jwt', secret: SECRET, algorithms: ['HS256'] },
    });
  });

  it('names the variable, the value and what was expected for each bad value', () => {
    const found = problems({ SECRET_KEY: SECRET, PORT: 'eighty', REDIS_URL: 'http://x', LOG_LEVEL: 'loud', DUCKDB_MEMORY_LIMIT: 'lots', DUCKDB_CHECKPOINT_THRESHOLD: '5%' });
    expect(found).toEqual(
      expect.arrayContaining([
        { variable: 'PORT', value: 'eighty', expected: 'an integer from 0 to 65535' },
        { variable: 'REDIS_URL', value: 'http://x', expected: 'a URL starting with redis: or rediss:' },
        { variable: 'LOG_LEVEL', value: 'loud', expected: expect.stringContaining('one of fatal, error') },
        { variable: 'DUCKDB_MEMORY_LIMIT', value: 'lots', expected: 'a size such as 2GB or 512MB' },
        { variable: 'DUCKDB_CHECKPOINT_THRESHOLD', value: '5%', expected: 'a size such as 16MB or 1GB' },
      ]),
    );
    expect(() => loadConfig({ SECRET_KEY: SECRET, PORT: '70000' })).toThrow(/PORT="70000": expected an integer from 0 to 65535/);
  });

  it('refuses to start with no auth configured unless AUTH_MODE=none is explicit', () => {
    expect(problems({})).toEqual([{ variable: 'SECRET_KEY', value: undefined, expected: expect.stringContaining('AUTH_MODE=none') }]);
    expect(loadConfig({ AUTH_MODE: 'none' }).auth.mode).toBe('none');
  });

  it('refuses a short secret and algorithms without keys', () => {
    expect(problems({ SECRET_KEY: 'short' })[0]).toMatchObject({ variable: 'SECRET_KEY', value: '(hidden)' });
    expect(problems({ SECRET_KEY: SECRET, ALGORITHMS: 'RS256' })[0]).toMatchObject({ variable: 'ALGORITHMS', value: 'RS256' });
    expect(problems({ SECRET_KEY: SECRET, ALGORITHMS: 'HS256,XX1' })[0]).toMatchObject({ variable: 'ALGORITHMS' });
  });

  it('reads Kafka brokers as a host:port list', () => {
    expect(loadConfig({ SECRET_KEY: SECRET, KAFKA_BROKERS: 'kafka:9092, 10.0.0.2:9093' }).kafkaBrokers).toEqual(['kafka:9092', '10.0.0.2:9093']);
    expect(problems({ SECRET_KEY: SECRET, KAFKA_BROKERS: 'kafka' })[0]).toMatchObject({ variable: 'KAFKA_BROKERS', expected: 'a comma-separated list of host:port' });
  });

  it('derives the JWKS URL and issuer from AUTH0_DOMAIN', () => {
    const c = loadConfig({ AUTH0_DOMAIN: 'tenant.eu.auth0.com', API_AUDIENCE: 'https://api.example/' });
    expect(c.auth).toMatchObject({ jwksUrl: 'https://tenant.eu.auth0.com/.well-known/jwks.json', issuer: 'https://tenant.eu.auth0.com/', audience: 'https://api.example/', algorithms: ['RS256'] });
  });
});
