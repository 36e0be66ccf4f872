// The takeover from the AWS VPC CNI as main.ts and node setup wire it (see
// docs/migrating-from-aws-vpc-cni.md, "Takeover procedure and rollback"):
//  - the daemon adopts aws-node's ENIs (provider: foreignOwner) and, on its first start, the running
//    pods from aws-node's checkpoint and their host routes (adopt.ts);
//  - the pods' host routes read for route recovery include those on aws-node's veths;
//  - node setup covers those veths in our SNAT/connmark chains and removes aws-node's rules once
//    ours are in place (aws-host.ts).
import type { Logger } from '../../lib/log.ts';
import type { Runner } from '../../netutils/exec.ts';
import type { IpTool } from '../../netutils/ip.ts';
import type { IptablesTool } from '../../netutils/iptables.ts';
import { PRIO_FROM_POD, PRIO_TO_POD } from '../../netutils/names.ts';
import { listForeignPodHostRoutes, listPodHostRoutes, type PodHostRoute } from '../../netutils/pod-routes.ts';
import type { DaemonConfig } from '../config.ts';
import type { TakeoverOptions } from './adopt.ts';
import { type AwsHostCleaner, createAwsHostCleaner } from './aws-host.ts';

export type { TakeoverOptions } from './adopt.ts';

export function takeoverEnabled(config: Pick<DaemonConfig, 'cloud' | 'takeover'>): boolean {
  return config.cloud === 'aws' && config.takeover.enabled;
}

/** Our pods' host routes, plus those of the pods aws-node wired when taking over. */
export function podRoutesReader(config: DaemonConfig, ip: IpTool): () => Promise<PodHostRoute[]> {
  const own = [config.vethPrefix]; // AWS_VPC_K8S_CNI_VETHPREFIX
  if (!takeoverEnabled(config)) return () => listPodHostRoutes(ip, own);
  const prefix = config.takeover.awsVethPrefix;
  return async () => {
    const [ours, theirs] = await Promise.all([
      listPodHostRoutes(ip, own),
      listForeignPodHostRoutes(ip, prefix),
    ]);
    // With the same prefix on both sides a route of ours is read twice: one entry per IP.
    return [...new Map([...ours, ...theirs].map((r) => [r.ip, r])).values()];
  };
}

/** Deletes the 512/1536 rules aws-node left for IPs whose pods are gone (no protocol: not ours). */
export function ruleDeleter(ip: IpTool): (ips: string[]) => Promise<void> {
  return async (ips) => {
    const lines = ips.flatMap((a) => [
      ['rule', 'del', 'to', `${a}/32`, 'lookup', 'main', 'priority', String(PRIO_TO_POD)],
      ['rule', 'del', 'from', `${a}/32`, 'priority', String(PRIO_FROM_POD)],
    ]);
    // Best effort: a rule that is already gone is fine.
    await ip.batchBestEffort(lines);
  };
}

export function daemonTakeoverOptions(config: DaemonConfig, ip: IpTool): TakeoverOptions | undefined {
  if (!takeoverEnabled(config)) return undefined;
  return {
    adoptInterfaces: true,
    awsCheckpointPath: config.takeover.awsCheckpointPath,
    pruneRules: ruleDeleter(ip),
  };
}

/** Node setup's part: the adopted veths in our chains, aws-node's rules removed after ours. */
export function nodeSetupTakeover(
  config: DaemonConfig,
  deps: { runner: Runner; iptables: IptablesTool; logger: Logger },
): { vethPrefixes: string[]; cleaner: AwsHostCleaner } | undefined {
  if (!takeoverEnabled(config)) return undefined;
  return { vethPrefixes: [config.takeover.awsVethPrefix], cleaner: createAwsHostCleaner(deps) };
}
