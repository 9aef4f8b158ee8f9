import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Logger } from '../runtime/logger.js';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * A request id on every response and log line: the caller's `X-Request-Id` when
 * it is safe to echo, else a new UUID. One access log line per request.
 */
export function requestContext(log: Logger): Middleware {
  return async (ctx, next) => {
    const incoming = ctx.get('x-request-id');
    const requestId = SAFE_ID.test(incoming) ? incoming : randomUUID();
    const reqLog = log.child({ reqId: requestId });
    ctx.state.requestId = requestId;
    ctx.state.log = reqLog;
    ctx.set('X-Request-Id', requestId);
    const started = performance.now();
    try {
      await next();
    } finally {
      const level = ctx.status >= 500 ? 'error' : ctx.path === '/health' || ctx.path === '/metrics' ? 'debug' : 'info';
      reqLog[level]({ method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(performance.now() - started) }, 'request');
    }
  };
}
