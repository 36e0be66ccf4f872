// A tiny synchronous JSON-lines file logger for the plugin. The plugin is a short-lived process
// started per pod; a synchronous append is cheaper than loading a logging library and cannot lose
// the last lines on exit. Lines have pino's shape (level number, time, msg) so tools read both.
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LogLevel } from './config.ts';

const LEVELS: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 };

export interface PluginLog {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Adds fields to every later line (e.g. the container id once known). */
  bind(fields: Record<string, unknown>): void;
}

export function createFileLog(path: string | null, level: LogLevel, now: () => number = Date.now): PluginLog {
  const min = LEVELS[level];
  const bound: Record<string, unknown> = { component: 'vpc-cni', pid: process.pid };
  let broken = false;
  if (path) {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    } catch {
      broken = true;
    }
  }
  const write = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (!path || broken || LEVELS[lvl] < min) return;
    const line = JSON.stringify({ level: LEVELS[lvl], time: now(), ...bound, ...fields, msg });
    try {
      appendFileSync(path, `${line}\n`, { mode: 0o600 });
    } catch {
      broken = true; // logging must never fail a CNI command
    }
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    bind: (f) => Object.assign(bound, f),
  };
}
