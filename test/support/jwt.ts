import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

/**
 * Test helpers for tokens: HS256 tokens signed with a fixed secret, and a local JWKS server
 * (an RS256 key pair published at `/.well-known/jwks.json`) standing in for Auth0.
 */

/** Use as SECRET_KEY in tests (>= 32 characters, as config requires). */
export const TEST_SECRET = 'concord-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';

export interface SignOptions {
  /** Lifetime: a number is seconds from now (negative = already expired); a string is a jose span ('1h', '-10s'). @defaultValue '1h' */
  expiresIn?: string | number;
  audience?: string;
  issuer?: string;
}

/**
 * An HS256 token. `sub` defaults to 'test-user'; `iat` and `exp` are set unless `claims`
 * has its own key for them (pass `{ exp: undefined }` for a token without expiry).
 */
export async function signHs256(
  claims: Record<string, unknown> = {},
  opts: SignOptions & { secret?: string } = {},
): Promise<string> {
  const jwt = build(claims, opts).setProtectedHeader({ alg: 'HS256', typ: 'JWT' });
  return jwt.sign(new TextEncoder().encode(opts.secret ?? TEST_SECRET));
}

export interface JwksServer {
  /** http://127.0.0.1:<port>/.well-known/jwks.json */
  url: string;
  /** http://127.0.0.1:<port>/ - the `iss` of every token `sign` makes. */
  issuer: string;
  /** The `kid` of the published key. */
  kid: string;
  /** An RS256 token from the published key; `iss` is `issuer`, `kid` the published one unless overridden. */
  sign(claims?: Record<string, unknown>, opts?: { expiresIn?: string | number; audience?: string; kid?: string }): Promise<string>;
  /** A token signed by a key NOT published in the JWKS (but claiming the published `kid`). */
  signWithForeignKey(claims?: Record<string, unknown>): Promise<string>;
  /** How many times the JWKS has been fetched. */
  requests(): number;
  close(): Promise<void>;
}

/** A node:http server on 127.0.0.1:<ephemeral> serving one RS256 public JWK. */
export async function startJwksServer(): Promise<JwksServer> {
  const kid = 'concord-test-key-1';
  const published = await generateKeyPair('RS256', { extractable: true });
  const foreign = await generateKeyPair('RS256');
  const jwk: JWK = { ...(await exportJWK(published.publicKey)), kid, alg: 'RS256', use: 'sig' };
  const body = JSON.stringify({ keys: [jwk] });

  let count = 0;
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/.well-known/jwks.json') {
      count += 1;
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}/`;

  const signRs256 = (key: CryptoKey, claims: Record<string, unknown>, opts: SignOptions & { kid?: string }) =>
    build(claims, { issuer, ...opts })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: opts.kid ?? kid })
      .sign(key);

  return {
    url: `${issuer}.well-known/jwks.json`,
    issuer,
    kid,
    sign: (claims = {}, opts = {}) => signRs256(published.privateKey, claims, opts),
    signWithForeignKey: (claims = {}) => signRs256(foreign.privateKey, claims, {}),
    requests: () => count,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function build(claims: Record<string, unknown>, opts: SignOptions): SignJWT {
  const jwt = new SignJWT({ sub: 'test-user', ...claims });
  if (!Object.hasOwn(claims, 'iat')) jwt.setIssuedAt();
  if (!Object.hasOwn(claims, 'exp')) {
    const lifetime = opts.expiresIn ?? '1h';
    jwt.setExpirationTime(typeof lifetime === 'number' ? Math.floor(Date.now() / 1000) + lifetime : lifetime);
  }
  if (opts.audience !== undefined) jwt.setAudience(opts.audience);
  if (opts.issuer !== undefined) jwt.setIssuer(opts.issuer);
  return jwt;
}
