import type { Middleware } from 'koa';
import { ConcordError, type ErrorCode } from '../runtime/errors.js';
import type { Logger } from '../runtime/logger.js';

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

const CODE_BY_STATUS: Record<number, ErrorCode | 'payload_too_large' | 'unsupported_media_type' | 'method_not_allowed'> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  503: 'dependency_unavailable',
};

interface HttpLikeError {
  status?: number;
  statusCode?: number;
  expose?: boolean;
  message?: string;
}

/**
 * Every error leaves as `{error: {code, message, details}}` with a fitting status
 * (DESIGN rule 8). Unknown errors are logged with their stack and answered as a
 * bare 500: no stack trace ever reaches a client.
 */
export function errorMiddleware(): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = { error: { code: 'not_found', message: `no route for ${ctx.method} ${ctx.path}` } } satisfies ErrorBody;
      }
    } catch (err) {
      const log = ctx.state.log as Logger | undefined;
      if (err instanceof ConcordError) {
        ctx.status = err.status;
        ctx.body = { error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } } satisfies ErrorBody;
        if (err.status >= 500) log?.error({ err: err.message, code: err.code }, 'request failed');
        return;
      }
      const e = (err ?? {}) as HttpLikeError;
      const status = e.status ?? e.statusCode;
      if (status && status >= 400 && status < 500 && e.expose !== false) {
        // Koa/bodyparser client errors (bad JSON, too large, wrong media type).
        ctx.status = status;
        ctx.body = { error: { code: CODE_BY_STATUS[status] ?? 'bad_request', message: e.message ?? 'bad request' } } satisfies ErrorBody;
        return;
      }
      log?.error({ err }, 'unhandled error');
      ctx.status = 500;
      ctx.body = { error: { code: 'internal', message: 'internal error' } } satisfies ErrorBody;
    }
  };
}
