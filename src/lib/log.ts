// One pino logger factory so every component logs JSON the same way (level from LOG_LEVEL).
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/** Where logs go: `stdout`, `stderr`, or an absolute file path (appended, its directory created). */
export type LogTarget = 'stdout' | 'stderr' | `/${string}`;

/** The destination for a target; undefined = pino's default (stdout). Writes are synchronous, so a
 * fatal line is on disk before the process exits. */
export function logDestination(target: LogTarget): DestinationStream | undefined {
  if (target === 'stdout') return undefined;
  if (target === 'stderr') return pino.destination({ dest: 2, sync: true });
  return pino.destination({ dest: target, mkdir: true, append: true, sync: true });
}

export function createLogger(name: string, destination?: DestinationStream): Logger {
  const level = process.env.LOG_LEVEL ?? 'info';
  const options = { name, level, base: { component: name } };
  return destination ? pino(options, destination) : pino(options);
}
