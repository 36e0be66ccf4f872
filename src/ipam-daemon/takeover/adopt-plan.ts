// Which of aws-node's allocations vpc-ipamd adopts when it takes a node over. Pure: the AWS
// checkpoint's entries (aws-checkpoint.ts), the host routes of the pods the AWS plugin wired
// (`<ip>/32 dev eni<11 hex>`) and a view of our datastore in, decisions out.
//
// An entry is adopted, under its own (container id, ifname) so the runtime's DEL finds it, when its
// IP is on one of this node's interfaces in our pool, not held by anything else, and routed to a
// pod veth: that veth is the pod's (DEL removes it). An entry whose IP is routed nowhere belongs to
// a pod that is gone (the AWS daemon drops those too); its IP stays in the pool and its leftover
// rules are pruned. IPs routed to AWS veths that no entry names are left to route recovery, which
// holds them for the pod whatever the checkpoint says.

import type { PodHostRoute } from '../../netutils/pod-routes.ts';
import type { IpHolder } from '../route-recovery.ts';
import type { AwsCheckpointEntry } from './aws-checkpoint.ts';

export interface AdoptionPlan {
  adopt: Array<{ entry: AwsCheckpointEntry; hostVeth: string }>;
  /** No host route: the pod is gone. Its IP is free; prune its 512/1536 rules. */
  stale: AwsCheckpointEntry[];
  /** The IP is not on an interface the pool uses (not ours to give out, or not on this node). */
  notInPool: AwsCheckpointEntry[];
  /** The IP or the key is already held by another allocation: kept as it is. */
  conflicts: Array<{ entry: AwsCheckpointEntry; why: string }>;
}

export function planAdoption(
  entries: readonly AwsCheckpointEntry[],
  routes: readonly PodHostRoute[],
  holder: (ip: string) => IpHolder,
  keyHeld: (containerId: string, ifName: string) => boolean,
): AdoptionPlan {
  const routed = new Map(routes.map((r) => [r.ip, r.hostVeth]));
  const plan: AdoptionPlan = { adopt: [], stale: [], notInPool: [], conflicts: [] };
  for (const entry of entries) {
    const h = holder(entry.ip);
    if (h.state === 'not-on-node') {
      plan.notInPool.push(entry);
      continue;
    }
    if (h.state === 'assigned' || h.state === 'releasing') {
      const why = h.state === 'assigned' ? `already held by ${h.key}` : 'being returned to the cloud';
      plan.conflicts.push({ entry, why: `${entry.ip} is ${why}` });
      continue;
    }
    if (keyHeld(entry.containerId, entry.ifName)) {
      plan.conflicts.push({ entry, why: `${entry.containerId}/${entry.ifName} already holds an IP` });
      continue;
    }
    const hostVeth = routed.get(entry.ip);
    if (hostVeth === undefined) plan.stale.push(entry);
    else plan.adopt.push({ entry, hostVeth });
  }
  return plan;
}
