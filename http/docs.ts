import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { RouteSpec } from './route.js';

const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'application/javascript; charset=utf-8',
};

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Concord API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-ui-standalone-preset.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#ui', presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: 'StandaloneLayout' });</script>
</body></html>`;

/** `/openapi.json` and a Swagger UI at `/docs`, served from the swagger-ui-dist package (no network). */
export function docsRoutes(openapi: () => Record<string, unknown>): RouteSpec[] {
  const cache = new Map<string, Buffer>();
  // The package's directory, found without loading its main module: that would `require` the
  // 1.5 MB UI bundle into every process's heap (about 300 ms of start-up CPU), for a page
  // only browsers use.
  const root = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  return [
    {
      method: 'get',
      path: '/openapi.json',
      summary: 'This OpenAPI document',
      tags: ['meta'],
      auth: false,
      responses: { 200: 'OpenAPI 3.1 document' },
      handler: (ctx) => {
        ctx.body = openapi();
      },
    },
    {
      method: 'get',
      path: '/docs',
      summary: 'Interactive API documentation',
      tags: ['meta'],
      auth: false,
      responses: { 200: { description: 'HTML page', contentType: 'text/html', schema: { type: 'string' } } },
      handler: (ctx) => {
        ctx.type = 'text/html; charset=utf-8';
        ctx.body = PAGE;
      },
    },
    {
      method: 'get',
      path: '/docs/:asset',
      summary: 'Static assets of the documentation page',
      tags: ['meta'],
      auth: false,
      params: [{ name: 'asset', in: 'path', description: 'Asset file name', schema: { type: 'string', enum: Object.keys(ASSETS) } }],
      responses: { 200: 'The asset', 404: 'No such asset' },
      handler: async (ctx) => {
        const name = String(ctx.params.asset);
        const type = ASSETS[name];
        if (!type) return; // falls through to the 404 body
        let body = cache.get(name);
        if (!body) {
          body = await readFile(join(root, name));
          cache.set(name, body);
        }
        ctx.type = type;
        ctx.set('Cache-Control', 'public, max-age=86400');
        ctx.body = body;
      },
    },
  ];
}
