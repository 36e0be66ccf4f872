// ipvlan L2 wiring (mode "ipvlan"): the pod's interface is an ipvlan slave of the ENI that owns
// its IP, so pod traffic to the VPC leaves on that ENI without host routing; an unnumbered veth to
// the host carries node and service traffic (an ipvlan slave cannot reach its own master).
//
// UNTESTED against a kernel: the development kernel is built without ipvlan. The plan below is
// unit-tested; the wiring has never run. See docs/cni.md.
import type { IpTool } from '../../netutils/ip.ts';
import { POD_GATEWAY, ROUTE_PROTO } from '../../netutils/names.ts';
import { parseCidr } from '../../netutils/validate.ts';
import { planVethLink } from './veth.ts';

/** Name of the pod-side end of the host veth. */
export const IPVLAN_HOST_LINK = 'vpc-host';

export interface IpvlanPodSpec {
  containerId: string;
  ifName: string;
  netns: string;
  ip: string;
  subnetCidr: string;
  gateway: string;
  mtu: number;
  /** Host veth name prefix; default HOST_VETH_PREFIX. */
  vethPrefix?: string;
  /** Name of the ENI's interface on the node (found by MAC). */
  parent: string;
  /** Node addresses and extra CIDRs (service CIDR) reached through the host veth. */
  hostDestinations: string[];
}

export interface IpvlanPlan {
  hostName: string;
  hostMac: string;
  hostLines: string[][];
  podLines: string[][];
}

export function planIpvlanAdd(spec: IpvlanPodSpec): IpvlanPlan {
  // The host veth is the routed mode's pair, its pod end named IPVLAN_HOST_LINK (ifName is the slave).
  const { hostName, hostMac, linkLines } = planVethLink({ ...spec, peerName: IPVLAN_HOST_LINK });
  const prefix = parseCidr(spec.subnetCidr)?.prefix ?? 32;
  const mtu = String(spec.mtu);
  const hostLines: string[][] = [
    ['link', 'add', 'link', spec.parent, 'name', spec.ifName, 'mtu', mtu, 'netns', spec.netns].concat([
      'type',
      'ipvlan',
      'mode',
      'l2',
    ]),
    ...linkLines,
    ['route', 'replace', `${spec.ip}/32`, 'dev', hostName, 'scope', 'link', 'proto', String(ROUTE_PROTO)],
  ];
  const podLines: string[][] = [
    ['addr', 'add', `${spec.ip}/${prefix}`, 'dev', spec.ifName],
    ['link', 'set', 'dev', spec.ifName, 'up'],
    ['link', 'set', 'dev', IPVLAN_HOST_LINK, 'up'],
    ['route', 'add', 'default', 'via', spec.gateway, 'dev', spec.ifName],
    ['route', 'add', `${POD_GATEWAY}/32`, 'dev', IPVLAN_HOST_LINK, 'scope', 'link'],
    ['neigh', 'add', POD_GATEWAY, 'lladdr', hostMac, 'dev', IPVLAN_HOST_LINK, 'nud', 'permanent'],
    ...spec.hostDestinations.map((d) => [
      'route',
      'add',
      d,
      'via',
      POD_GATEWAY,
      'dev',
      IPVLAN_HOST_LINK,
      'src',
      spec.ip,
    ]),
  ];
  return { hostName, hostMac, hostLines, podLines };
}

interface AddrInfo {
  ifname?: string;
  address?: string;
  addr_info?: { family?: string; local?: string; scope?: string }[];
}

/** Finds the ENI's interface by MAC and the node's global IPv4 addresses (one `ip -j addr`). */
export async function discoverParent(
  ipTool: IpTool,
  mac: string,
): Promise<{ parent: string; nodeIps: string[] }> {
  const links = await ipTool.json<AddrInfo>(['addr', 'show']);
  const parent = links.find((l) => l.address?.toLowerCase() === mac.toLowerCase())?.ifname;
  if (!parent)
    throw new Error(`no interface with MAC ${mac} on this node (is the ENI attached and visible?)`);
  const nodeIps = links
    .filter((l) => !l.ifname?.startsWith('vpc'))
    .flatMap((l) => l.addr_info ?? [])
    .filter((a) => a.family === 'inet' && a.scope === 'global' && a.local)
    .map((a) => `${a.local}/32`);
  return { parent, nodeIps };
}

export async function applyIpvlanAdd(ipTool: IpTool, plan: IpvlanPlan, netns: string): Promise<void> {
  await ipTool.batch(plan.hostLines);
  await ipTool.batch(plan.podLines, { netns });
}
