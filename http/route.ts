import type { Middleware, ParameterizedContext } from 'koa';
import type Router from '@koa/router';
import type { z } from 'zod';
import { ValidationError } from '../runtime/errors.js';
import { zodIssues } from '../runtime/validation.js';

export type JsonSchema = Record<string, unknown>;

export interface ParamSpec {
  name: string;
  in: 'path' | 'query';
  description: string;
  required?: boolean;
  schema: JsonSchema;
}

/**
 * One route: its handler and the facts /openapi.json publishes about it. Routes
 * are declared once in this form so the document cannot drift from the code.
 */
export interface RouteSpec {
  method: 'get' | 'post' | 'put' | 'delete';
  /** Koa style: `/api/v1/dlq/:queue` */
  path: string;
  summary: string;
  tags: string[];
  /** Whether a valid token is needed. */
  auth: boolean;
  params?: ParamSpec[];
  requestBody?: JsonSchema;
  /** status -> description (and optional schema) */
  responses: Record<number, string | { description: string; schema?: JsonSchema; contentType?: string }>;
  handler: Middleware;
}

export function mountRoutes(router: Router, routes: readonly RouteSpec[], auth: Middleware): void {
  for (const r of routes) {
    const chain = r.auth ? [auth, r.handler] : [r.handler];
    router[r.method](r.path, ...(chain as [Middleware]));
  }
}

/** Parses `input` with `schema` or throws a 400 naming each bad field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, where: 'body' | 'query' | 'path'): z.infer<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ValidationError(`invalid ${where}`, zodIssues(result.error, where === 'body' ? undefined : where));
  return result.data;
}

export type AppContext = ParameterizedContext;
