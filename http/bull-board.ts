import type { Context, Middleware, Next } from 'koa';
import type { RuntimeServices } from '../runtime/index.js';

export const BULL_BOARD_PATH = '/admin/queues';

interface Board {
  middleware: Middleware;
  refresh(): void;
}

/**
 * Bull Board over every registered queue and its DLQ. Queues registered after
 * start (actors register theirs) are picked up on the next request. Built on the
 * first request to the board: its modules (about 20 MB of RSS and 0.4 s of start-up
 * CPU) and its queue handles are not paid for by processes nobody opens it on.
 */
export function bullBoard(services: RuntimeServices): { handle(ctx: Context, next: Next): Promise<void> } {
  let board: Promise<Board> | undefined;
  return {
    async handle(ctx, next) {
      board ??= build(services).catch((err: unknown) => {
        board = undefined; // the next request tries again
        throw err;
      });
      const b = await board;
      b.refresh();
      await b.middleware(ctx, next);
    },
  };
}

async function build(services: RuntimeServices): Promise<Board> {
  const [{ createBullBoard }, { BullMQAdapter }, { KoaAdapter }] = await Promise.all([import('@bull-board/api'), import('@bull-board/api/bullMQAdapter'), import('@bull-board/koa')]);
  const serverAdapter = new KoaAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  const board = createBullBoard({ queues: [], serverAdapter, options: { uiConfig: { boardTitle: 'Concord' } } });
  let shown = -1;
  const refresh = () => {
    const defs = services.registry.list();
    if (defs.length === shown) return;
    shown = defs.length;
    board.replaceQueues(
      defs.flatMap((def) => [
        new BullMQAdapter(services.queues.queue(def.name)),
        new BullMQAdapter(services.queues.queue(def.name, { dlq: true }), { readOnlyMode: false, description: `dead letters of ${def.name}` }),
      ]),
    );
  };
  return { middleware: serverAdapter.registerPlugin() as unknown as Middleware, refresh };
}
