import Koa, { type Middleware } from 'koa';
import Router from '@koa/router';
import { bodyParser } from '@koa/bodyparser';
import type { ConcordRuntime, ReadinessCheck, StatsSection } from '../runtime/index.js';
import { createTokenVerifier, requireAuth, type TokenVerifier } from './auth.js';
import { BULL_BOARD_PATH, bullBoard } from './bull-board.js';
import { docsRoutes } from './docs.js';
import { errorMiddleware } from './errors.js';
import { buildOpenApi } from './openapi.js';
import { requestContext } from './request-context.js';
import { mountRoutes, type RouteSpec } from './route.js';
import { dlqRoutes } from './routes/dlq.js';
import { metaRoutes, type AppInfo } from './routes/meta.js';
import { statsRoutes } from './routes/stats.js';

export interface HttpAppOptions {
  info: AppInfo;
  /** `control` is the whole control plane (api role); `ops` only health, readiness and metrics (worker role). */
  surface: 'control' | 'ops';
  /** Routes contributed by capabilities (one router file per concern). */
  routes?: RouteSpec[];
  stats?: StatsSection[];
  readiness?: ReadinessCheck[];
  verifier?: TokenVerifier;
}

/**
 * The one Koa app: request context, error mapping, open ops routes, and behind
 * auth the API and Bull Board. Everything is built once here, at start.
 */
export function createHttpApp(runtime: ConcordRuntime, opts: HttpAppOptions): { app: Koa; routes: RouteSpec[] } {
  const { services } = runtime;
  const auth = services.config.auth;
  const app = new Koa({ proxy: true });
  app.silent = true; // errors are logged by errorMiddleware with the request id
  const authMiddleware: Middleware = requireAuth(opts.verifier ?? createTokenVerifier(auth), auth.mode);

  const routes: RouteSpec[] = [...metaRoutes(runtime, opts.info, opts.readiness)];
  if (opts.surface === 'control') {
    routes.push(...statsRoutes(runtime, opts.stats), ...dlqRoutes(runtime), ...(opts.routes ?? []));
    if (services.config.exposeDocs) {
      const document = () => buildOpenApi({ title: 'Concord', version: opts.info.version, description: opts.info.description }, routes);
      routes.push(...docsRoutes(document));
    }
  }

  app.use(requestContext(services.log));
  app.use(errorMiddleware());
  app.use(bodyParser({ enableTypes: ['json'], jsonLimit: '1mb', encoding: 'utf-8' }));

  if (opts.surface === 'control') {
    const board = bullBoard(services);
    // Bull Board stands behind the same auth as the API.
    app.use(async (ctx, next) => {
      if (ctx.path !== BULL_BOARD_PATH && !ctx.path.startsWith(`${BULL_BOARD_PATH}/`)) return next();
      await authMiddleware(ctx, () => board.handle(ctx, next));
    });
  }

  const router = new Router();
  mountRoutes(router, routes, authMiddleware);
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return { app, routes };
}
