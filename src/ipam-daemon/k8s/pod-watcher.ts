// Node-side leak safety: watches the pods scheduled to this node and releases allocations whose
// pod is gone (after a grace period), so no IP is lost when the runtime skips CNI DEL.
// The decisions are in pod-gc-policy.ts; this module only feeds it and acts on its answer.
import { type CoreV1Api, type KubeConfig, type V1Pod, Watch } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';
import type { AttachmentKey } from '../api-types.ts';
import {
  DEFAULT_GC_POLICY,
  decideReleases,
  type GcAllocation,
  type GcPod,
  type GcPolicy,
} from './pod-gc-policy.ts';
import { Reflector, type WatchFn } from './reflector.ts';

/** What the pod watcher needs from the daemon (the Daemon class satisfies it). */
export interface AllocationSource {
  list(): GcAllocation[] | Promise<GcAllocation[]>;
  /**
   * Release only if the pod is no longer wired on the node (no host route to its IP, no host
   * veth); `kept` when it still is, or when that cannot be read.
   */
  releaseIfUnwired(key: AttachmentKey): Promise<{ released: string | null; kept?: boolean }>;
}

/** The watcher remembers this many of its latest releases (diagnostics and tests). */
export const RELEASED_KEPT = 1000;

export interface PodWatcherOptions {
  nodeName: string;
  allocations: AllocationSource;
  logger: Logger;
  /** The pods list/watch; built from a KubeConfig by createNodePodsReflector. */
  reflector: Reflector<V1Pod>;
  policy?: Partial<GcPolicy>;
  /** How often allocations are checked; defaults to a quarter of the grace period (max 15 s). */
  intervalMs?: number;
  now?: () => number;
}

export function createNodePodsReflector(
  kc: KubeConfig,
  core: CoreV1Api,
  nodeName: string,
  logger: Logger,
): Reflector<V1Pod> {
  const fieldSelector = `spec.nodeName=${nodeName}`;
  const watcher = new Watch(kc);
  const watch: WatchFn<V1Pod> = (resourceVersion, onEvent, onDone) =>
    watcher.watch(
      '/api/v1/pods',
      { fieldSelector, resourceVersion, allowWatchBookmarks: true },
      (type, obj) => onEvent(type as Parameters<typeof onEvent>[0], obj as V1Pod),
      onDone,
    );
  return new Reflector<V1Pod>({
    list: () => core.listPodForAllNamespaces({ fieldSelector }),
    watch,
    logger,
  });
}

export function toGcPod(pod: V1Pod): GcPod | null {
  const m = pod.metadata;
  if (!m?.name || !m.namespace || !m.uid) return null;
  const created = m.creationTimestamp as unknown as Date | string | undefined;
  return {
    namespace: m.namespace,
    name: m.name,
    uid: m.uid,
    createdAt: created instanceof Date ? created.toISOString() : (created ?? ''),
  };
}

export class PodWatcher {
  /** The latest releases, oldest first, at most RELEASED_KEPT. */
  readonly released: AttachmentKey[] = [];
  private readonly opts: PodWatcherOptions;
  private readonly policy: GcPolicy;
  private readonly now: () => number;
  private orphanSince = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(opts: PodWatcherOptions) {
    this.opts = opts;
    this.policy = { ...DEFAULT_GC_POLICY, ...opts.policy };
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    this.opts.reflector.start();
    const interval = this.opts.intervalMs ?? Math.min(15_000, Math.max(100, this.policy.graceMs / 4));
    this.timer = setInterval(() => void this.tick(), interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.opts.reflector.stop();
  }

  /** One pass; ticks never overlap. Exposed for tests. */
  tick(): Promise<void> {
    if (!this.running) {
      this.running = this.pass().finally(() => {
        this.running = undefined;
      });
    }
    return this.running;
  }

  private async pass(): Promise<void> {
    const { logger } = this.opts;
    try {
      const allocations = await this.opts.allocations.list();
      const pods = this.opts.reflector
        .items()
        .map(toGcPod)
        .filter((p): p is GcPod => p !== null);
      const decision = decideReleases(
        {
          now: this.now(),
          allocations,
          pods,
          connectedSince: this.opts.reflector.connectedSince,
          orphanSince: this.orphanSince,
        },
        this.policy,
      );
      this.orphanSince = decision.orphanSince;
      for (const a of decision.release) {
        const key = { containerId: a.containerId, ifName: a.ifName };
        try {
          const r = await this.opts.allocations.releaseIfUnwired(key);
          if (r.kept) {
            // Its pod object is gone but something on the node still carries it: a pod the API
            // server no longer shows (or a stale view). Keep it; asked again next pass.
            logger.warn(
              { ip: a.ip, containerId: a.containerId, pod: `${a.podNamespace}/${a.podName}` },
              'pod is gone from the API server but its host route or veth is still on the node (or they cannot be read); IP kept',
            );
            continue;
          }
          this.orphanSince.delete(`${a.containerId}/${a.ifName}`);
          this.released.push(key);
          if (this.released.length > RELEASED_KEPT)
            this.released.splice(0, this.released.length - RELEASED_KEPT);
          if (r.released === null) continue;
          logger.info(
            { ip: a.ip, containerId: a.containerId, pod: `${a.podNamespace}/${a.podName}` },
            'released the IP of a pod that is gone (CNI DEL never came)',
          );
        } catch (err) {
          logger.warn({ err: String(err), containerId: a.containerId }, 'could not release an orphaned IP');
        }
      }
    } catch (err) {
      logger.warn({ err: String(err) }, 'pod garbage collection pass failed');
    }
  }
}
