/**
 * The server of the sync-events benchmark (sync-events.ts starts it; not a benchmark of its
 * own). It runs in a process of its own so the load generator never shares its event loop.
 *
 *   node --import tsx scripts/bench/sync-events-server.ts concord       the real thing: startProcess,
 *        role all, every enabled capability, configured by the environment (Concord's variables)
 *   node --import tsx scripts/bench/sync-events-server.ts concord-api   the same without the sync-events
 *        processor actor (events stay pending): the API's share of the cost
 *   node --import tsx scripts/bench/sync-events-server.ts bare-insert   ceiling: node:http, JSON.parse
 *        and the same INSERT as recordSyncEvent on a pool of the same size; no framework,
 *        auth, validation or wake
 *   node --import tsx scripts/bench/sync-events-server.ts bare-hello    ceiling: node:http answering
 *        201 at once; what the load generator and HTTP alone reach on this machine
 *
 * Once listening it prints one line `{"bench_server":"listening","port":N}` on stdout (Concord's
 * own log lines, JSON too, may come before it). SIGTERM stops it and exits 0.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startProcess } from '../../cli/process.js';
import { selectCapabilities } from '../../cli/capabilities.js';
import { SYNC_EVENTS } from '../../actors/sync-events/index.js';
import { createPgPool, loadConfig } from '../../runtime/index.js';

const mode = process.argv[2];
const listening = (port: number) => console.log(JSON.stringify({ bench_server: 'listening', mode, port }));

function onTerm(stop: () => Promise<unknown>): void {
  let stopping = false;
  const handler = () => {
    if (stopping) process.exit(1);
    stopping = true;
    void stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

async function bare(withInsert: boolean): Promise<void> {
  const config = loadConfig(process.env);
  const pool = withInsert ? createPgPool(config.databaseUrl!) : undefined;
  const reply = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (!pool) return reply(res, 201, { message: 'Sync event created successfully', event_id: randomUUID() });
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { file_id: string; event_type: string; metadata?: Record<string, unknown> };
    const { rows } = await pool.query<{ event_id: string }>(
      `INSERT INTO sync_events (id, file_id, event_type, metadata, idempotency_key, request_hash)
       VALUES ($1, $2, $3, $4::jsonb, $5, $6)
       ON CONFLICT (idempotency_key) DO NOTHING
       RETURNING id AS event_id, file_id, event_type, created_at, processed, processed_at, metadata`,
      [randomUUID(), body.file_id, body.event_type, JSON.stringify(body.metadata ?? {}), null, null],
    );
    reply(res, 201, { message: 'Sync event created successfully', event_id: rows[0]!.event_id });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => reply(res, 500, { error: String(err) }));
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTerm(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await pool?.end();
  });
  listening((server.address() as AddressInfo).port);
}

if (mode === 'concord' || mode === 'concord-api') {
  const config = loadConfig(process.env);
  const capabilities = selectCapabilities('all', undefined, process.env);
  // concord-api: the same process without the sync-events processor (the cost split of the bench).
  const actors = mode === 'concord' ? capabilities.actors : capabilities.actors.filter((a) => a.name !== SYNC_EVENTS);
  const proc = await startProcess({ config, role: 'all', ...capabilities, actors });
  onTerm(() => proc.stop(10_000));
  listening(proc.http.port);
} else if (mode === 'bare-insert' || mode === 'bare-hello') {
  await bare(mode === 'bare-insert');
} else {
  console.error('sync-events-server.ts is started by `npm run bench -- sync-events`; usage: sync-events-server.ts concord|concord-api|bare-insert|bare-hello');
  process.exit(2);
}
