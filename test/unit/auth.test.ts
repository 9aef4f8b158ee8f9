import { createServer, type Server } from 'node:http';
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { SignJWT, UnsecuredJWT, type JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTokenVerifier, requireAuth, type AuthState, type TokenVerifierOptions } from '../../http/auth.js';
import { loadConfig, type AuthConfig } from '../../runtime/config.js';
import { ConcordError, ForbiddenError } from '../../runtime/errors.js';
import { TEST_SECRET, signHs256, startJwksServer, type JwksServer } from '../support/jwt.js';

// ---------------------------------------------------------------------------
// A tiny Koa app per test, on an ephemeral port, with a minimal error middleware.

interface Reply {
  status: number;
  body: { subject?: string; claims?: Record<string, unknown>; error?: { code: string; message: string } };
  challenge: string | null;
}

const closers: Array<() => Promise<void>> = [];

function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}

async function startApp(config: AuthConfig, options?: TokenVerifierOptions, { errorMiddleware = true } = {}): Promise<string> {
  const app = new Koa();
  app.silent = true;
  if (errorMiddleware) {
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (err) {
        if (!(err instanceof ConcordError)) throw err;
        ctx.status = err.status;
        ctx.body = { error: { code: err.code, message: err.message } };
      }
    });
  }
  app.use(requireAuth(createTokenVerifier(config, options), config.mode));
  app.use((ctx) => {
    if (ctx.path === '/forbidden') throw new ForbiddenError('not yours');
    const { principal } = ctx.state as AuthState;
    ctx.body = { subject: principal.subject, claims: principal.claims };
  });
  const server = createServer(app.callback());
  const url = await listen(server);
  closers.push(closer(server));
  return url;
}

async function get(url: string, auth: { token?: string; cookie?: string; authorization?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (auth.token !== undefined) headers.authorization = `Bearer ${auth.token}`;
  if (auth.authorization !== undefined) headers.authorization = auth.authorization;
  if (auth.cookie !== undefined) headers.cookie = `concord_token=${auth.cookie}`;
  const res = await fetch(url, { headers });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Reply['body']) : {}, challenge: res.headers.get('www-authenticate') };
}

function expect401(reply: Reply, message: string): void {
  expect(reply.status).toBe(401);
  expect(reply.body.error).toEqual({ code: 'unauthorized', message });
  expect(reply.challenge).toBe(`Bearer error="invalid_token", error_description="${message}"`);
}

// ---------------------------------------------------------------------------

let jwks: JwksServer;

const hsConfig = (over: Partial<AuthConfig> = {}): AuthConfig => ({
  mode: 'jwt',
  secret: TEST_SECRET,
  jwksUrl: undefined,
  issuer: undefined,
  audience: undefined,
  algorithms: ['HS256'],
  ...over,
});

const rsConfig = (over: Partial<AuthConfig> = {}): AuthConfig => ({
  mode: 'jwt',
  secret: undefined,
  jwksUrl: jwks.url,
  issuer: jwks.issuer,
  audience: undefined,
  algorithms: ['RS256'],
  ...over,
});

/** The JWKS server's public key, as an attacker would fetch it: the JWK and its PEM. */
async function publishedKey(): Promise<{ jwk: JWK; pem: string }> {
  const { keys } = (await (await fetch(jwks.url)).json()) as { keys: JWK[] };
  const jwk = keys[0];
  if (!jwk) throw new Error('JWKS has no key');
  const pem = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
  return { jwk, pem };
}

beforeAll(async () => {
  jwks = await startJwksServer();
});

afterAll(async () => {
  await jwks.close();
});

afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

