// The allocation checkpoint: a JSON snapshot, replaced atomically (write a temp file, fsync it,
// rename it over the old one, fsync the directory) so a crash at any point leaves either the old
// or the new file, never a torn one, plus the journal the snapshot names: one checksummed record
// per group commit since the snapshot (checkpoint-store.ts writes them, checkpoint-journal.ts frames
// them). Reading applies the journal to the snapshot; a record a crash cut short (never
// acknowledged) ends the journal and is ignored. A corrupt or truncated snapshot or a damaged
// journal record before valid ones is moved aside as <path>.corrupt-<timestamp> and the daemon
// rebuilds from the cloud.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseJournal } from './checkpoint-journal.ts';
import type { StoredAllocation } from './datastore.ts';

export const CHECKPOINT_VERSION = 1;

export interface CheckpointData {
  version: typeof CHECKPOINT_VERSION;
  instanceId: string;
  /** ISO time of this write. */
  writtenAt: string;
  allocations: StoredAllocation[];
  cooling: Array<{ ip: string; coolUntil: number }>;
  /** Work the daemon recorded before doing it (restart safety), by id; see CheckpointIntent. */
  intents?: Record<string, CheckpointIntent>;
  /** File name (same directory) of the journal whose lines apply on top of this snapshot. */
  journal?: string;
}

/**
 * What the daemon means to do and must finish after a crash (e.g. an unassign in flight). The
 * storage only requires a JSON object; its content belongs to the code that records it.
 */
export type CheckpointIntent = Record<string, unknown>;

/** One journal line: what changed between two durable states. Keys are [containerId, ifName]. */
export interface JournalRecord {
  /** Allocations added or changed. */
  put?: StoredAllocation[];
  del?: Array<[string, string]>;
  /** Cooling entries added or changed. */
  cool?: Array<{ ip: string; coolUntil: number }>;
  uncool?: string[];
  /** Intents set (an object) or cleared (null). */
  intent?: Array<[string, CheckpointIntent | null]>;
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

/** Read and validate, journal applied; corrupt files are moved aside (never deleted) so an operator can look. */
export async function loadCheckpoint(path: string, now: () => number = Date.now): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw err;
  }
  const stamp = new Date(now()).toISOString().replace(/[:.]/g, '-');
  const snapshot = validate(text);
  let problem = typeof snapshot === 'string' ? snapshot : null;
  let journalPath: string | null = null;
  if (typeof snapshot !== 'string' && snapshot.journal !== undefined) {
    journalPath = join(dirname(path), snapshot.journal);
    const applied = await applyJournal(snapshot, journalPath);
    if (typeof applied === 'string') problem = `journal ${snapshot.journal}: ${applied}`;
  }
  if (problem !== null || typeof snapshot === 'string') {
    const movedTo = `${path}.corrupt-${stamp}`;
    await rename(path, movedTo);
    if (journalPath) await rename(journalPath, `${movedTo}.journal`).catch(() => {});
    return { kind: 'corrupt', reason: problem ?? 'unreadable', movedTo };
  }
  return { kind: 'ok', data: snapshot };
}

