// ipvlan L2 wiring (mode "ipvlan"): the pod's interface is an ipvlan slave of the ENI that owns
// its IP, so pod traffic to the VPC (and to the other destinations the node does not SNAT) leaves
// on that ENI without host routing; an unnumbered veth to the host carries node and service
// traffic (an ipvlan slave cannot reach its own master) and everything else, which the node SNATs
// to its primary IP like a routed pod's. Run on Debian's 6.1 kernel in a VM (test/e2e/ipvlan.vm.ts).
import type { IpTool } from '../../netutils/ip.ts';
import { ipvlanTempName, POD_GATEWAY, ROUTE_PROTO } from '../../netutils/names.ts';
import { parseCidr } from '../../netutils/validate.ts';
import { diagnoseHostVeth, type ObservedHost, observeHost, planVethLink } from './veth.ts';

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
  /**
   * Destinations the node does not SNAT (VPC CIDRs, excluded CIDRs): straight out of the ENI via
   * the subnet gateway. 0.0.0.0/0 (external SNAT) makes that the default route; otherwise the
   * default route goes through the host veth, where the node SNATs.
   */
  directCidrs: string[];
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
  // the pod's own subnet is already on-link through eth0 (adding it again would fail)
  const direct = [...new Set(spec.directCidrs)].filter((d) => d !== spec.subnetCidr);
  const mtu = String(spec.mtu);
  // Made straight in the pod netns under a name of its own, renamed there (see ipvlanTempName):
  // the pod's ifname (eth0) is usually taken on the node, which Linux 6.1 checks.
  const tempName = ipvlanTempName(spec.containerId, spec.ifName);
  const hostLines: string[][] = [
    ['link', 'add', 'link', spec.parent, 'name', tempName, 'mtu', mtu, 'netns', spec.netns].concat([
      'type',
      'ipvlan',
      'mode',
      'l2',
    ]),
    ...linkLines,
    ['route', 'replace', `${spec.ip}/32`, 'dev', hostName, 'scope', 'link', 'proto', String(ROUTE_PROTO)],
  ];
  const podLines: string[][] = [
    ['link', 'set', 'dev', tempName, 'name', spec.ifName],
    ['addr', 'add', `${spec.ip}/${prefix}`, 'dev', spec.ifName],
    ['link', 'set', 'dev', spec.ifName, 'up'],
    ['link', 'set', 'dev', IPVLAN_HOST_LINK, 'up'],
    ['route', 'add', `${POD_GATEWAY}/32`, 'dev', IPVLAN_HOST_LINK, 'scope', 'link'],
    ['neigh', 'add', POD_GATEWAY, 'lladdr', hostMac, 'dev', IPVLAN_HOST_LINK, 'nud', 'permanent'],
    ...(direct.includes('0.0.0.0/0')
      ? [['route', 'add', 'default', 'via', spec.gateway, 'dev', spec.ifName]]
      : [
          ['route', 'add', 'default', 'via', POD_GATEWAY, 'dev', IPVLAN_HOST_LINK, 'src', spec.ip],
          ...direct.map((d) => ['route', 'add', d, 'via', spec.gateway, 'dev', spec.ifName]),
        ]),
    // deduplicated: one address on two node links would make a second `route add` fail (EEXIST)
    ...[...new Set(spec.hostDestinations)].map((d) => [
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

// --- CHECK ---

interface PodLinkRow {
  ifname?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { mode?: string } };
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

export interface ObservedIpvlanPod {
  links: PodLinkRow[];
  routes: { dst?: string; gateway?: string; dev?: string }[];
  neigh: { dst?: string; lladdr?: string; state?: string[] }[];
}

/** Compares the kernel with what an ipvlan ADD made; returns human problems (empty: healthy). */
export function diagnoseIpvlan(
  spec: IpvlanPodSpec,
  host: ObservedHost,
  pod: ObservedIpvlanPod | null,
): string[] {
  const plan = planIpvlanAdd(spec);
  const problems = diagnoseHostVeth(plan, spec.ip, host);
  if (!pod) {
    problems.push(`network namespace ${spec.netns} is not usable`);
    return problems;
  }
  const prefix = parseCidr(spec.subnetCidr)?.prefix ?? 32;
  const slave = pod.links.find((l) => l.ifname === spec.ifName);
  if (!slave) problems.push(`pod interface ${spec.ifName} is missing`);
  else {
    if (slave.linkinfo?.info_kind !== 'ipvlan') {
      problems.push(`pod interface ${spec.ifName} is ${slave.linkinfo?.info_kind ?? 'not'} an ipvlan slave`);
    }
    if (!slave.flags?.includes('UP')) problems.push(`pod interface ${spec.ifName} is down`);
    if (!slave.addr_info?.some((a) => a.family === 'inet' && a.local === spec.ip && a.prefixlen === prefix)) {
      problems.push(`pod interface ${spec.ifName} lacks ${spec.ip}/${prefix}`);
    }
  }
  const hostLink = pod.links.find((l) => l.ifname === IPVLAN_HOST_LINK);
  if (!hostLink) problems.push(`pod interface ${IPVLAN_HOST_LINK} is missing`);
  else if (!hostLink.flags?.includes('UP')) problems.push(`pod interface ${IPVLAN_HOST_LINK} is down`);
  // every route ADD made: "<dst> via <gw> dev <if>" (the /32 to 169.254.1.1 has no gateway)
  for (const line of plan.podLines.filter((l) => l[0] === 'route')) {
    const [dst, gateway, dev] = [
      line[2],
      line[3] === 'via' ? line[4] : undefined,
      line[line.indexOf('dev') + 1],
    ];
    const want = dst?.endsWith('/32') ? dst.slice(0, -3) : dst; // ip -j prints host routes bare
    if (!pod.routes.some((r) => r.dst === want && r.dev === dev && r.gateway === gateway)) {
      problems.push(`pod route ${dst}${gateway ? ` via ${gateway}` : ''} dev ${dev} is missing`);
    }
  }
  if (
    !pod.neigh.some(
      (n) => n.dst === POD_GATEWAY && n.lladdr === plan.hostMac && n.state?.includes('PERMANENT'),
    )
  ) {
    problems.push(
      `pod neighbour ${POD_GATEWAY} -> ${plan.hostMac} (permanent) on ${IPVLAN_HOST_LINK} is missing`,
    );
  }
  return problems;
}

export async function observeIpvlan(
  ipTool: IpTool,
  spec: Pick<IpvlanPodSpec, 'ip' | 'netns'> & { hostName: string },
  netnsUsable: boolean,
): Promise<{ host: ObservedHost; pod: ObservedIpvlanPod | null }> {
  const observePod = async (): Promise<ObservedIpvlanPod | null> => {
    if (!netnsUsable) return null;
    try {
      const netns = spec.netns;
      const [links, routes, neigh] = await Promise.all([
        ipTool.json<PodLinkRow>(['-d', 'addr', 'show'], { netns }),
        ipTool.json<ObservedIpvlanPod['routes'][number]>(['route', 'show'], { netns }),
        ipTool.json<ObservedIpvlanPod['neigh'][number]>(['neigh', 'show', 'dev', IPVLAN_HOST_LINK], {
          netns,
        }),
      ]);
      return { links, routes, neigh };
    } catch {
      return null;
    }
  };
  const [host, pod] = await Promise.all([observeHost(ipTool, spec.hostName, spec.ip), observePod()]);
  return { host, pod };
}
