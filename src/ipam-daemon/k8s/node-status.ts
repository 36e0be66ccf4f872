// Publishes the node's pool state as a cluster-scoped NodeIPAMStatus object named after the node
// (owned by the Node, so it is garbage-collected with it). A CRD rather than node annotations so
// the daemon needs no write access to Node objects. Writes are coalesced: at most one per interval,
// always the latest state, and none when nothing changed.
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';
import type { PoolInterfaceStatus, PoolStatus } from '../api-types.ts';

export const NODE_STATUS_API = {
  group: 'vpc-ipam.io',
  version: 'v1alpha1',
  plural: 'nodeipamstatuses',
} as const;

/**
 * The object's status (updatedAt is added when it is written): the pool's own fields, per
 * interface too, minus the IP lists and drift details the CRD schema does not declare.
 */
export interface NodeStatusBody
  extends Pick<
    PoolStatus,
    | 'instanceId'
    | 'instanceType'
    | 'maxPods'
    | 'total'
    | 'assigned'
    | 'cooling'
    | 'free'
    | 'plan'
    | 'noIpReason'
  > {
  interfaceCount: number;
  networkConfig: string | null;
  interfaces: Pick<
    PoolInterfaceStatus,
    'interfaceId' | 'deviceIndex' | 'subnetId' | 'total' | 'assigned' | 'cooling' | 'free'
  >[];
}

export function statusBody(pool: PoolStatus, networkConfig: string | null): NodeStatusBody {
  return {
    instanceId: pool.instanceId,
    instanceType: pool.instanceType,
    maxPods: pool.maxPods,
    total: pool.total,
    assigned: pool.assigned,
    cooling: pool.cooling,
    free: pool.free,
    interfaceCount: pool.interfaces.length,
    plan: pool.plan,
    noIpReason: pool.noIpReason,
    networkConfig,
    interfaces: pool.interfaces.map((i) => ({
      interfaceId: i.interfaceId,
      deviceIndex: i.deviceIndex,
      subnetId: i.subnetId,
      total: i.total,
      assigned: i.assigned,
      cooling: i.cooling,
      free: i.free,
    })),
  };
}

export interface NodeStatusPublisherOptions {
  custom: CustomObjectsApi;
  nodeName: string;
  /** The Node's uid, for the owner reference; without it the object is not garbage-collected. */
  nodeUid: string | null;
  intervalMs: number;
  networkConfig: string | null;
  logger: Logger;
  now?: () => number;
}

export class NodeStatusPublisher {
  writes = 0;
  private readonly opts: NodeStatusPublisherOptions;
  private readonly now: () => number;
  private latest: NodeStatusBody | null = null;
  private lastWritten = '';
  private lastWriteAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private exists = false;
  private stopped = false;

  constructor(opts: NodeStatusPublisherOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  update(pool: PoolStatus): void {
    if (this.stopped) return;
    this.latest = statusBody(pool, this.opts.networkConfig);
    if (this.timer || this.writing) return;
    const wait = this.lastWriteAt + this.opts.intervalMs - this.now();
    if (wait <= 0) void this.flush();
    else this.timer = setTimeout(() => void this.flush(), wait).unref();
  }

  /** Writes the latest state now (if it changed). */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    if (!this.latest) return;
    const body = this.latest;
    const text = JSON.stringify(body);
    if (text === this.lastWritten) return;
    this.writing = this.write(body)
      .then(() => {
        this.lastWritten = text;
      })
      .catch((err: unknown) => {
        this.opts.logger.warn({ err: String(err) }, 'could not publish NodeIPAMStatus; will retry');
        if (!this.stopped) this.timer = setTimeout(() => void this.flush(), this.opts.intervalMs).unref();
      })
      .finally(() => {
        this.lastWriteAt = this.now();
        this.writing = undefined;
        // Changes that arrived during the write go out after the interval.
        if (this.latest && JSON.stringify(this.latest) !== this.lastWritten && !this.timer && !this.stopped) {
          this.timer = setTimeout(() => void this.flush(), this.opts.intervalMs).unref();
        }
      });
    await this.writing;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
  }

  private async write(body: NodeStatusBody): Promise<void> {
    const { custom, nodeName } = this.opts;
    const status = { ...body, updatedAt: new Date(this.now()).toISOString() };
    this.writes += 1;
    if (this.exists) {
      try {
        await this.patch(status);
        return;
      } catch (err) {
        if ((err as { code?: number }).code !== 404) throw err;
        this.exists = false;
      }
    }
    try {
      await custom.createClusterCustomObject({
        ...NODE_STATUS_API,
        body: {
          apiVersion: `${NODE_STATUS_API.group}/${NODE_STATUS_API.version}`,
          kind: 'NodeIPAMStatus',
          metadata: {
            name: nodeName,
            ...(this.opts.nodeUid
              ? {
                  ownerReferences: [
                    { apiVersion: 'v1', kind: 'Node', name: nodeName, uid: this.opts.nodeUid },
                  ],
                }
              : {}),
          },
          status,
        },
      });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
      await this.patch(status); // left by a previous run of this daemon
    }
    this.exists = true;
  }

  private patch(status: unknown): Promise<unknown> {
    return this.opts.custom.patchClusterCustomObject(
      { ...NODE_STATUS_API, name: this.opts.nodeName, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}
