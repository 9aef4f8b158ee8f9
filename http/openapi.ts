import type { RouteSpec } from './route.js';

const ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
    },
  },
};

/** Builds the OpenAPI 3.1 document from the route table. */
export function buildOpenApi(info: { title: string; version: string; description: string }, routes: readonly RouteSpec[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const responses: Record<string, unknown> = {};
    for (const [status, value] of Object.entries(r.responses)) {
      const v = typeof value === 'string' ? { description: value } : value;
      const isError = Number(status) >= 400;
      const schema = v.schema ?? (isError ? { $ref: '#/components/schemas/Error' } : undefined);
      responses[status] = { description: v.description, ...(schema ? { content: { [v.contentType ?? 'application/json']: { schema } } } : {}) };
    }
    if (r.auth) responses['401'] ??= { description: 'Missing or invalid token', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    (paths[path] ??= {})[r.method] = {
      summary: r.summary,
      tags: r.tags,
      ...(r.auth ? { security: [{ bearerAuth: [] }] } : { security: [] }),
      ...(r.params?.length ? { parameters: r.params.map((p) => ({ ...p, required: p.in === 'path' ? true : (p.required ?? false) })) } : {}),
      ...(r.requestBody ? { requestBody: { required: true, content: { 'application/json': { schema: r.requestBody } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info,
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: { Error: ERROR_SCHEMA },
    },
    security: [{ bearerAuth: [] }],
  };
}