describe('requireAuth with HS256 (SECRET_KEY)', () => {
  it('accepts a good token and passes the subject through', async () => {
    const url = await startApp(hsConfig());
    const reply = await get(url, { token: await signHs256({ sub: 'user-42', scope: 'read' }) });
    expect(reply.status).toBe(200);
    expect(reply.body.subject).toBe('user-42');
    expect(reply.body.claims).toMatchObject({ sub: 'user-42', scope: 'read' });
  });

  it('answers 401 with a Bearer challenge when no token is sent', async () => {
    const url = await startApp(hsConfig());
    const reply = await get(url);
    expect(reply.status).toBe(401);
    expect(reply.body.error).toEqual({ code: 'unauthorized', message: 'missing bearer token' });
    expect(reply.challenge).toBe('Bearer realm="concord"');
    // Another scheme is not a bearer token either.
    expect((await get(url, { authorization: 'Basic dXNlcjpwYXNz' })).body.error?.message).toBe('missing bearer token');
    expect((await get(url, { authorization: 'Bearer ' })).body.error?.message).toBe('missing bearer token');
  });

  it('refuses an expired token, but tolerates a few seconds of clock skew', async () => {
    const url = await startApp(hsConfig());
    expect401(await get(url, { token: await signHs256({}, { expiresIn: -60 }) }), 'token expired');
    expect((await get(url, { token: await signHs256({}, { expiresIn: -2 }) })).status).toBe(200);
  });

  it('refuses a token that is not valid yet', async () => {
    const url = await startApp(hsConfig());
    const token = await signHs256({ nbf: Math.floor(Date.now() / 1000) + 120 });
    expect401(await get(url, { token }), 'token not yet valid');
  });

  it('refuses a token signed with another secret', async () => {
    const url = await startApp(hsConfig());
    const token = await signHs256({}, { secret: 'some-other-secret-that-is-long-enough-0123' });
    expect401(await get(url, { token }), 'invalid token signature');
  });

  it('refuses a token without exp', async () => {
    const url = await startApp(hsConfig());
    expect401(await get(url, { token: await signHs256({ exp: undefined }) }), 'token has no expiry');
  });

  it('refuses garbage', async () => {
    const url = await startApp(hsConfig());
    expect401(await get(url, { token: 'not-a-jwt' }), 'malformed token');
    const good = await signHs256();
    const [h, p, s] = good.split('.');
    expect401(await get(url, { token: `${h}.${p}.${s}*` }), 'malformed token'); // signature not base64url
    expect401(await get(url, { token: `${h}.${p}x.${s}` }), 'invalid token signature'); // tampered payload
  });

  it('checks the audience when API_AUDIENCE is configured', async () => {
    const config = loadConfig({ SECRET_KEY: TEST_SECRET, API_AUDIENCE: 'https://api.concord.test' });
    expect(config.auth.audience).toBe('https://api.concord.test');
    const url = await startApp(config.auth);
    expect401(await get(url, { token: await signHs256({}, { audience: 'https://elsewhere.test' }) }), 'token audience not accepted');
    expect401(await get(url, { token: await signHs256() }), 'token audience not accepted');
    expect((await get(url, { token: await signHs256({}, { audience: 'https://api.concord.test' }) })).status).toBe(200);
  });

  it('checks the issuer when one is configured', async () => {
    const url = await startApp(hsConfig({ issuer: 'https://issuer.concord.test/' }));
    expect401(await get(url, { token: await signHs256({}, { issuer: 'https://evil.test/' }) }), 'token issuer not accepted');
    expect((await get(url, { token: await signHs256({}, { issuer: 'https://issuer.concord.test/' }) })).status).toBe(200);
  });

  it('accepts the token from the concord_token cookie', async () => {
    const url = await startApp(hsConfig());
    const ok = await get(url, { cookie: await signHs256({ sub: 'browser-user' }) });
    expect(ok.status).toBe(200);
    expect(ok.body.subject).toBe('browser-user');
    expect401(await get(url, { cookie: await signHs256({}, { expiresIn: -60 }) }), 'token expired');
  });

  it('prefers the Authorization header over the cookie', async () => {
    const url = await startApp(hsConfig());
    const reply = await get(url, {
      token: await signHs256({ sub: 'header-user' }),
      cookie: await signHs256({ sub: 'cookie-user' }),
    });
    expect(reply.body.subject).toBe('header-user');
  });

  it('does not touch errors thrown downstream', async () => {
    const url = await startApp(hsConfig());
    const reply = await get(`${url}/forbidden`, { token: await signHs256() });
    expect(reply.status).toBe(403);
    expect(reply.body.error?.code).toBe('forbidden');
    expect(reply.challenge).toBeNull();
  });

  it("keeps the challenge header under Koa's default error handler too", async () => {
    const url = await startApp(hsConfig(), undefined, { errorMiddleware: false });
    const res = await fetch(url, { headers: { authorization: `Bearer ${await signHs256({}, { expiresIn: -60 })}` } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token", error_description="token expired"');
  });
});

describe('requireAuth with RS256 (JWKS)', () => {
  it('accepts a token signed by the published key', async () => {
    const url = await startApp(rsConfig());
    const reply = await get(url, { token: await jwks.sign({ sub: 'auth0|abc' }) });
    expect(reply.status).toBe(200);
    expect(reply.body.subject).toBe('auth0|abc');
  });

  it('refuses a token signed by a key that is not in the JWKS', async () => {
    const url = await startApp(rsConfig());
    expect401(await get(url, { token: await jwks.signWithForeignKey() }), 'invalid token signature');
  });

  it('refuses an unknown kid without refetching the JWKS for every such token', async () => {
    const url = await startApp(rsConfig());
    expect((await get(url, { token: await jwks.sign() })).status).toBe(200);
    const before = jwks.requests();
    for (let i = 0; i < 20; i++) {
      expect401(await get(url, { token: await jwks.sign({}, { kid: `bogus-${i}` }) }), 'token signing key not recognized');
    }
    expect(jwks.requests()).toBe(before);
  });

  it('checks audience and issuer on RS256 tokens', async () => {
    const url = await startApp(rsConfig({ audience: 'concord-api' }));
    expect401(await get(url, { token: await jwks.sign({}, { audience: 'other-api' }) }), 'token audience not accepted');
    expect((await get(url, { token: await jwks.sign({}, { audience: 'concord-api' }) })).status).toBe(200);
    const wrongIssuer = await startApp(rsConfig({ issuer: 'https://tenant.auth0.test/' }));
    expect401(await get(wrongIssuer, { token: await jwks.sign() }), 'token issuer not accepted');
  });

  it('refuses an HS256 token when only RS256 is allowed (alg confusion)', async () => {
    const url = await startApp(rsConfig());
    const { jwk, pem } = await publishedKey();
    for (const secret of [pem, JSON.stringify(jwk)]) {
      const forged = await new SignJWT({ sub: 'attacker' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: jwks.kid })
        .setIssuer(jwks.issuer)
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode(secret));
      expect401(await get(url, { token: forged }), 'token algorithm not accepted');
    }
  });

  it('checks an HS256 token only against SECRET_KEY, never the public key, when both are allowed', async () => {
    const url = await startApp(rsConfig({ secret: TEST_SECRET, algorithms: ['HS256', 'RS256'] }));
    const { pem } = await publishedKey();
    const forged = await signHs256({ sub: 'attacker' }, { secret: pem, issuer: jwks.issuer });
    expect401(await get(url, { token: forged }), 'invalid token signature');
    // Both kinds of honest token still work.
    expect((await get(url, { token: await signHs256({}, { issuer: jwks.issuer }) })).status).toBe(200);
    expect((await get(url, { token: await jwks.sign() })).status).toBe(200);
  });

  it('refuses an unsigned (alg "none") token', async () => {
    const url = await startApp(rsConfig({ secret: TEST_SECRET, algorithms: ['HS256', 'RS256'] }));
    const unsecured = new UnsecuredJWT({ sub: 'attacker' }).setIssuer(jwks.issuer).setExpirationTime('1h').encode();
    expect401(await get(url, { token: unsecured }), 'token algorithm not accepted');
  });

  it('answers 503 (DependencyError) when the JWKS server is down', async () => {
    const gone = await startJwksServer();
    const token = await gone.sign();
    await gone.close();
    const url = await startApp(rsConfig({ jwksUrl: gone.url, issuer: gone.issuer }));
    const reply = await get(url, { token });
    expect(reply.status).toBe(503);
    expect(reply.body.error).toEqual({ code: 'dependency_unavailable', message: 'identity provider key set unavailable' });
    expect(reply.challenge).toBeNull();
  });

  it('answers 503 when the JWKS fetch times out', async () => {
    const hanging = createServer(() => {
      /* never answers */
    });
    const base = await listen(hanging);
    closers.push(closer(hanging));
    const url = await startApp(rsConfig({ jwksUrl: `${base}/.well-known/jwks.json` }), { jwksTimeoutMs: 200 });
    const reply = await get(url, { token: await jwks.sign() });
    expect(reply.status).toBe(503);
    expect(reply.body.error).toEqual({ code: 'dependency_unavailable', message: 'identity provider key set timed out' });
  });

  it('does not hammer a failing JWKS endpoint', async () => {
    let hits = 0;
    const failing = createServer((_req, res) => {
      hits += 1;
      res.writeHead(500).end();
    });
    const base = await listen(failing);
    closers.push(closer(failing));
    const url = await startApp(rsConfig({ jwksUrl: `${base}/.well-known/jwks.json` }));
    const token = await jwks.sign();
    const replies = await Promise.all(Array.from({ length: 10 }, () => get(url, { token })));
    for (const r of replies) expect(r.status).toBe(503);
    for (let i = 0; i < 10; i++) expect((await get(url, { token })).status).toBe(503);
    expect(hits).toBe(1);
  });

  it('keeps verifying with cached keys while a refetch is failing', async () => {
    const body = JSON.stringify(await (await fetch(jwks.url)).json());
    let failing = false;
    let hits = 0;
    const flaky = createServer((_req, res) => {
      hits += 1;
      if (failing) res.writeHead(502).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    });
    const base = await listen(flaky);
    closers.push(closer(flaky));
    const url = await startApp(rsConfig({ jwksUrl: `${base}/.well-known/jwks.json` }), { jwksCooldownMs: 0 });
    expect((await get(url, { token: await jwks.sign() })).status).toBe(200);
    expect(hits).toBe(1);
    failing = true;
    // An unknown kid makes jose refetch (no cooldown here); the refetch fails: 503.
    expect((await get(url, { token: await jwks.sign({}, { kid: 'rotated-in' }) })).status).toBe(503);
    expect(hits).toBe(2);
    // Known keys keep working, and nothing hits the failing endpoint for a while.
    expect((await get(url, { token: await jwks.sign() })).status).toBe(200);
    expect401(await get(url, { token: await jwks.sign({}, { kid: 'rotated-in' }) }), 'token signing key not recognized');
    expect(hits).toBe(2);
  });
});

describe("requireAuth in mode 'none'", () => {
  it('passes every request as anonymous', async () => {
    const config = loadConfig({ AUTH_MODE: 'none' });
    const url = await startApp(config.auth);
    const reply = await get(url);
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ subject: 'anonymous', claims: {} });
    expect((await get(url, { token: 'garbage' })).status).toBe(200);
  });
});

