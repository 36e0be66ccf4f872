// Group commit for the checkpoint. Every change the daemon makes calls commit(); the promise
// resolves only once a write containing that change is durable, and every change made while one
// write is in flight goes into the next write, so N concurrent requests cost one fsync, not N.
// A write is one journal line (append + fdatasync: one disk flush) holding what changed since the
// last durable state; every COMPACT_AFTER lines, at start and at stop, the whole state goes into a
// fresh snapshot (checkpoint.ts: temp + fsync + rename + fsync of the directory) naming a new
// empty journal. A write that fails leaves nothing half-used: the next one is a full snapshot.

import { randomBytes } from 'node:crypto';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  type BeforeRenameHook,
  type CheckpointData,
  type JournalRecord,
  writeCheckpoint,
} from './checkpoint.ts';

/** Lines after which the next commit writes a snapshot instead (a restart replays at most this many). */
export const COMPACT_AFTER = 2000;

export interface CheckpointStoreOptions {
  path: string;
  /** Crash tests: called between the fsync of a snapshot's temp file and its rename. */
  beforeRename?: BeforeRenameHook;
  /** Durability tests: called after a journal line is written and before its fdatasync. */
  beforeJournalSync?: (journalPath: string) => void | Promise<void>;
  compactAfter?: number;
}

/** The durable state as the journal diffs against it: key -> serialised allocation, ip -> coolUntil. */
interface DurableState {
  allocations: Map<string, string>;
  cooling: Map<string, number>;
}

export class CheckpointStore {
  private readonly opts: CheckpointStoreOptions;
  private requested = 0;
  private durable = 0;
  private writing: Promise<void> | null = null;
  private base: DurableState | null = null;
  private journal: { path: string; fh: FileHandle; lines: number } | null = null;
  /** Writes that reached the disk (snapshots + journal lines), for benchmarks and tests. */
  readonly stats = { snapshots: 0, journalLines: 0 };

  constructor(opts: CheckpointStoreOptions) {
    this.opts = opts;
  }

  /**
   * Resolves once a checkpoint containing every change made before the call is durable. `take`
   * is called when a write starts, so it sees every change made up to then.
   */
  async commit(take: () => CheckpointData): Promise<void> {
    const target = ++this.requested;
    while (this.durable < target) await this.writeNext(take, false);
  }

  /** Like commit, but always as a fresh snapshot with an empty journal (start, stop). */
  async compact(take: () => CheckpointData): Promise<void> {
    ++this.requested;
    for (;;) {
      if (await this.writeNext(take, true)) return;
    }
  }

  /** Close the journal (after the last commit). */
  async close(): Promise<void> {
    while (this.writing) await this.writing.catch(() => {});
    const j = this.journal;
    this.journal = null;
    this.base = null;
    await j?.fh.close();
  }

  /** Waits for the write in flight, or runs one; true when this call ran it. */
  private async writeNext(take: () => CheckpointData, full: boolean): Promise<boolean> {
    if (this.writing) {
      await this.writing.catch(() => {});
      return false;
    }
    const version = this.requested;
    const write = this.write(take(), full).then(() => {
      this.durable = Math.max(this.durable, version);
    });
    this.writing = write;
    try {
      await write;
    } finally {
      if (this.writing === write) this.writing = null;
    }
    return true;
  }

  private async write(data: CheckpointData, full: boolean): Promise<void> {
    const j = this.journal;
    if (!full && j && this.base && j.lines < (this.opts.compactAfter ?? COMPACT_AFTER)) {
      const next = durableState(data);
      const rec = diff(this.base, next, data);
      if (rec === null) return; // nothing changed since the last durable state
      try {
        await j.fh.write(`${JSON.stringify(rec)}\n`);
        await this.opts.beforeJournalSync?.(j.path);
        await j.fh.datasync();
      } catch (err) {
        // The journal may now end in a partial line: never append to it again.
        this.journal = null;
        this.base = null;
        await j.fh.close().catch(() => {});
        throw err;
      }
      j.lines++;
      this.stats.journalLines++;
      this.base = next;
      return;
    }
    this.base = null;
    const dir = dirname(this.opts.path);
    const name = `${basename(this.opts.path)}.journal-${randomBytes(6).toString('hex')}`;
    await writeCheckpoint(this.opts.path, { ...data, journal: name }, this.opts.beforeRename);
    // The snapshot names the journal; a journal missing after a crash reads as empty. Its directory
    // entry must be on disk before a line in it is acknowledged.
    const fh = await open(join(dir, name), 'wx', 0o600);
    try {
      await syncDir(dir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    this.stats.snapshots++;
    this.journal = { path: join(dir, name), fh, lines: 0 };
    this.base = durableState(data);
    if (j) {
      await j.fh.close().catch(() => {});
      await unlink(j.path).catch(() => {});
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

function durableState(data: CheckpointData): DurableState {
  return {
    allocations: new Map(data.allocations.map((a) => [`${a.containerId}/${a.ifName}`, JSON.stringify(a)])),
    cooling: new Map(data.cooling.map((c) => [c.ip, c.coolUntil])),
  };
}

/** What turns `from` into `to` (pure); null when nothing differs. */
export function diff(from: DurableState, to: DurableState, data: CheckpointData): JournalRecord | null {
  const rec: JournalRecord = {};
  const put = data.allocations.filter(
    (a) =>
      from.allocations.get(`${a.containerId}/${a.ifName}`) !==
      to.allocations.get(`${a.containerId}/${a.ifName}`),
  );
  const del = gone(from, to);
  const cool = data.cooling.filter((c) => from.cooling.get(c.ip) !== c.coolUntil);
  const uncool = [...from.cooling.keys()].filter((ip) => !to.cooling.has(ip));
  if (put.length > 0) rec.put = put;
  if (del.length > 0) rec.del = del;
  if (cool.length > 0) rec.cool = cool;
  if (uncool.length > 0) rec.uncool = uncool;
  return Object.keys(rec).length > 0 ? rec : null;
}

function gone(from: DurableState, to: DurableState): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, json] of from.allocations) {
    if (to.allocations.has(k)) continue;
    const a = JSON.parse(json) as { containerId: string; ifName: string };
    out.push([a.containerId, a.ifName]);
  }
  return out;
}
