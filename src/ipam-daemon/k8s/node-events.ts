// Kubernetes Events on the Node when an IP cannot be had, with the reason. Repeats are aggregated
// as kubelet does: one Event per reason, its count and lastTimestamp patched at most once per
// interval, a new Event after a quiet period, so a burst of failing pods costs a handful of writes.

import { randomBytes } from 'node:crypto';
import { type CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';

export interface NoIpOccurrence {
  reason: string;
  message: string;
}

/** NO_IP reason codes (subnet-full, ...) to an Event reason (NoIPSubnetFull, ...). */
export function eventReason(code: string): string {
  const words = code.split(/[^A-Za-z0-9]+/).filter((w) => w.length > 0);
  return `NoIP${words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('') || 'Available'}`;
}

interface Series {
  name: string;
  count: number;
  written: number;
  first: number;
  last: number;
  lastWriteAt: number;
  message: string;
}

export interface NodeEventRecorderOptions {
  core: CoreV1Api;
  nodeName: string;
  nodeUid: string | null;
  logger: Logger;
  /** Minimum time between two writes of one reason's Event. */
  minIntervalMs?: number;
  /** After this long without an occurrence, the next one starts a new Event. */
  seriesTtlMs?: number;
  now?: () => number;
}

export class NodeEventRecorder {
  writes = 0;
  private readonly opts: NodeEventRecorderOptions;
  private readonly now: () => number;
  private readonly series = new Map<string, Series>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private chain: Promise<void> = Promise.resolve();

  constructor(opts: NodeEventRecorderOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  noIp(occurrence: NoIpOccurrence): void {
    const reason = eventReason(occurrence.reason);
    const now = this.now();
    const ttl = this.opts.seriesTtlMs ?? 10 * 60_000;
    let s = this.series.get(reason);
    if (!s || now - s.last > ttl) {
      s = {
        name: `${this.opts.nodeName}.${randomBytes(8).toString('hex')}`,
        count: 0,
        written: 0,
        first: now,
        last: now,
        lastWriteAt: Number.NEGATIVE_INFINITY,
        message: occurrence.message,
      };
      this.series.set(reason, s);
    }
    s.count += 1;
    s.last = now;
    s.message = occurrence.message;
    this.schedule(reason, s);
  }

  /** Waits for every pending write (pending aggregated counts are written first). */
  async flush(): Promise<void> {
    for (const [reason, timer] of this.timers) {
      clearTimeout(timer);
      this.timers.delete(reason);
      const s = this.series.get(reason);
      if (s) this.enqueue(reason, s);
    }
    await this.chain;
  }

  async stop(): Promise<void> {
    await this.flush();
  }

  private schedule(reason: string, s: Series): void {
    if (this.timers.has(reason)) return;
    const wait = s.lastWriteAt + (this.opts.minIntervalMs ?? 30_000) - this.now();
    if (wait <= 0) this.enqueue(reason, s);
    else
      this.timers.set(
        reason,
        setTimeout(() => {
          this.timers.delete(reason);
          this.enqueue(reason, s);
        }, wait).unref(),
      );
  }

  private enqueue(reason: string, s: Series): void {
    this.chain = this.chain.then(() => this.write(reason, s)).catch(() => undefined);
  }

  private async write(reason: string, s: Series): Promise<void> {
    if (s.count === s.written) return;
    const { core, nodeName, nodeUid, logger } = this.opts;
    const count = s.count;
    const lastTimestamp = new Date(s.last);
    s.lastWriteAt = this.now();
    this.writes += 1;
    try {
      if (s.written === 0) {
        await core.createNamespacedEvent({
          namespace: 'default',
          body: {
            metadata: { name: s.name, namespace: 'default' },
            involvedObject: {
              apiVersion: 'v1',
              kind: 'Node',
              name: nodeName,
              ...(nodeUid ? { uid: nodeUid } : {}),
            },
            reason,
            message: s.message,
            type: 'Warning',
            count,
            firstTimestamp: new Date(s.first),
            lastTimestamp,
            source: { component: 'vpc-ipamd', host: nodeName },
            reportingComponent: 'vpc-ipam.io/ipamd',
            reportingInstance: nodeName,
          },
        });
      } else {
        await core.patchNamespacedEvent(
          { name: s.name, namespace: 'default', body: { count, lastTimestamp, message: s.message } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
      }
      s.written = count;
    } catch (err) {
      logger.warn({ err: String(err), reason }, 'could not record the no-IP Event');
      // Not retried: the next occurrence carries the count. An Event deleted meanwhile (TTL)
      // is recreated under a new name.
      if (s.written > 0 && (err as { code?: number }).code === 404) {
        s.written = 0;
        s.name = `${nodeName}.${randomBytes(8).toString('hex')}`;
      }
    }
  }
}
