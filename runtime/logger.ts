import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * The process's root logger: JSON lines on stdout. Children carry the context
 * that makes a line findable: actor, queue, jobId, reqId.
 */
export function createLogger(level: LevelWithSilent = 'info', base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
