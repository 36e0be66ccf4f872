// A tiny synchronous JSON-lines file logger for the plugin. The plugin is a short-lived process
// started per pod; a synchronous append is cheaper than loading a logging library and cannot lose
// the last lines on exit. Lines have pino's shape (level number, time, msg) so tools read both.
//
// The plugin runs as host root, and part of what it logs comes from the daemon (a container). So
// the log cannot be a way to write host files: the path must be a plain absolute *.log path; its
// directory must be a real directory (not a symlink) owned by root and writable by no one else;
// the file is opened with O_NOFOLLOW (a planted symlink is refused, not followed) and O_NONBLOCK
// (a planted FIFO cannot hang us), and must then be a regular file owned by us with one link (no
// hard link to another file). Text is stripped of control characters and capped, so a daemon
// answer cannot forge lines or terminal escapes. The file is capped at maxBytes and rotated to
// <path>.1 (one old file kept). Any refusal turns logging off: logging never fails a CNI command.
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { basename, dirname } from 'node:path';
import type { LogLevel } from './config.ts';

const LEVELS: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 };

/** Default cap of the log file before it is rotated to <path>.1. */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Longest string value written (message or field). */
export const MAX_FIELD_CHARS = 2048;

const LOG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.log$/;
// C0 and C1 controls, DEL, and the Unicode line/paragraph separators.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const HAS_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export interface PluginLog {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Adds fields to every later line (e.g. the container id once known). */
  bind(fields: Record<string, unknown>): void;
}

export interface FileLogOptions {
  now?: () => number;
  /** Rotate once the file reaches this size (default 10 MiB). */
  maxBytes?: number;
  /** Owner the directory and file must have (default: our effective uid, root in production). */
  uid?: number;
}

/** Why `path` is not acceptable as the plugin's log file, or undefined when it is. */
export function logFileProblem(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'must be a string';
  if (!path.startsWith('/') || path.length > 1024)
    return 'must be an absolute path of at most 1024 characters';
  if (path.split('/').some((p) => p === '.' || p === '..')) return 'must not contain . or ..';
  if (HAS_CONTROL.test(path)) return 'must not contain control characters';
  if (!LOG_NAME.test(basename(path))) return 'must name a file ending in .log (letters, digits, . _ -)';
  return undefined;
}

/** Strip control characters and cap the length of one string. */
export function cleanText(s: string): string {
  const cut = s.length > MAX_FIELD_CHARS ? `${s.slice(0, MAX_FIELD_CHARS)}…` : s;
  return cut.replace(CONTROL, ' ');
}

const replacer = (_key: string, value: unknown) => (typeof value === 'string' ? cleanText(value) : value);

/**
 * Open the log for appending, refusing anything that is not our own regular file in our own
 * directory; rotate it first when it has grown past maxBytes. Throws with the reason.
 */
export function openLogFile(path: string, maxBytes: number, uid: number): number {
  const problem = logFileProblem(path);
  if (problem) throw new Error(`log file ${JSON.stringify(path)} ${problem}`);
  const dir = dirname(path);
  try {
    mkdirSync(dir, { mode: 0o700 }); // one level only: the parent must exist
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const d = lstatSync(dir);
  if (!d.isDirectory()) throw new Error(`${dir} is not a directory (a symlink?)`);
  if (d.uid !== uid) throw new Error(`${dir} is owned by uid ${d.uid}, not ${uid}`);
  if ((d.mode & 0o022) !== 0) throw new Error(`${dir} is writable by group or others`);
  const flags =
    constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;
  for (let round = 0; ; round++) {
    const fd = openSync(path, flags, 0o600);
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Error(`${path} is not a regular file`);
      if (st.uid !== uid) throw new Error(`${path} is owned by uid ${st.uid}, not ${uid}`);
      if (st.nlink !== 1) throw new Error(`${path} has ${st.nlink} links`);
      if (st.size < maxBytes || round > 0) return fd;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    closeSync(fd);
    renameSync(path, `${path}.1`); // replaces the old .1 (a symlink there is replaced, not followed)
  }
}

export function createFileLog(
  path: string | null,
  level: LogLevel,
  options: FileLogOptions | (() => number) = {},
): PluginLog {
  const opts: FileLogOptions = typeof options === 'function' ? { now: options } : options;
  const now = opts.now ?? Date.now;
  const min = LEVELS[level];
  const bound: Record<string, unknown> = { component: 'vpc-cni', pid: process.pid };
  let broken = path === null;
  // Opened and closed per line: the daemon runs CNI commands for the shim with one logger each, so
  // a descriptor kept open would leak one per command in a long-running process.
  const write = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (broken || LEVELS[lvl] < min) return;
    let fd: number | undefined;
    try {
      fd = openLogFile(path!, opts.maxBytes ?? DEFAULT_LOG_MAX_BYTES, opts.uid ?? process.geteuid?.() ?? 0);
      const line = JSON.stringify({ level: LEVELS[lvl], time: now(), ...bound, ...fields, msg }, replacer);
      writeSync(fd, `${line}\n`);
    } catch {
      broken = true; // logging must never fail a CNI command
    } finally {
      if (fd !== undefined) closeSync(fd);
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
