// Pure decision: which allocations belong to pods that are gone, and have been gone long enough
// to release. No I/O; the caller supplies the pods it knows, the time, and its view's freshness.
//
// Releasing an IP that a live pod still uses would hand one IP to two pods, so the rules are
// deliberately conservative:
//  - nothing is released unless the pod view is live (a watch stream is open) and has been for
//    `settleMs`, so the events replayed after a reconnect have arrived;
//  - an allocation is "orphaned" only when no pod matches it: same uid when the allocation knows
//    its pod's uid, else same namespace/name unless the pod object was created after the
//    allocation (a newer pod that reuses the name, e.g. a StatefulSet replica), with a margin for
//    clock skew between the node and the API server;
//  - it must stay orphaned for `graceMs` in a row, and be at least `graceMs` old itself;
//  - allocations that name no pod (made outside Kubernetes) are never touched.

export interface GcAllocation {
  containerId: string;
  ifName: string;
  ip: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  /** ISO time the IP was assigned. */
  assignedAt: string;
}

export interface GcPod {
  namespace: string;
  name: string;
  uid: string;
  /** ISO creationTimestamp (whole seconds). */
  createdAt: string;
}

export interface GcPolicy {
  graceMs: number;
  settleMs: number;
  /** Tolerated clock difference between this node and the API server. */
  skewMs: number;
}

export interface GcInput {
  now: number;
  allocations: GcAllocation[];
  pods: GcPod[];
  /** When the current watch stream opened; null when none is open. */
  connectedSince: number | null;
  /** attachment key -> when it was first seen orphaned (the caller keeps this between calls). */
  orphanSince: ReadonlyMap<string, number>;
}

export interface GcDecision {
  release: GcAllocation[];
  /** The orphan clock to keep for the next call. */
  orphanSince: Map<string, number>;
  /** Why nothing could be decided this round, when that is the case. */
  paused: string | null;
}

export const DEFAULT_GC_POLICY: GcPolicy = { graceMs: 60_000, settleMs: 5_000, skewMs: 120_000 };

export function attachmentKey(a: { containerId: string; ifName: string }): string {
  return `${a.containerId}/${a.ifName}`;
}

/** Why the allocation has no live pod, or null when it has one (or cannot be judged). */
export function orphanReason(a: GcAllocation, pods: GcPod[], skewMs: number): string | null {
  if (!a.podNamespace || !a.podName) return null;
  if (a.podUid) {
    return pods.some((p) => p.uid === a.podUid) ? null : `pod uid ${a.podUid} not on this node`;
  }
  const same = pods.filter((p) => p.namespace === a.podNamespace && p.name === a.podName);
  if (same.length === 0) return `pod ${a.podNamespace}/${a.podName} not on this node`;
  const assigned = Date.parse(a.assignedAt);
  if (Number.isNaN(assigned)) return null;
  const olderIncarnation = same.every((p) => {
    const created = Date.parse(p.createdAt);
    return !Number.isNaN(created) && assigned < created - skewMs;
  });
  return olderIncarnation
    ? `pod ${a.podNamespace}/${a.podName} was recreated after this IP was assigned`
    : null;
}

export function decideReleases(input: GcInput, policy: GcPolicy = DEFAULT_GC_POLICY): GcDecision {
  const orphanSince = new Map<string, number>();
  if (input.connectedSince === null) {
    // Not watching: our view may be stale, so keep the clocks but decide nothing.
    for (const [k, v] of input.orphanSince) orphanSince.set(k, v);
    return { release: [], orphanSince, paused: 'pod watch is not connected' };
  }
  const settled = input.now - input.connectedSince >= policy.settleMs;
  const release: GcAllocation[] = [];
  for (const a of input.allocations) {
    if (orphanReason(a, input.pods, policy.skewMs) === null) continue;
    const key = attachmentKey(a);
    const since = input.orphanSince.get(key) ?? input.now;
    orphanSince.set(key, since);
    const assigned = Date.parse(a.assignedAt);
    const oldEnough = !Number.isNaN(assigned) && input.now - assigned >= policy.graceMs;
    if (settled && oldEnough && input.now - since >= policy.graceMs) release.push(a);
  }
  return { release, orphanSince, paused: settled ? null : 'pod watch reconnected moments ago' };
}
