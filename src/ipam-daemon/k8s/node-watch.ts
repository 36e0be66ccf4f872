// Follows this daemon's own Node's spec.unschedulable (kubectl cordon / drain), so the pool
// attaches no new interface and gives nothing back while the node drains
// (AWS_MANAGE_ENIS_NON_SCHEDULABLE=false, the default). A GET of the Node every interval: the
// daemon may already read its Node (nodes: get), so no list/watch permission on every Node is
// needed. While the API server is unreachable the last state stands.
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';

export interface SchedulabilityWatchOptions {
  core: Pick<CoreV1Api, 'readNode'>;
  nodeName: string;
  intervalMs: number;
  logger: Logger;
  onChange(unschedulable: boolean): void;
}

export class SchedulabilityWatch {
  private readonly opts: SchedulabilityWatchOptions;
  private timer: NodeJS.Timeout | undefined;
  private last: boolean | undefined;
  private running: Promise<void> | undefined;

  constructor(opts: SchedulabilityWatchOptions) {
    this.opts = opts;
  }

  start(): void {
    void this.poll();
    this.timer = setInterval(() => void this.poll(), this.opts.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One read of the Node; polls never overlap. Exposed for tests. */
  poll(): Promise<void> {
    this.running ??= this.read().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async read(): Promise<void> {
    try {
      const node = await this.opts.core.readNode({ name: this.opts.nodeName });
      const unschedulable = node.spec?.unschedulable === true;
      if (unschedulable !== this.last) {
        this.last = unschedulable;
        this.opts.onChange(unschedulable);
      }
    } catch (err) {
      this.opts.logger.debug({ err: String(err) }, 'could not read this Node; schedulability unchanged');
    }
  }
}
