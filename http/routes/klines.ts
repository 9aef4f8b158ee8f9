import { z } from 'zod';
import type { ConcordRuntime } from '../../runtime/index.js';
import { DependencyError, ValidationError } from '../../runtime/index.js';
import { klineSchema, klinesIngestLane, splitByLane, streamPosition, SYMBOL, type KlinesIngestJob, type StreamMode } from '../../queues/index.js';
import { packKlines } from '../../queues/klines.js';
import { parseInput, type RouteSpec } from '../route.js';
import { gapReport } from './klines-read.js';
import { missedKlinesJson } from './klines-missed.js';

/** Klines per POST at most (the body limit is 1 MB). */
export const MAX_POST_KLINES = 5000;
const WAIT_MS = 10_000;

const symbol = z.string({ error: 'required' }).regex(SYMBOL, 'a symbol of 1-20 letters, digits, . _ -');
/** A sequence in the query string: a whole number >= 0, no sign, no decimals. */
const seqParam = z
  .string({ error: 'required' })
  .regex(/^-?\d+$/, 'an integer')
  .transform(Number)
  .pipe(z.number().min(0, 'must be >= 0').max(Number.MAX_SAFE_INTEGER, 'too large'));
const missedQuery = z
  .object({
    symbol,
    fromSeq: seqParam,
    toSeq: seqParam,
    limit: z
      .string()
      .regex(/^-?\d+$/, 'an integer')
      .transform(Number)
      .pipe(z.number().min(1, 'must be >= 1').max(1000, 'must be <= 1000'))
      .default(100),
  })
  .refine((q) => q.fromSeq < q.toSeq, {
    path: ['fromSeq'],
    message: 'must be less than toSeq (fromSeq is exclusive, toSeq inclusive)',
    // Only once both are valid numbers: a bad one is reported on its own field.
    when: (payload) => payload.issues.length === 0,
  });
const gapsQuery = z.object({ symbol: symbol.optional() });
const streamParam = z.object({ stream: z.string().regex(SYMBOL, 'a stream name: a symbol, or global') });
const postQuery = z.object({ wait: z.enum(['true', 'false']).optional() });

const klineJson = {
  type: 'object',
  required: ['t', 'T', 's', 'o', 'h', 'l', 'c', 'v'],
  properties: {
    t: { type: 'integer', description: 'open time, epoch ms' },
    T: { type: 'integer', description: 'close time, epoch ms' },
    s: { type: 'string', description: 'symbol' },
    o: { type: 'number' },
    h: { type: 'number' },
    l: { type: 'number' },
    c: { type: 'number' },
    v: { type: 'number' },
  },
};

