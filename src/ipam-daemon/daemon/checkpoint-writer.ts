// Every change to the pool is on disk before it is answered: persist() resolves once a checkpoint
// holding every change made before the call is durable. Concurrent callers share one write (group
// commit, ../checkpoint-store.ts).

import type { CheckpointData } from '../checkpoint.ts';
import { CheckpointStore } from '../checkpoint-store.ts';
import type { DaemonCore } from './core.ts';

export class CheckpointWriter {
  private readonly core: DaemonCore;
  private readonly store: CheckpointStore;

  constructor(core: DaemonCore) {
    this.core = core;
    const { checkpointPath, beforeCheckpointRename, beforeJournalSync } = core.opts;
    this.store = new CheckpointStore({
      path: checkpointPath,
      ...(beforeCheckpointRename ? { beforeRename: beforeCheckpointRename } : {}),
      ...(beforeJournalSync ? { beforeJournalSync } : {}),
    });
  }

  /** Checkpoint writes that reached the disk (snapshots, group-commit journal lines). */
  get writes(): Readonly<{ snapshots: number; journalLines: number }> {
    return this.store.stats;
  }

  private snapshot(): CheckpointData {
    const ds = this.core.mustDs();
    return {
      version: 1,
      instanceId: this.core.node?.instanceId ?? '',
      writtenAt: new Date(this.core.clock.now()).toISOString(),
      allocations: ds.list(),
      cooling: ds.coolingEntries(),
    };
  }

  /** Resolves once a checkpoint containing every change made before the call is on disk. */
  async persist(): Promise<void> {
    await this.store.commit(() => this.snapshot());
  }

  /**
   * At stop: a fresh snapshot with an empty journal (the next start, or an older version, reads
   * one file), then the journal is closed. `write` false: only close (the pool never started).
   */
  async finish(write: boolean): Promise<void> {
    if (write) await this.store.compact(() => this.snapshot());
    await this.store.close();
  }
}
