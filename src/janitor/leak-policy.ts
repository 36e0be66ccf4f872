// Pure decision: which leaked interfaces the janitor may delete. An interface is deleted only if
// every one of these holds (anything unknown counts as "no"):
//  - the cloud reports it unattached ("available");
//  - its ownership tag names this cluster (ours, or the AWS VPC CNI's for ENIs aws-node left);
//  - its creation tag parses and is older than the grace period;
//  - its creating instance is known and confirmed gone.
import type { LeakedInterface } from '../providers/types.ts';

export interface LeakPolicyInput {
  clusterName: string;
  now: number;
  graceMs: number;
  candidates: LeakedInterface[];
  /** instance id -> true when it still exists (running, stopped, pending...), false when gone. */
  instanceAlive: ReadonlyMap<string, boolean>;
}

export interface LeakVerdict {
  iface: LeakedInterface;
  delete: boolean;
  reason: string;
}

export function judgeLeak(iface: LeakedInterface, input: Omit<LeakPolicyInput, 'candidates'>): LeakVerdict {
  const keep = (reason: string): LeakVerdict => ({ iface, delete: false, reason });
  if (iface.status !== 'available') return keep(`status is ${iface.status}, not available`);
  if (iface.clusterName !== input.clusterName)
    return keep(`tagged for cluster ${iface.clusterName ?? '(none)'}`);
  if (!iface.createdAt || Number.isNaN(iface.createdAt.getTime())) return keep('creation time unknown');
  const age = input.now - iface.createdAt.getTime();
  if (age < input.graceMs) return keep(`only ${Math.round(age / 1000)} s old`);
  if (!iface.instanceId) return keep('creating instance unknown');
  const alive = input.instanceAlive.get(iface.instanceId);
  if (alive === undefined) return keep(`instance ${iface.instanceId} state unknown`);
  if (alive) return keep(`instance ${iface.instanceId} still exists`);
  return {
    iface,
    delete: true,
    reason: `unattached for ${Math.round(age / 1000)} s, instance ${iface.instanceId} gone${iface.createdBy === 'aws-vpc-cni' ? ' (created by the AWS VPC CNI)' : ''}`,
  };
}

export function judgeLeaks(input: LeakPolicyInput): LeakVerdict[] {
  return input.candidates.map((c) => judgeLeak(c, input));
}
