import { createSecretKey } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type CryptoKey,
  type FlattenedJWSInput,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
  type ProtectedHeaderParameters,
} from 'jose';
import type { AuthConfig } from '../runtime/config.js';
import { DependencyError, UnauthorizedError } from '../runtime/errors.js';

/**
 * Bearer-token authentication at the HTTP edge (DESIGN rule 8: named errors, mapped once).
 *
 * `createTokenVerifier` turns an `AuthConfig` into something that verifies one compact JWT;
 * `requireAuth` is the Koa middleware that finds the token on a request and puts the
 * resulting `Principal` on `ctx.state.principal`.
 *
 * Key choice is driven by the token header's `alg`, never by the key: HS* tokens are
 * only ever checked against SECRET_KEY, RS, ES and PS tokens only against the JWKS, and an
 * `alg` outside `config.algorithms` is refused before any key is looked at. That is what
 * defeats the RS256→HS256 "alg confusion" attack (an HS256 token MACed with the public key).
 */

export interface Principal {
  /** The token's `sub` claim; `'anonymous'` when auth is off. */
  subject: string | undefined;
  /** All verified claims of the token (`{}` when auth is off). */
  claims: JWTPayload;
}

/** What `requireAuth` leaves on `ctx.state`. */
export interface AuthState {
  principal: Principal;
}

export interface TokenVerifier {
  /**
   * Verifies a compact JWT. Rejects with `UnauthorizedError` (401) when the token is not
   * acceptable, `DependencyError` (503) when the JWKS cannot be fetched.
   */
  verify(token: string): Promise<Principal>;
}

/** Tuning knobs; the defaults suit production, tests shorten them. */
export interface TokenVerifierOptions {
  /** Leeway for exp/nbf, in seconds. @defaultValue 5 */
  clockToleranceSec?: number;
  /** Refuse tokens that carry no `exp` claim. @defaultValue true */
  requireExpiry?: boolean;
  /** Timeout of one JWKS fetch, in ms. @defaultValue 5000 */
  jwksTimeoutMs?: number;
  /** After a successful JWKS fetch, an unknown `kid` does not trigger another fetch for this long (ms). @defaultValue 30000 */
  jwksCooldownMs?: number;
  /** Keys are refetched once they are older than this (ms). @defaultValue 600000 */
  jwksCacheMaxAgeMs?: number;
  /** After a failed JWKS fetch, answer 503 at once (no new fetch) for this long (ms). @defaultValue 5000 */
  jwksFailureCooldownMs?: number;
}

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

/** Verified tokens kept this long at most (and never past their exp): repeat callers skip the crypto. */
const VERIFIED_CACHE_MS = 30_000;
const VERIFIED_CACHE_MAX = 10_000;