/** Sequence numbers, the missed-data API and the gap report (seed paths kept as users know them). */
/** `lanes`: KLINES_INGEST_LANES, the same as the workers' (a kline goes to its symbol's lane). */
export function klinesRoutes(runtime: ConcordRuntime, opts: { mode: StreamMode; lanes?: number }): RouteSpec[] {
  const lanes = opts.lanes ?? 1;
  const db = () => runtime.services.pg();
  return [
    {
      method: 'get',
      path: '/api/v1/klines/missed',
      summary: 'Klines of a symbol with fromSeq < sequence <= toSeq, ordered by sequence, paged with hasMore',
      tags: ['klines'],
      auth: true,
      params: [
        { name: 'symbol', in: 'query', required: true, description: 'Trading pair, e.g. BTCUSDT', schema: { type: 'string' } },
        { name: 'fromSeq', in: 'query', required: true, description: 'Exclusive lower bound (the last sequence the client has)', schema: { type: 'integer', minimum: 0 } },
        { name: 'toSeq', in: 'query', required: true, description: 'Inclusive upper bound', schema: { type: 'integer', minimum: 0 } },
        { name: 'limit', in: 'query', description: 'Default 100, at most 1000', schema: { type: 'integer', default: 100, maximum: 1000 } },
      ],
      responses: {
        200: '`{ symbol, fromSeq, toSeq, count, data: [{seq, symbol, timestamp, kline}], hasMore, skipped, missing }`',
        400: 'Missing symbol, a sequence that is not an integer >= 0, fromSeq >= toSeq, or limit out of 1..1000',
      },
      handler: async (ctx) => {
        const q = parseInput(missedQuery, ctx.query, 'query');
        // JSON text written from the rows' text (see klines-missed.ts). Sent as bytes: it is ASCII
        // (a SYMBOL-checked symbol, numbers), so latin1 is its UTF-8, and Koa and the socket then
        // neither measure nor encode 150 kB of string per 1,000-row page.
        ctx.type = 'application/json';
        ctx.body = await missedKlinesJson(db(), opts.mode, q);
      },
    },
    {
      method: 'get',
      path: '/api/v1/klines/gaps',
      summary: 'Per symbol: records (with and without sequence), min/max sequence, and the skipped and missing ranges',
      tags: ['klines'],
      auth: true,
      params: [{ name: 'symbol', in: 'query', description: 'Only this symbol', schema: { type: 'string' } }],
      responses: { 200: '`{ mode, symbols: [...] }` (global mode adds `global`)', 400: 'Bad symbol' },
      handler: async (ctx) => {
        const q = parseInput(gapsQuery, ctx.query, 'query');
        ctx.body = await gapReport(db(), opts.mode, q.symbol);
      },
    },
    {
      method: 'get',
      path: '/api/v1/sequences/:stream',
      summary: 'The current position of a sequence stream (a symbol, or global): in Redis, durably reserved, stamped, stored',
      tags: ['klines'],
      auth: true,
      params: [{ name: 'stream', in: 'path', description: 'A symbol (per-symbol mode) or `global`', schema: { type: 'string' } }],
      responses: { 200: '`{ stream, mode, last, reserved, durable, assigned, stored }`', 400: 'Bad stream name' },
      handler: async (ctx) => {
        const { stream } = parseInput(streamParam, ctx.params, 'path');
        const position = await streamPosition(runtime.services.redis, db(), runtime.services.config.queuePrefix, opts.mode, stream);
        ctx.body = { ...position, mode: opts.mode };
      },
    },
    {
      method: 'post',
      path: '/api/v1/klines',
      summary: 'Ingest klines without Kafka: one kline, an array, or {klines: [...]}; stamped, stored and published by the sequence allocator',
      tags: ['klines'],
      auth: true,
      params: [{ name: 'wait', in: 'query', description: 'true: answer once stored (up to 10 s) with the counts', schema: { type: 'boolean' } }],
      requestBody: { oneOf: [klineJson, { type: 'array', items: klineJson, maxItems: MAX_POST_KLINES }, { type: 'object', properties: { klines: { type: 'array', items: klineJson } } }] },
      responses: {
        202: '`{ accepted, jobId, jobIds }`: queued (one job per ingest lane the symbols fall in; jobId is the first)',
        200: 'With wait=true: `{ accepted, jobId, received, stored, duplicates }`',
        400: 'A kline field that is missing or wrong (named, e.g. body.klines.3.h), or too many klines',
        503: 'Not stored within 10 s (wait=true); the klines stay queued',
      },
      handler: async (ctx) => {
        const { wait } = parseInput(postQuery, ctx.query, 'query');
        const raw: unknown = ctx.request.body;
        const list = Array.isArray(raw) ? raw : raw && typeof raw === 'object' && 'klines' in raw ? raw.klines : raw === undefined ? undefined : [raw];
        if (!Array.isArray(list) || list.length === 0) throw new ValidationError('invalid body', [{ field: 'klines', reason: 'one kline, an array of klines or {klines: [...]}, not empty' }]);
        if (list.length > MAX_POST_KLINES) throw new ValidationError('invalid body', [{ field: 'klines', reason: `${list.length} klines; at most ${MAX_POST_KLINES} per request` }]);
        const klines = parseInput(z.object({ klines: z.array(klineSchema) }), { klines: list }, 'body');
        const added = await Promise.all(
          [...splitByLane(klines.klines, lanes)].map(async ([lane, part]) => {
            const queue = runtime.services.queues.queue(klinesIngestLane(lane).name);
            return { queue, job: await queue.add('http', { source: 'http', count: part.length, packed: packKlines(part) } satisfies KlinesIngestJob) };
          }),
        );
        const ids = { jobId: added[0]!.job.id, jobIds: added.map((a) => a.job.id) };
        if (wait !== 'true') {
          ctx.status = 202;
          ctx.body = { accepted: list.length, ...ids };
          return;
        }
        const deadline = Date.now() + WAIT_MS;
        const totals: Record<string, number> = {};
        for (const { queue, job } of added) {
          for (;;) {
            const state = await job.getState();
            if (state === 'completed' || state === 'unknown') {
              const done = await queue.getJob(job.id!);
              for (const [key, n] of Object.entries((done?.returnvalue ?? {}) as Record<string, number>)) totals[key] = (totals[key] ?? 0) + n;
              break;
            }
            if (state === 'failed') throw new DependencyError(`the batch failed; it is in the ${queue.name} DLQ`, { jobId: job.id });
            if (Date.now() > deadline) throw new DependencyError(`not stored within ${WAIT_MS} ms; the klines stay queued`, { jobId: job.id });
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        ctx.body = { accepted: list.length, ...ids, ...totals };
      },
    },
  ];
}
