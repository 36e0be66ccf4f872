// One pino logger factory so every component logs JSON the same way (level from LOG_LEVEL).
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(name: string, destination?: DestinationStream): Logger {
  const level = process.env.LOG_LEVEL ?? 'info';
  const options = { name, level, base: { component: name } };
  return destination ? pino(options, destination) : pino(options);
}
