import type { QueueDefinition } from '../queues/index.js';
import type { Actor, ActorContext, ActorSpec } from './actor.js';
import { Mailbox, type JobHandler, type MailboxOptions } from './mailbox.js';

export interface QueueActorOptions<T, R> {
  name: string;
  queue: QueueDefinition<T>;
  handler: JobHandler<T, R>;
  mailbox?: Partial<MailboxOptions>;
  spec?: Partial<ActorSpec>;
}

/** An actor whose work is the jobs of one queue, consumed through a Mailbox. */
export function queueActor<T, R = unknown>(opts: QueueActorOptions<T, R>): Actor {
  let mailbox: Mailbox<T, R> | undefined;
  return {
    name: opts.name,
    spec: opts.spec,
    async start(ctx: ActorContext) {
      const { services } = ctx;
      services.registry.register(opts.queue);
      mailbox = new Mailbox(
        opts.queue,
        opts.handler,
        {
          connection: services.workerConnection,
          prefix: services.config.queuePrefix,
          metrics: services.metrics,
          deadLetters: services.deadLetters,
          log: ctx.log,
        },
        opts.mailbox,
      );
      await mailbox.start((err) => ctx.fail(err));
    },
    async stop(timeoutMs: number) {
      const current = mailbox;
      mailbox = undefined;
      await current?.stop(timeoutMs);
    },
    describe: () => ({ queue: opts.queue.name, concurrency: mailbox?.options.concurrency }),
  };
}