export function createTokenVerifier(config: AuthConfig, options: TokenVerifierOptions = {}): TokenVerifier {
  const accepted = new Set<string>(config.algorithms);
  const hmacAlgorithms = config.algorithms.filter(isHmac);
  const keyAlgorithms = config.algorithms.filter((a) => !isHmac(a));
  // Imported once: jose would otherwise import a raw secret as a key on every request.
  const secret = config.secret ? createSecretKey(Buffer.from(config.secret, 'utf8')) : undefined;
  // The exact token string -> its verified principal, until min(exp, now + 30 s).
  // Bounded, oldest evicted first; a hit is the same bytes that already verified.
  const verified = new Map<string, { principal: Principal; until: number }>();
  const jwks = config.jwksUrl ? createJwksResolver(config.jwksUrl, options) : undefined;

  const baseOptions: JWTVerifyOptions = {
    clockTolerance: options.clockToleranceSec ?? 5,
    requiredClaims: (options.requireExpiry ?? true) ? ['exp'] : [],
    ...(config.issuer !== undefined ? { issuer: config.issuer } : {}),
    ...(config.audience !== undefined ? { audience: config.audience } : {}),
  };

  return {
    async verify(token: string): Promise<Principal> {
      const cached = verified.get(token);
      if (cached) {
        if (Date.now() < cached.until) return cached.principal;
        verified.delete(token);
      }
      let header: ProtectedHeaderParameters;
      try {
        header = decodeProtectedHeader(token);
      } catch {
        throw new UnauthorizedError('malformed token');
      }
      const alg = header.alg;
      if (typeof alg !== 'string' || !accepted.has(alg)) {
        throw new UnauthorizedError('token algorithm not accepted');
      }

      let payload: JWTPayload;
      try {
        if (isHmac(alg)) {
          if (!secret) throw new UnauthorizedError('token algorithm not accepted');
          ({ payload } = await jwtVerify(token, secret, { ...baseOptions, algorithms: hmacAlgorithms }));
        } else {
          if (!jwks) throw new UnauthorizedError('token algorithm not accepted');
          payload = await verifyWithKeySet(token, jwks, { ...baseOptions, algorithms: keyAlgorithms });
        }
      } catch (err) {
        throw toConcordError(err);
      }
      const principal: Principal = { subject: typeof payload.sub === 'string' ? payload.sub : undefined, claims: payload };
      const until = Math.min(Date.now() + VERIFIED_CACHE_MS, typeof payload.exp === 'number' ? payload.exp * 1000 : Date.now() + VERIFIED_CACHE_MS);
      if (verified.size >= VERIFIED_CACHE_MAX) verified.delete(verified.keys().next().value!);
      verified.set(token, { principal, until });
      return principal;
    },
  };
}

/**
 * Koa middleware guarding everything mounted after it. With `mode === 'none'` every request
 * passes as `anonymous`. Otherwise the token comes from `Authorization: Bearer <jwt>` or,
 * failing that, the `concord_token` cookie. A 401 carries an RFC 6750 `WWW-Authenticate`
 * header (also attached as `err.headers`, which Koa's default error handler honours).
 * Only verification errors are touched: errors thrown downstream pass through untouched.
 */
export function requireAuth(verifier: TokenVerifier, mode: 'jwt' | 'none'): Middleware {
  if (mode === 'none') {
    return async (ctx, next) => {
      setPrincipal(ctx, { subject: 'anonymous', claims: {} });
      await next();
    };
  }
  return async (ctx, next) => {
    const token = tokenOf(ctx);
    if (token === undefined) {
      // RFC 6750 §3.1: no error code when the request carried no credentials at all.
      throw challenge(ctx, new UnauthorizedError('missing bearer token'), 'Bearer realm="concord"');
    }
    let principal: Principal;
    try {
      principal = await verifier.verify(token);
    } catch (err) {
      if (err instanceof UnauthorizedError) {
        throw challenge(ctx, err, `Bearer error="invalid_token", error_description="${quoteSafe(err.message)}"`);
      }
      throw err;
    }
    setPrincipal(ctx, principal);
    await next();
  };
}

/** Name of the cookie a browser login step sets (e.g. to open Bull Board). */
export const TOKEN_COOKIE = 'concord_token';

// ---------------------------------------------------------------------------

function isHmac(alg: string): boolean {
  return alg.startsWith('HS');
}

function setPrincipal(ctx: Context, principal: Principal): void {
  (ctx.state as AuthState).principal = principal;
}

function tokenOf(ctx: Context): string | undefined {
  const header = ctx.get('Authorization');
  const match = /^Bearer(?:[ \t]+(.*))?$/i.exec(header.trim());
  if (match) {
    const token = (match[1] ?? '').trim();
    if (token !== '') return token;
  }
  const cookie = ctx.cookies.get(TOKEN_COOKIE, { signed: false });
  return cookie !== undefined && cookie.trim() !== '' ? cookie.trim() : undefined;
}

function challenge(ctx: Context, err: UnauthorizedError, value: string): UnauthorizedError {
  ctx.set('WWW-Authenticate', value);
  // Koa's own ctx.onerror clears headers and then re-applies `err.headers`.
  Object.assign(err, { headers: { 'WWW-Authenticate': value } });
  return err;
}

