// Recovering allocations from the kernel. The plugin wires every pod with a host route
// `<pod ip>/32 dev <host veth>`; that route exists exactly as long as the pod's veth does. So when
// the checkpoint cannot say who holds an IP (lost, corrupt, from another instance, or simply out of
// step), the routes can: an IP routed to one of our veths is in use, whatever the checkpoint says.
// Pure: the daemon feeds it the routes and a view of its datastore.

import type { PodHostRoute } from '../netutils/pod-routes.ts';
import type { AttachmentKey } from './api-types.ts';

/**
 * Recovered entries have no container id; their key is derived from the host veth name (plus the
 * IP, so a stray second route on one veth still gets its own entry). Valid as a CNI container id.
 */
export const RECOVERED_PREFIX = 'recovered-';
export const RECOVERED_IFNAME = 'recovered';

export function recoveredKey(route: PodHostRoute): AttachmentKey {
  return { containerId: `${RECOVERED_PREFIX}${route.hostVeth}-${route.ip}`, ifName: RECOVERED_IFNAME };
}

/** What the datastore says about one IP. */
export type IpHolder =
  | { state: 'not-on-node' }
  | { state: 'free' | 'cooling' | 'releasing' }
  | { state: 'assigned'; key: string; hostVeth: string };

export interface RecoveryPlan {
  /** Routed IPs the datastore thinks are free or cooling: hold them for a recovered entry. */
  recover: PodHostRoute[];
  /** Routed IPs already held by the allocation whose veth carries the route: nothing to do. */
  held: PodHostRoute[];
  /** Routed IPs held by an allocation whose veth is another one: left as they are, but said. */
  heldElsewhere: Array<PodHostRoute & { key: string; expectedVeth: string }>;
  /** Routed IPs that are not on this node's interfaces (another node's, or long gone): ignored. */
  notOnNode: PodHostRoute[];
}

/**
 * Which routed IPs must be held by a recovered entry. `holder(ip)` describes the IP in the
 * datastore; for an assigned IP `hostVeth` is the veth its key would have (recovered entries: the
 * one they were recovered from).
 */
export function planRecovery(
  routes: readonly PodHostRoute[],
  holder: (ip: string) => IpHolder,
): RecoveryPlan {
  const plan: RecoveryPlan = { recover: [], held: [], heldElsewhere: [], notOnNode: [] };
  for (const r of routes) {
    const h = holder(r.ip);
    if (h.state === 'not-on-node') plan.notOnNode.push(r);
    else if (h.state === 'assigned') {
      if (h.hostVeth === r.hostVeth) plan.held.push(r);
      else plan.heldElsewhere.push({ ...r, key: h.key, expectedVeth: h.hostVeth });
    } else plan.recover.push(r);
  }
  return plan;
}

/** Recovered entries whose route is gone (the plugin's DEL deleted the veth): release them. */
export function goneRecoveries<T extends { ip: string; recoveredFrom?: string }>(
  entries: readonly T[],
  routes: readonly PodHostRoute[],
): T[] {
  const live = new Set(routes.map((r) => `${r.ip} ${r.hostVeth}`));
  return entries.filter((e) => e.recoveredFrom !== undefined && !live.has(`${e.ip} ${e.recoveredFrom}`));
}
