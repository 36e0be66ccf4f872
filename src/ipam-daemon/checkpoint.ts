// The allocation checkpoint: one JSON file, replaced atomically (write a temp file, fsync it,
// rename it over the old one, fsync the directory) so a crash at any point leaves either the old
// or the new file, never a torn one. A corrupt or truncated file is moved aside as
// <path>.corrupt-<timestamp> and the daemon rebuilds from the cloud.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { StoredAllocation } from './datastore.ts';

export const CHECKPOINT_VERSION = 1;

export interface CheckpointData {
  version: typeof CHECKPOINT_VERSION;
  instanceId: string;
  /** ISO time of this write. */
  writtenAt: string;
  allocations: StoredAllocation[];
  cooling: Array<{ ip: string; coolUntil: number }>;
}

export type LoadResult =
  | { kind: 'missing' }
  | { kind: 'ok'; data: CheckpointData }
  | { kind: 'corrupt'; reason: string; movedTo: string };

/** Hook for crash tests: called between the fsync of the temp file and the rename. */
export type BeforeRenameHook = (tempPath: string) => void | Promise<void>;

export async function writeCheckpoint(
  path: string,
  data: CheckpointData,
  beforeRename?: BeforeRenameHook,
): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(data)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    if (beforeRename) await beforeRename(tmp);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  // The rename itself must reach the disk before we answer the plugin.
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Read and validate; corrupt files are moved aside (never deleted) so an operator can look. */
export async function loadCheckpoint(path: string, now: () => number = Date.now): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw err;
  }
  const problem = validate(text);
  if (typeof problem === 'string') {
    const movedTo = `${path}.corrupt-${new Date(now()).toISOString().replace(/[:.]/g, '-')}`;
    await rename(path, movedTo);
    return { kind: 'corrupt', reason: problem, movedTo };
  }
  return { kind: 'ok', data: problem };
}

/** Remove temp files left by a crash between write and rename. Returns their names. */
export async function removeStaleTemps(path: string): Promise<string[]> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const stale = names.filter((n) => n.startsWith(prefix) && n.endsWith('.tmp'));
  for (const n of stale) await unlink(join(dir, n)).catch(() => {});
  return stale;
}

function validate(text: string): CheckpointData | string {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return `not valid JSON (${(err as Error).message}); ${text.length} bytes`;
  }
  if (!isObject(raw)) return 'not a JSON object';
  if (raw.version !== CHECKPOINT_VERSION) return `unknown version ${JSON.stringify(raw.version)}`;
  if (typeof raw.instanceId !== 'string') return 'instanceId missing';
  if (!Array.isArray(raw.allocations)) return 'allocations missing';
  if (!Array.isArray(raw.cooling)) return 'cooling missing';
  for (const a of raw.allocations) {
    if (
      !isObject(a) ||
      typeof a.containerId !== 'string' ||
      typeof a.ifName !== 'string' ||
      typeof a.ip !== 'string' ||
      typeof a.interfaceId !== 'string' ||
      typeof a.assignedAt !== 'string' ||
      (a.recoveredFrom !== undefined && typeof a.recoveredFrom !== 'string')
    ) {
      return `malformed allocation ${JSON.stringify(a)}`;
    }
  }
  for (const c of raw.cooling) {
    if (!isObject(c) || typeof c.ip !== 'string' || typeof c.coolUntil !== 'number') {
      return `malformed cooling entry ${JSON.stringify(c)}`;
    }
  }
  return raw as unknown as CheckpointData;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