/** A quoted-string must not carry `"` or `\`; our messages never do, but stay safe. */
function quoteSafe(text: string): string {
  return text.replace(/["\\]/g, "'");
}

/** The JWKS did not answer usably: surfaced as 503, never as a token problem. */
class JwksUnavailable extends Error {
  constructor(readonly reason: 'timeout' | 'unreachable', options?: { cause?: unknown }) {
    super(`JWKS ${reason}`, options);
  }
}

/**
 * jose's remote key set (cached; an unknown `kid` refetches at most once per cooldown) plus
 * a negative cache: after a failed fetch, requests fail fast for `jwksFailureCooldownMs`
 * instead of each one hitting the identity provider again. During that window, keys that
 * are still fresh in the cache keep working.
 */
function createJwksResolver(url: string, options: TokenVerifierOptions): KeyResolver {
  const remote = createRemoteJWKSet(new URL(url), {
    timeoutDuration: options.jwksTimeoutMs ?? 5_000,
    cooldownDuration: options.jwksCooldownMs ?? 30_000,
    cacheMaxAge: options.jwksCacheMaxAgeMs ?? 600_000,
  });
  const failureCooldownMs = options.jwksFailureCooldownMs ?? 5_000;
  let failedUntil = 0;
  let lastFailure: JwksUnavailable = new JwksUnavailable('unreachable');

  return async (header, token) => {
    if (Date.now() < failedUntil) {
      const cached = remote.fresh ? remote.jwks() : undefined;
      if (!cached) throw lastFailure;
      return createLocalJWKSet(cached)(header, token);
    }
    try {
      return await remote(header, token);
    } catch (err) {
      // Verdicts about the token, not about the key set's availability.
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      // Everything else (network error, timeout, non-200, non-JSON, malformed set) is the
      // provider's side.
      failedUntil = Date.now() + failureCooldownMs;
      lastFailure = new JwksUnavailable(err instanceof errors.JWKSTimeout ? 'timeout' : 'unreachable', { cause: err });
      throw lastFailure;
    }
  };
}

/** jose 6 leaves "several keys match" to the caller: try each candidate key in turn. */
async function verifyWithKeySet(token: string, resolve: KeyResolver, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, resolve, options)).payload;
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    for await (const key of err) {
      try {
        return (await jwtVerify(token, key, options)).payload;
      } catch (inner) {
        if (inner instanceof errors.JWSSignatureVerificationFailed) continue;
        throw inner;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

/** One place that turns jose's verdicts into the runtime's named errors. */
function toConcordError(err: unknown): Error {
  if (err instanceof UnauthorizedError || err instanceof DependencyError) return err;
  if (err instanceof JwksUnavailable) {
    return new DependencyError(
      err.reason === 'timeout' ? 'identity provider key set timed out' : 'identity provider key set unavailable',
      { dependency: 'jwks' },
      { cause: err.cause },
    );
  }
  const unauthorized = (message: string) => new UnauthorizedError(message, undefined, { cause: err });
  if (err instanceof errors.JWTExpired) return unauthorized('token expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'aud':
        return unauthorized('token audience not accepted');
      case 'iss':
        return unauthorized('token issuer not accepted');
      case 'nbf':
        return unauthorized('token not yet valid');
      case 'exp':
        return unauthorized(err.reason === 'missing' ? 'token has no expiry' : 'token expiry invalid');
      case 'iat':
        return unauthorized('token issue time invalid');
      default:
        return unauthorized('token claims not accepted');
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return unauthorized('invalid token signature');
  if (err instanceof errors.JOSEAlgNotAllowed) return unauthorized('token algorithm not accepted');
  if (err instanceof errors.JWKSNoMatchingKey) return unauthorized('token signing key not recognized');
  if (err instanceof errors.JWKSMultipleMatchingKeys) return unauthorized('invalid token signature');
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return unauthorized('malformed token');
  if (err instanceof errors.JOSENotSupported) return unauthorized('token not supported');
  if (err instanceof errors.JOSEError) return unauthorized('invalid token');
  // Not a verdict on the token: a bug or an unusable key. Let it surface as a 500.
  return err instanceof Error ? err : new Error(String(err));
}
