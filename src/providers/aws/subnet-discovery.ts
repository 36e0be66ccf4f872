// Subnet discovery, as the AWS VPC CNI does it (ENABLE_SUBNET_DISCOVERY): among the subnets of the
// node's VPC and availability zone, pod interfaces may use the node's own subnet unless it is
// tagged kubernetes.io/role/cni=0, and any other subnet tagged kubernetes.io/role/cni with
// another value; a subnet carrying kubernetes.io/cluster/<name> tags only for other clusters is
// left out. The most free addresses come first. Pure: the provider does the DescribeSubnets.
import type { SubnetInfo } from '../types.ts';

export const SUBNET_ROLE_TAG = 'kubernetes.io/role/cni';
export const CLUSTER_TAG_PREFIX = 'kubernetes.io/cluster/';

export interface DiscoveredSubnet {
  subnet: SubnetInfo;
  /** Why it is used or left out, for the start-up log. */
  reason: string;
  usable: boolean;
}

export function judgeSubnet(s: SubnetInfo, primarySubnetId: string, clusterName: string): DiscoveredSubnet {
  const role = s.tags[SUBNET_ROLE_TAG];
  const primary = s.id === primarySubnetId;
  if (role === '0') return { subnet: s, usable: false, reason: `${SUBNET_ROLE_TAG}=0` };
  if (role === undefined || role === '') {
    return primary
      ? { subnet: s, usable: true, reason: "the node's subnet" }
      : { subnet: s, usable: false, reason: `no ${SUBNET_ROLE_TAG} tag` };
  }
  const clusters = Object.keys(s.tags).filter((k) => k.startsWith(CLUSTER_TAG_PREFIX));
  if (clusters.length > 0 && !clusters.includes(CLUSTER_TAG_PREFIX + clusterName)) {
    return { subnet: s, usable: false, reason: `tagged for other clusters (${clusters.join(', ')})` };
  }
  return { subnet: s, usable: true, reason: `${SUBNET_ROLE_TAG}=${role}` };
}

/** Every subnet judged, usable ones first by free addresses (ties: the node's subnet, then by id). */
export function rankPodSubnets(
  subnets: SubnetInfo[],
  primarySubnetId: string,
  clusterName: string,
): DiscoveredSubnet[] {
  return subnets
    .map((s) => judgeSubnet(s, primarySubnetId, clusterName))
    .sort(
      (a, b) =>
        Number(b.usable) - Number(a.usable) ||
        b.subnet.availableIps - a.subnet.availableIps ||
        Number(b.subnet.id === primarySubnetId) - Number(a.subnet.id === primarySubnetId) ||
        a.subnet.id.localeCompare(b.subnet.id),
    );
}
