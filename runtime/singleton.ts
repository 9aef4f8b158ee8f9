import type { Actor, ActorContext, ActorSpec } from './actor.js';
import { errorMessage, FencedError } from './errors.js';
import { Lease } from './lease.js';

export interface SingletonOptions {
  /** The singleton actor's name (and its lease's, unless `lease` is given). */
  name: string;
  spec?: Partial<ActorSpec>;
  /** Lease name; defaults to the actor's name. */
  lease?: string;
  /** @defaultValue 10000 (ms) */
  ttlMs?: number;
}

/** What a singleton's inner actor learns when it becomes the holder. */
export interface LeaseGrant {
  lease: Lease;
  epoch: number;
}

/**
 * Runs `inner` in exactly one process at a time. Every process waits as a standby
 * polling the lease; the holder renews it at a third of the TTL. A holder that
 * cannot renew stops its inner actor and fails, so the supervisor restarts it as a
 * standby, while another process takes over once the TTL runs out.
 */
export function singleton(opts: SingletonOptions, inner: (grant: LeaseGrant) => Actor): Actor {
  let role: 'standby' | 'leader' | 'idle' = 'idle';
  let running: Actor | undefined;
  let grant: LeaseGrant | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = true;
  const name = opts.name;

  async function becomeLeader(ctx: ActorContext, lease: Lease, epoch: number): Promise<void> {
    grant = { lease, epoch };
    role = 'leader';
    ctx.services.metrics.leaseHeld.set({ lease: lease.name }, 1);
    ctx.log.info({ lease: lease.name, epoch }, 'lease taken; starting as leader');
    running = inner(grant);
    const innerCtx: ActorContext = { ...ctx, log: ctx.log.child({ epoch }) };
    await running.start(innerCtx);
    const renewEvery = Math.max(50, Math.floor(lease.options.ttlMs / 3));
    let lastRenewed = Date.now();
    const renew = async () => {
      if (stopped) return;
      let ok: boolean;
      try {
        ok = await lease.renew(epoch);
        if (ok) lastRenewed = Date.now();
      } catch (err) {
        // Redis unreachable: keep leading only while the lease cannot have expired.
        ok = Date.now() - lastRenewed < lease.options.ttlMs - renewEvery;
        ctx.log.warn({ err: errorMessage(err) }, 'lease renewal failed');
      }
      if (stopped) return;
      if (!ok) {
        ctx.services.metrics.leaseHeld.set({ lease: lease.name }, 0);
        ctx.fail(new FencedError(`lease ${lease.name} lost at epoch ${epoch}`, { lease: lease.name, epoch }));
        return;
      }
      timer = setTimeout(() => void renew(), renewEvery);
    };
    timer = setTimeout(() => void renew(), renewEvery);
  }

  return {
    name,
    spec: opts.spec,
    async start(ctx: ActorContext) {
      stopped = false;
      const { services } = ctx;
      const lease = new Lease(services.redis, opts.lease ?? name, services.processId, {
        ttlMs: opts.ttlMs ?? 10_000,
        prefix: services.config.queuePrefix,
      });
      role = 'standby';
      const poll = Math.max(50, Math.floor(lease.options.ttlMs / 4));
      const attempt = async () => {
        if (stopped) return;
        try {
          const epoch = await lease.tryAcquire();
          if (epoch !== null && !stopped) {
            await becomeLeader(ctx, lease, epoch);
            return;
          }
        } catch (err) {
          if (role === 'leader') {
            ctx.fail(err instanceof Error ? err : new Error(String(err)));
            return;
          }
          ctx.log.warn({ err: errorMessage(err) }, 'lease acquisition failed; retrying');
        }
        if (!stopped) timer = setTimeout(() => void attempt(), poll);
      };
      await attempt();
    },
    async stop(timeoutMs: number) {
      stopped = true;
      clearTimeout(timer);
      const current = running;
      const held = grant;
      running = undefined;
      grant = undefined;
      role = 'idle';
      await current?.stop(timeoutMs);
      if (held) await held.lease.release(held.epoch).catch(() => undefined);
    },
    describe: () => ({ role, epoch: grant?.epoch, ...running?.describe?.() }),
  };
}
