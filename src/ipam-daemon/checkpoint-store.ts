// Group commit for the checkpoint. Every change the daemon makes calls commit(); the promise
// resolves only once a write containing that change is durable, and every change made while a
// write is in flight goes into a later write, so N concurrent requests cost one disk flush, not N.
// A write is one journal record (checkpoint-journal.ts) holding what changed since the last write,
// as the source reports it (it tracks what it changed: no write reads or compares the whole state).
// The journal is preallocated with zeros and opened O_DSYNC, so a record costs one write system
// call that returns once the data is on disk, and no metadata (file size) changes with it.
//
// Pipelined: up to MAX_WRITES_IN_FLIGHT records are on their way to the disk at once (the disk
// serves them together), each numbered (`seq`), a later one naming the oldest it waits for. Commits are
// answered strictly in write order: only once their own write AND every earlier one is durable.
// When a write completes, the next one is issued first and only then are the finished commits
// answered, so the answers' CPU overlaps the next disk write. A crash can therefore cut two
// unanswered records; the reader (checkpoint-journal.ts) drops them all. When the journal is full or
// has compactAfter records, at start and at stop, the whole state goes into a fresh snapshot
// (checkpoint.ts: temp + fsync + rename + fsync of the directory) naming a new journal, once the
// journal's writes in flight are settled. A failed write fails its own commits; the writes after
// it (a reader would drop them) and everything after go into a fresh snapshot.

import { randomBytes } from 'node:crypto';
import { constants, write as writeFd } from 'node:fs';
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
/** Journal writes on their way to the disk at once. */
export const MAX_WRITES_IN_FLIGHT = 2;

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

/** A commit waiting for the write that holds its change. */
interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

interface Journal {
  path: string;
  fh: FileHandle;
  /** Records issued, and the offset after the last one issued. */
  records: number;
  offset: number;
  /** Full, or a write failed: nothing more is written to it; the next write is a snapshot. */
  done: boolean;
}

/** A journal record on its way to the disk and the commits it answers. */
interface RecordWrite {
  journal: Journal;
  seq: number;
  waiters: Waiter[];
  state: 'writing' | 'durable' | 'failed';
  error?: unknown;
}

export class CheckpointStore {
  private readonly opts: CheckpointStoreOptions;
  private source: CheckpointSource | null = null;
  /** Commits whose changes are in no write yet. */
  private waiting: Waiter[] = [];
  /** compact() asked for a snapshot that has not started yet. */
  private snapshotWanted = false;
  private snapshotting = false;
  /** Journal writes issued, oldest first: answered in this order only. */
  private inFlight: RecordWrite[] = [];
  /** A journal whose write failed: the writes issued after it are not durable either. */
  private failedJournal: Journal | null = null;
  private pumpScheduled = false;
  private journal: Journal | null = null;
  private idle: Array<() => void> = [];
  /**
   * Writes that reached the disk (snapshots + journal records), the time they took, and the
   * records issued while an earlier one was still in flight, for benchmarks.
   */
  readonly stats = { snapshots: 0, journalLines: 0, snapshotMs: 0, journalMs: 0, pipelined: 0 };

  constructor(opts: CheckpointStoreOptions) {
    this.opts = opts;
  }

