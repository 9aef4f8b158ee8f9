import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { KoaAdapter } from '@bull-board/koa';
import type { Middleware } from 'koa';
import type { RuntimeServices } from '../runtime/index.js';

export const BULL_BOARD_PATH = '/admin/queues';

/**
 * Bull Board over every registered queue and its DLQ. Queues registered after
 * start (actors register theirs) are picked up on the next request.
 */
export function bullBoard(services: RuntimeServices): { middleware: Middleware; refresh(): void } {
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
  refresh();
  return { middleware: serverAdapter.registerPlugin() as unknown as Middleware, refresh };
}
