// Every change to the pool is on disk before it is answered: persist() resolves once a checkpoint
// holding every change made before the call has been written (concurrent callers share writes).

import { type CheckpointData, writeCheckpoint } from '../checkpoint.ts';
import type { DaemonCore } from './core.ts';

export class CheckpointWriter {
  private readonly core: DaemonCore;
  private dirtyVersion = 0;
  private writtenVersion = 0;
  private writing: Promise<void> | null = null;

  constructor(core: DaemonCore) {
    this.core = core;
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
    const target = ++this.dirtyVersion;
    while (this.writtenVersion < target) {
      if (this.writing) {
        await this.writing.catch(() => {});
        continue;
      }
      const version = this.dirtyVersion;
      const write = writeCheckpoint(
        this.core.opts.checkpointPath,
        this.snapshot(),
        this.core.opts.beforeCheckpointRename,
      ).then(() => {
        this.writtenVersion = Math.max(this.writtenVersion, version);
      });
      this.writing = write;
      try {
        await write;
      } finally {
        if (this.writing === write) this.writing = null;
      }
    }
  }
}
