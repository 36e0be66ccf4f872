// Group commit for the checkpoint. Every change the daemon makes calls commit(); the promise
// resolves only once a write containing that change is durable, and every change made while one
// write is in flight goes into the next write, so N concurrent requests cost one disk flush, not N.
// A write is one journal record (checkpoint-journal.ts) holding what changed since the last write,
// as the source reports it (it tracks what it changed: no write reads or compares the whole state).
// The journal is preallocated with zeros and opened O_DSYNC, so a record costs one write system
// call that returns once the data is on disk, and no metadata (file size) changes with it. When the
// journal is full or has compactAfter records, at start and at stop, the whole state goes into a
// fresh snapshot (checkpoint.ts: temp + fsync + rename + fsync of the directory) naming a new
// journal. A write that fails leaves nothing half-used: the next one is a full snapshot.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  type BeforeRenameHook,
  type CheckpointData,
  type JournalRecord,
  writeCheckpoint,
} from './checkpoint.ts';
import { encodeRecord } from './checkpoint-journal.ts';

/** Records after which the next commit writes a snapshot instead (a restart replays at most this many). */
export const COMPACT_AFTER = 2000;
/** Bytes a journal is preallocated with; a record that does not fit goes into a fresh snapshot. */
export const JOURNAL_BYTES = 1 << 20;

/** What the store persists: the whole state, or what changed since the last call of either. */
export interface CheckpointSource {
  /** The whole state; everything it holds counts as written (the changes so far are dropped). */
  snapshot(): CheckpointData;
  /** What changed since the last snapshot() or changes(), and forget it; null when nothing did. */
  changes(): JournalRecord | null;
}

export interface CheckpointStoreOptions {
  path: string;
  /** Crash tests: called between the fsync of a snapshot's temp file and its rename. */
  beforeRename?: BeforeRenameHook;
  /** Durability tests: called before a journal record's durable write. */
  beforeJournalSync?: (journalPath: string) => void | Promise<void>;
  compactAfter?: number;
  journalBytes?: number;
}

export class CheckpointStore {
  private readonly opts: CheckpointStoreOptions;
  private requested = 0;
  private durable = 0;
  private writing: Promise<void> | null = null;
  private journal: { path: string; fh: FileHandle; records: number; offset: number } | null = null;
  /** Writes that reached the disk (snapshots + journal records) and the time they took, for benchmarks. */
  readonly stats = { snapshots: 0, journalLines: 0, snapshotMs: 0, journalMs: 0 };

  constructor(opts: CheckpointStoreOptions) {
    this.opts = opts;
  }

  /** Resolves once a checkpoint containing every change made before the call is durable. */
  async commit(source: CheckpointSource): Promise<void> {
    const target = ++this.requested;
    while (this.durable < target) await this.writeNext(source, false);
  }

  /** Like commit, but always as a fresh snapshot with an empty journal (start, stop). */
  async compact(source: CheckpointSource): Promise<void> {
    ++this.requested;
    for (;;) {
      if (await this.writeNext(source, true)) return;
    }
  }

  /** Close the journal (after the last commit). */
  async close(): Promise<void> {
    while (this.writing) await this.writing.catch(() => {});
    const j = this.journal;
    this.journal = null;
    await j?.fh.close();
  }

  /** Waits for the write in flight, or runs one; true when this call ran it. */
  private async writeNext(source: CheckpointSource, full: boolean): Promise<boolean> {
    if (this.writing) {
      await this.writing.catch(() => {});
      return false;
    }
    const version = this.requested;
    const write = this.write(source, full).then(() => {
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

  private async write(source: CheckpointSource, full: boolean): Promise<void> {
    const j = this.journal;
    if (!full && j && j.records < (this.opts.compactAfter ?? COMPACT_AFTER)) {
      // Taken synchronously when the write starts: every change made up to now is in it.
      const rec = source.changes();
      if (rec === null) return; // nothing changed since the last write
      const bytes = encodeRecord(JSON.stringify(rec));
      if (j.offset + bytes.length <= (this.opts.journalBytes ?? JOURNAL_BYTES)) {
        const t = performance.now();
        try {
          await this.opts.beforeJournalSync?.(j.path);
          // O_DSYNC: durable when the write returns.
          const { bytesWritten } = await j.fh.write(bytes, 0, bytes.length, j.offset);
          if (bytesWritten !== bytes.length) throw new Error(`short journal write (${bytesWritten} bytes)`);
        } catch (err) {
          // The record may be half on disk and its changes are forgotten: the next write is a snapshot.
          this.journal = null;
          await j.fh.close().catch(() => {});
          throw err;
        }
        j.offset += bytes.length;
        j.records++;
        this.stats.journalLines++;
        this.stats.journalMs += performance.now() - t;
        return;
      }
      // The journal is full: the snapshot below holds these changes too.
    }
    await this.writeSnapshot(source.snapshot(), j);
  }

  private async writeSnapshot(data: CheckpointData, old: CheckpointStore['journal']): Promise<void> {
    const t = performance.now();
    this.journal = null;
    const dir = dirname(this.opts.path);
    const name = `${basename(this.opts.path)}.journal-${randomBytes(6).toString('hex')}`;
    await writeCheckpoint(this.opts.path, { ...data, journal: name }, this.opts.beforeRename);
    // The snapshot names the journal; a journal missing or still zeros after a crash reads as
    // empty. It is filled with zeros and synced (size and extents on disk) before any record, so
    // a record's write changes no metadata; its directory entry is on disk before a record is
    // acknowledged.
    const path = join(dir, name);
    const size = this.opts.journalBytes ?? JOURNAL_BYTES;
    const fh = await open(
      path,
      constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC,
      0o600,
    );
    try {
      await fh.write(Buffer.alloc(size), 0, size, 0);
      await syncDir(dir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    this.stats.snapshots++;
    this.stats.snapshotMs += performance.now() - t;
    this.journal = { path, fh, records: 0, offset: 0 };
    if (old) {
      await old.fh.close().catch(() => {});
      await unlink(old.path).catch(() => {});
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
