// Kubernetes Events on the Node when an IP cannot be had, with the reason, and when a pod lost its
// address to drift (the cloud removed it behind the daemon's back). Repeats are aggregated as
// kubelet does: one Event per reason, its count and lastTimestamp patched at most once per
// interval, a new Event after a quiet period, so a burst costs a handful of writes.

import { randomBytes } from 'node:crypto';
import { type CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';

export interface NoIpOccurrence {
  reason: string;
  message: string;
}

/** The daemon's 'drift' event, as far as Events need it (DriftEvent in daemon/drift-resync.ts). */
export interface DriftOccurrence {
  kind: string;
  interfaceId: string;
  ip?: string;
  pod?: string;
}

/** The Event reason for a pod whose IP the cloud no longer has. */
export const POD_IP_LOST_REASON = 'PodIPLost';

/** How many affected pods one aggregated Event's message names (the count says how many in all). */
const MAX_NAMED = 10;

/** What the operator reads for one pod that lost its address. */
export function podIpLostMessage(o: DriftOccurrence): string {
  const pod = o.pod ?? 'unknown pod';
  const ip = o.ip ?? 'its IP';
  return `pod ${pod} lost its IP ${ip}: the address is no longer on interface ${o.interfaceId} (removed outside vpc-ipam). The pod has no working network address; delete the pod so it is recreated with a new IP, and check what removed the address (console, scripts, another tool). vpc-ipam does not hand ${ip} out again unless the cloud has it back on the interface.`;
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
  /** Drift Events: the pods named so far in this series ("<pod> (<ip> on <interface>)"). */
  affected: string[];
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
    this.occur(eventReason(occurrence.reason), occurrence.message);
  }

  /** A drift repair: a pod that lost its address becomes a PodIPLost Warning; other kinds are logs only. */
  drift(occurrence: DriftOccurrence): void {
    if (occurrence.kind !== 'ip-lost') return;
    const who = `${occurrence.pod ?? 'unknown pod'} (${occurrence.ip ?? '?'} on ${occurrence.interfaceId})`;
    this.occur(POD_IP_LOST_REASON, podIpLostMessage(occurrence), who);
  }

  /** `affected`: who this occurrence is about, named in the aggregated message when several are. */
  private occur(reason: string, message: string, affected?: string): void {
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
        message,
        affected: [],
      };
      this.series.set(reason, s);
    }
    s.count += 1;
    s.last = now;
    s.message = message;
    if (affected !== undefined) {
      if (!s.affected.includes(affected)) s.affected.push(affected);
      // One Event per reason: when several are affected, the message names them (the latest few).
      if (s.affected.length > 1) {
        const named = s.affected.slice(-MAX_NAMED).join(', ');
        const more = s.affected.length > MAX_NAMED ? ` and ${s.affected.length - MAX_NAMED} earlier` : '';
        s.message = `${message} Pods that lost their IP in this series (${s.affected.length}): ${named}${more}.`;
      }
    }
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
      logger.warn({ err: String(err), reason }, 'could not record the Node Event');
      // Not retried: the next occurrence carries the count. An Event deleted meanwhile (TTL)
      // is recreated under a new name.
      if (s.written > 0 && (err as { code?: number }).code === 404) {
        s.written = 0;
        s.name = `${nodeName}.${randomBytes(8).toString('hex')}`;
      }
    }
  }
}