/** Applies the journal's records to `data` in place; a string says what is wrong. */
async function applyJournal(data: CheckpointData, journalPath: string): Promise<string | null> {
  let buf: Buffer;
  try {
    buf = await readFile(journalPath);
  } catch (err) {
    // Created right after the snapshot that names it: a crash in between leaves it absent, empty.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const parsed = parseJournal(buf);
  if (parsed.corrupt) return parsed.corrupt;
  const allocations = new Map(data.allocations.map((a) => [`${a.containerId}/${a.ifName}`, a]));
  const cooling = new Map(data.cooling.map((c) => [c.ip, c]));
  const intents = new Map(Object.entries(data.intents ?? {}));
  for (const [n, line] of parsed.records.entries()) {
    const rec = validateRecord(line);
    if (typeof rec === 'string') return `record ${n + 1}: ${rec}`;
    for (const [c, i] of rec.del ?? []) allocations.delete(`${c}/${i}`);
    for (const a of rec.put ?? []) allocations.set(`${a.containerId}/${a.ifName}`, a);
    for (const ip of rec.uncool ?? []) cooling.delete(ip);
    for (const c of rec.cool ?? []) cooling.set(c.ip, c);
    for (const [id, intent] of rec.intent ?? []) {
      if (intent === null) intents.delete(id);
      else intents.set(id, intent);
    }
  }
  data.allocations = [...allocations.values()];
  data.cooling = [...cooling.values()];
  if (intents.size > 0 || data.intents !== undefined) data.intents = Object.fromEntries(intents);
  return null;
}

/**
 * Remove temp files left by a crash between write and rename, and journals the snapshot no longer
 * names (a crash during a compaction). Returns their names.
 */
export async function removeStaleTemps(path: string): Promise<string[]> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  let current: string | undefined;
  try {
    const snap = validate(await readFile(path, 'utf8'));
    current = typeof snap === 'string' ? undefined : snap.journal;
  } catch {
    // no snapshot: every journal is stale
  }
  const journalPrefix = `${basename(path)}.journal-`;
  const stale = names.filter(
    (n) =>
      (n.startsWith(prefix) && n.endsWith('.tmp')) ||
      // A corrupt snapshot keeps its journal until loadCheckpoint moves both aside.
      (n.startsWith(journalPrefix) && current !== undefined && n !== current),
  );
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
  if (raw.journal !== undefined && (typeof raw.journal !== 'string' || !/^[\w.-]+$/.test(raw.journal)))
    return `bad journal name ${JSON.stringify(raw.journal)}`;
  if (raw.intents !== undefined && (!isObject(raw.intents) || !Object.values(raw.intents).every(isObject)))
    return 'intents must be an object of objects';
  return badEntries(raw.allocations, raw.cooling) ?? (raw as unknown as CheckpointData);
}

function validateRecord(line: string): JournalRecord | string {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    return `not valid JSON (${(err as Error).message})`;
  }
  if (!isObject(raw)) return 'not a JSON object';
  const { put = [], del = [], cool = [], uncool = [], intent = [] } = raw;
  if (![put, del, cool, uncool, intent].every(Array.isArray))
    return 'put/del/cool/uncool/intent must be lists';
  for (const e of intent as unknown[]) {
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !(e[1] === null || isObject(e[1])))
      return `malformed intent ${JSON.stringify(e)}`;
  }
  for (const k of del as unknown[]) {
    if (!Array.isArray(k) || k.length !== 2 || !k.every((x) => typeof x === 'string'))
      return `malformed key ${JSON.stringify(k)}`;
  }
  if ((uncool as unknown[]).some((ip) => typeof ip !== 'string')) return 'malformed uncool list';
  return badEntries(put as unknown[], cool as unknown[]) ?? (raw as JournalRecord);
}

function badEntries(allocations: unknown[], cooling: unknown[]): string | null {
  for (const a of allocations) {
    if (
      !isObject(a) ||
      typeof a.containerId !== 'string' ||
      typeof a.ifName !== 'string' ||
      typeof a.ip !== 'string' ||
      typeof a.interfaceId !== 'string' ||
      typeof a.assignedAt !== 'string' ||
      ['recoveredFrom', 'netns', 'podNamespace', 'podName', 'podUid', 'network'].some(
        (f) => a[f] !== undefined && typeof a[f] !== 'string',
      )
    ) {
      return `malformed allocation ${JSON.stringify(a)}`;
    }
  }
  for (const c of cooling) {
    if (!isObject(c) || typeof c.ip !== 'string' || typeof c.coolUntil !== 'number') {
      return `malformed cooling entry ${JSON.stringify(c)}`;
    }
  }
  return null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