describe('createTokenVerifier', () => {
  it('returns the principal for a good token', async () => {
    const verifier = createTokenVerifier(hsConfig());
    const principal = await verifier.verify(await signHs256({ sub: 'svc', role: 'admin' }));
    expect(principal.subject).toBe('svc');
    expect(principal.claims.role).toBe('admin');
  });

  it('refuses algorithms that are not configured', async () => {
    const verifier = createTokenVerifier(hsConfig({ algorithms: ['HS512'] }));
    await expect(verifier.verify(await signHs256())).rejects.toMatchObject({ status: 401, message: 'token algorithm not accepted' });
  });
});

describe('verified-token cache', () => {
  it('answers a repeat of a verified token without re-verifying, but never past its expiry', async () => {
    const config = loadConfig({ SECRET_KEY: TEST_SECRET });
    const verifier = createTokenVerifier(config.auth, { clockToleranceSec: 0 });
    // exp is in whole seconds after iat: 1 s of lifetime can be almost none when signed late in a
    // second (the first verify then already failed); 3 s, then wait until just past exp.
    const token = await signHs256({ sub: 'repeat' }, { expiresIn: 3 });
    const { exp } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number };
    expect((await verifier.verify(token)).subject).toBe('repeat');
    expect((await verifier.verify(token)).subject).toBe('repeat'); // from the cache
    await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 300));
    await expect(verifier.verify(token)).rejects.toMatchObject({ status: 401, message: 'token expired' });
  });

  it('caches nothing for a token that failed', async () => {
    const config = loadConfig({ SECRET_KEY: TEST_SECRET });
    const verifier = createTokenVerifier(config.auth);
    const forged = await signHs256({ sub: 'x' }, { secret: 'another-secret-that-is-long-enough-0123456789' });
    await expect(verifier.verify(forged)).rejects.toMatchObject({ status: 401 });
    await expect(verifier.verify(forged)).rejects.toMatchObject({ status: 401 });
  });
});