  /** Resolves once a checkpoint containing every change made before the call is durable. */
  commit(source: CheckpointSource): Promise<void> {
    this.source = source;
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      // Nothing in flight: write at once (a lone request waits for one write). A write in flight:
      // the requests read in this event-loop turn go into the next write together.
      if (this.inFlight.length === 0) this.pump();
      else this.schedulePump();
    });
  }

  /** Like commit, but always as a fresh snapshot with an empty journal (start, stop). */
  compact(source: CheckpointSource): Promise<void> {
    this.source = source;
    this.snapshotWanted = true;
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.pump();
    });
  }

  /** Close the journal (after the last commit). */
  async close(): Promise<void> {
    while (this.busy) await new Promise<void>((r) => this.idle.push(r));
    const j = this.journal;
    this.journal = null;
    await j?.fh.close();
  }

  private get busy(): boolean {
    return this.inFlight.length > 0 || this.snapshotting || this.waiting.length > 0;
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Issue the writes the waiting commits need, as far as the writes in flight allow. */
  private pump(): void {
    const source = this.source;
    while (source && this.waiting.length > 0 && !this.snapshotting) {
      const j = this.journal;
      if (this.snapshotWanted || !j || j.done || j.records >= (this.opts.compactAfter ?? COMPACT_AFTER)) {
        // The snapshot replaces the journal: it starts once the journal's writes are settled.
        if (this.inFlight.length === 0) this.startSnapshot(source);
        return;
      }
      if (this.inFlight.length >= MAX_WRITES_IN_FLIGHT) return;
      // Taken synchronously when the write is issued: every change made up to now is in it.
      const rec = source.changes();
      const waiters = this.waiting;
      this.waiting = [];
      if (rec === null) {
        // Nothing changed since the last write issued: durable with the writes in flight.
        const last = this.inFlight[this.inFlight.length - 1];
        if (last) last.waiters.push(...waiters);
        else for (const w of waiters) w.resolve();
        continue;
      }
      const oldest = this.inFlight[0];
      const seq = j.records + 1;
      const json = JSON.stringify(rec);
      const bytes = encodeRecord(
        `{"seq":${seq}${oldest ? `,"waitsFor":${oldest.seq}` : ''},${json.slice(1)}`,
      );
      if (j.offset + bytes.length > (this.opts.journalBytes ?? JOURNAL_BYTES)) {
        // The journal is full: the snapshot holds these changes too.
        j.done = true;
        this.waiting = waiters;
        continue;
      }
      const offset = j.offset;
      j.offset += bytes.length;
      j.records = seq;
      if (oldest) this.stats.pipelined++;
      const w: RecordWrite = { journal: j, seq, waiters, state: 'writing' };
      this.inFlight.push(w);
      void this.writeRecord(w, bytes, offset);
    }
  }

  private async writeRecord(w: RecordWrite, bytes: Buffer, offset: number): Promise<void> {
    const j = w.journal;
    const t = performance.now();
    try {
      if (this.opts.beforeJournalSync) await this.opts.beforeJournalSync(j.path);
      // O_DSYNC: durable when the write returns.
      const bytesWritten = await writeAt(j.fh.fd, bytes, offset);
      if (bytesWritten !== bytes.length) throw new Error(`short journal write (${bytesWritten} bytes)`);
      w.state = 'durable';
      this.stats.journalLines++;
      this.stats.journalMs += performance.now() - t;
    } catch (err) {
      // The record may be half on disk: nothing more goes into this journal.
      w.state = 'failed';
      w.error = err;
      j.done = true;
    }
    this.settle();
  }

  /** Answer the writes finished in order; the next write is issued before the answers. */
  private settle(): void {
    const answered: RecordWrite[] = [];
    let retry: Waiter[] = [];
    for (let head = this.inFlight[0]; head && head.state !== 'writing'; head = this.inFlight[0]) {
      this.inFlight.shift();
      if (head.state === 'failed' && this.failedJournal !== head.journal) {
        this.failedJournal = head.journal;
        answered.push(head);
      } else if (this.failedJournal === head.journal) {
        // After a failed record a reader drops this one too: its changes go into the snapshot.
        retry = retry.concat(head.waiters);
      } else {
        answered.push(head);
      }
    }
    const j = this.journal;
    if (j?.done && this.inFlight.length === 0 && this.failedJournal === j) {
      // Never written to again; a crash before the next snapshot reads it as cut at the failure.
      this.journal = null;
      void j.fh.close().catch(() => {});
    }
    if (retry.length > 0) this.waiting = retry.concat(this.waiting);
    this.pump();
    for (const w of answered) {
      for (const c of w.waiters) {
        if (w.state === 'durable') c.resolve();
        else c.reject(w.error);
      }
    }
    this.notifyIdle();
  }

  private startSnapshot(source: CheckpointSource): void {
    this.snapshotting = true;
    this.snapshotWanted = false;
    const waiters = this.waiting;
    this.waiting = [];
    const old = this.journal;
    this.journal = null;
    const done = (err?: unknown) => {
      this.snapshotting = false;
      this.pump();
      for (const c of waiters) {
        if (err === undefined) c.resolve();
        else c.reject(err);
      }
      this.notifyIdle();
    };
    let data: CheckpointData;
    try {
      data = source.snapshot();
    } catch (err) {
      done(err);
      return;
    }
    this.writeSnapshot(data, old).then(
      () => done(),
      (err: unknown) => {
        // The snapshot on disk still names the old journal (if the rename did not happen): keep it.
        void old?.fh.close().catch(() => {});
        done(err);
      },
    );
  }

  private notifyIdle(): void {
    if (this.busy) return;
    for (const r of this.idle.splice(0)) r();
  }

  private async writeSnapshot(data: CheckpointData, old: Journal | null): Promise<void> {
    const t = performance.now();
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
    this.journal = { path, fh, records: 0, offset: 0, done: false };
    if (old) {
      await old.fh.close().catch(() => {});
      await unlink(old.path).catch(() => {});
    }
  }
}

/**
 * One positioned write by descriptor: the callback API costs the main thread less per call than
 * FileHandle.write (no handle bookkeeping; the store closes the handle only with no write in flight).
 */
function writeAt(fd: number, bytes: Buffer, offset: number): Promise<number> {
  return new Promise((resolve, reject) => {
    writeFd(fd, bytes, 0, bytes.length, offset, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}
