// Every change to the pool is on disk before it is answered: persist() resolves once a checkpoint
// holding every change made before the call is durable. Concurrent callers share one write (group
// commit, ../checkpoint-store.ts); a write holds only what changed (the datastore tracks it), the
// whole state goes into the periodic snapshots.

import type { CheckpointData, CheckpointIntent, JournalRecord } from '../checkpoint.ts';
import { type CheckpointSource, CheckpointStore } from '../checkpoint-store.ts';
import type { DaemonCore } from './core.ts';

export class CheckpointWriter {
  private readonly core: DaemonCore;
  private readonly store: CheckpointStore;
  private readonly source: CheckpointSource;
  /** Recorded intents (restart safety) and the ids changed since the last write. */
  private readonly intentMap = new Map<string, CheckpointIntent>();
  private readonly changedIntents = new Set<string>();

  constructor(core: DaemonCore) {
    this.core = core;
    const { checkpointPath, beforeCheckpointRename, beforeJournalSync } = core.opts;
    this.store = new CheckpointStore({
      path: checkpointPath,
      ...(beforeCheckpointRename ? { beforeRename: beforeCheckpointRename } : {}),
      ...(beforeJournalSync ? { beforeJournalSync } : {}),
    });
    this.source = { snapshot: () => this.snapshot(), changes: () => this.changes() };
  }

  /** Checkpoint writes that reached the disk (snapshots, group-commit journal records) and their time. */
  get writes(): Readonly<CheckpointStore['stats']> {
    return this.store.stats;
  }

  private snapshot(): CheckpointData {
    const ds = this.core.mustDs();
    ds.takeChanges(); // all in the snapshot
    this.changedIntents.clear();
    const data: CheckpointData = {
      version: 1,
      instanceId: this.core.node?.instanceId ?? '',
      writtenAt: new Date(this.core.clock.now()).toISOString(),
      allocations: ds.list(),
      cooling: ds.coolingEntries(),
    };
    if (this.intentMap.size > 0) data.intents = Object.fromEntries(this.intentMap);
    return data;
  }

  private changes(): JournalRecord | null {
    const { put, del, cool, uncool } = this.core.mustDs().takeChanges();
    const rec: JournalRecord = {};
    if (put.length > 0) rec.put = put;
    if (del.length > 0) rec.del = del;
    if (cool.length > 0) rec.cool = cool;
    if (uncool.length > 0) rec.uncool = uncool;
    if (this.changedIntents.size > 0) {
      rec.intent = [...this.changedIntents].map((id) => [id, this.intentMap.get(id) ?? null]);
      this.changedIntents.clear();
    }
    return Object.keys(rec).length > 0 ? rec : null;
  }

  /** Resolves once a checkpoint containing every change made before the call is on disk. */
  async persist(): Promise<void> {
    await this.store.commit(this.source);
  }

  /**
   * Record (an object) or clear (null) an intent under `id`; resolves once that is durable. For
   * work that must be finished after a crash: record it before starting, clear it once done.
   */
  async setIntent(id: string, intent: CheckpointIntent | null): Promise<void> {
    if (intent === null) this.intentMap.delete(id);
    else this.intentMap.set(id, structuredClone(intent));
    this.changedIntents.add(id);
    await this.persist();
  }

  /** The intents recorded and not cleared (after a start: those the checkpoint held). */
  intents(): ReadonlyMap<string, CheckpointIntent> {
    return this.intentMap;
  }

  /** Start-up: the intents read from a trusted checkpoint (the next snapshot keeps them). */
  restoreIntents(intents: Record<string, CheckpointIntent> | undefined): void {
    for (const [id, intent] of Object.entries(intents ?? {})) this.intentMap.set(id, intent);
  }

  /**
   * At stop: a fresh snapshot with an empty journal (the next start, or an older version, reads
   * one file), then the journal is closed. `write` false: only close (the pool never started).
   */
  async finish(write: boolean): Promise<void> {
    if (write) await this.store.compact(this.source);
    await this.store.close();
  }
}
