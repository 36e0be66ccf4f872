// Routed veth wiring (the default mode). Planning is pure (NetOps, also rendered as `ip -batch`
// lines). Through the shim, ADD and DEL apply their plans with netlink in the shim (vethNetPlan,
// vethDelPlan); run by the Node plugin or daemon itself an ADD costs two processes (host batch,
// pod batch via nsenter) and a DEL two or three (route lookups, cleanup batch).
//
// Pod:  <ip>/32 on <ifName>; 169.254.1.1 scope link; default via 169.254.1.1; a permanent
//       neighbour 169.254.1.1 -> host veth MAC (so the pod never ARPs for its gateway).
// Host: <ip>/32 dev <hostVeth>; rule `to <ip> lookup main` (prio 512) for every pod so traffic
//       to pods never follows a pod's ENI table; rule `from <ip> lookup <table>` (prio 1536) for IPs
//       on a secondary ENI so their traffic leaves through that ENI.
import type { IpTool } from '../../netutils/ip.ts';
import {
  hostVethName,
  POD_GATEWAY,
  PRIO_FROM_POD,
  PRIO_TO_POD,
  ROUTE_PROTO,
  vethMacs,
} from '../../netutils/names.ts';
import { ipArgv, type NetOp, type NetPlan, TABLE_MAIN } from './net-ops.ts';

export interface VethPodSpec {
  containerId: string;
  ifName: string;
  netns: string;
  ip: string;
  /** 0: primary interface (main table); else the ENI's table. */
  routeTable: number;
  mtu: number;
  /** Host veth name prefix (the conflist's vethPrefix); default HOST_VETH_PREFIX. */
  vethPrefix?: string;
}

export interface VethPlan {
  hostName: string;
  hostMac: string;
  podMac: string;
  /** Creates the pair (needs no IP, so it can run while the daemon allocates). */
  linkOps: NetOp[];
  /** Host route + rules, and the pod side: independent of each other. */
  hostOps: NetOp[];
  podOps: NetOp[];
  /** The same ops as `ip -batch` lines. */
  linkLines: string[][];
  hostLines: string[][];
  podLines: string[][];
}

export type VethLinkSpec = Pick<VethPodSpec, 'containerId' | 'ifName' | 'netns' | 'mtu' | 'vethPrefix'> & {
  /** Name of the end inside the pod (default: ifName; the host end is named after ifName anyway). */
  peerName?: string;
};

export function planVethLink(
  spec: VethLinkSpec,
): Pick<VethPlan, 'hostName' | 'hostMac' | 'podMac' | 'linkOps' | 'linkLines'> {
  const hostName = hostVethName(spec.containerId, spec.ifName, spec.vethPrefix);
  const { host: hostMac, pod: podMac } = vethMacs(spec.containerId, spec.ifName);
  const linkOps: NetOp[] = [
    // The peer is created directly inside the pod netns: no rename, no name clash with host eth0.
    {
      op: 'veth',
      name: hostName,
      mac: hostMac,
      mtu: spec.mtu,
      peer: spec.peerName ?? spec.ifName,
      peerMac: podMac,
      peerNetns: spec.netns,
    },
    { op: 'up', dev: hostName },
  ];
  return { hostName, hostMac, podMac, linkOps, linkLines: linkOps.map(ipArgv) };
}

export function planVethAdd(spec: VethPodSpec): VethPlan {
  const link = planVethLink(spec);
  const ip32 = `${spec.ip}/32`;
  const proto = ROUTE_PROTO;
  const hostOps: NetOp[] = [
    { op: 'route', replace: true, dst: ip32, dev: link.hostName, scopeLink: true, proto },
    { op: 'rule', to: ip32, table: TABLE_MAIN, priority: PRIO_TO_POD, proto },
  ];
  if (spec.routeTable > 0) {
    hostOps.push({ op: 'rule', from: ip32, table: spec.routeTable, priority: PRIO_FROM_POD, proto });
  }
  const dev = spec.ifName;
  const podOps: NetOp[] = [
    { op: 'addr', cidr: ip32, dev },
    { op: 'up', dev },
    { op: 'route', dst: `${POD_GATEWAY}/32`, dev, scopeLink: true },
    { op: 'route', dst: '0.0.0.0/0', via: POD_GATEWAY, dev },
    { op: 'neigh', ip: POD_GATEWAY, mac: link.hostMac, dev },
  ];
  return {
    ...link,
    hostOps,
    podOps,
    hostLines: hostOps.map(ipArgv),
    podLines: podOps.map(ipArgv),
  };
}

/** The whole ADD as one plan for the shim: the pair and host side, then the pod side in its netns. */
export function vethNetPlan(plan: VethPlan, netns: string): NetPlan {
  return {
    steps: [{ ops: [...plan.linkOps, ...plan.hostOps] }, { netns, ops: plan.podOps }],
  };
}

/** The rules a pod IP has on the host (ADD's hostOps), as deletions: from any table. */
function podRuleDels(ip: string): NetOp[] {
  const ip32 = `${ip}/32`;
  return [
    { op: 'ruleDel', to: ip32, table: TABLE_MAIN, priority: PRIO_TO_POD },
    { op: 'ruleDel', from: ip32, priority: PRIO_FROM_POD },
  ];
}

/**
 * Host-side cleanup for one attachment: the rules (when the IP is known) and the host veth (which
 * takes its peer, the /32 route and the pod-side state with it). Safe to run when parts are gone.
 */
export function planHostCleanup(hostName: string, ip: string | null): string[][] {
  const ops: NetOp[] = [...(ip ? podRuleDels(ip) : []), { op: 'linkDel', dev: hostName }];
  return ops.map(ipArgv);
}

/**
 * DEL as one plan for the shim, host side only (the pod netns may be gone; the veth takes its peer
 * with it): the IP's rules only while the IP routes to this veth or nowhere — a stale DEL, retried
 * after the IP went to another pod, must leave that pod's rules alone — then the veth. Every op
 * succeeds when its object is gone already, so a repeated DEL succeeds too.
 *
 * `leaveVeth` (plan version LEAVE_VETH_PLAN_VERSION): the veth stays, as the AWS VPC CNI's DEL
 * leaves it, for the runtime's netns deletion to destroy (the daemon sweeps what is left, see
 * src/ipam-daemon/daemon/veth-sweep.ts); its /32 route goes explicitly instead, so the IP is
 * unreachable through it once the plan applied. The shim reports the veth's ifindex.
 */
export function vethDelPlan(hostName: string, ip: string, leaveVeth = false): NetPlan {
  const ip32 = `${ip}/32`;
  return {
    steps: [
      { onlyIfRoute: { dst: ip32, devs: [hostName] }, ops: podRuleDels(ip) },
      { ops: [leaveVeth ? { op: 'routeDel', dst: ip32, dev: hostName } : { op: 'linkDel', dev: hostName }] },
    ],
  };
}

/** Resolves to the error instead of rejecting, so a batch can run while other work is awaited. */
export function settle(p: Promise<void>): Promise<Error | null> {
  return p.then(
    () => null,
    (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
  );
}

/**
 * Wires the pod. `linkDone` is the link batch when the caller already started it (overlapping the
 * daemon call); the host and pod batches then run in parallel. Throws the first failure after both
 * have settled, so a rollback never races a running batch.
 */
export async function applyVethAdd(
  ip: IpTool,
  plan: VethPlan,
  netns: string,
  linkDone?: Promise<Error | null>,
): Promise<void> {
  const linkErr = await (linkDone ?? settle(ip.batch(plan.linkLines)));
  if (linkErr) throw linkErr;
  const [hostErr, podErr] = await Promise.all([
    settle(ip.batch(plan.hostLines)),
    settle(ip.batch(plan.podLines, { netns })),
  ]);
  if (hostErr ?? podErr) throw hostErr ?? podErr;
}

/** Best-effort host cleanup; returns unexpected errors (not "already gone"). */
export function cleanupHost(ipTool: IpTool, hostName: string, ip: string | null): Promise<string[]> {
  return ipTool.batchBestEffort(planHostCleanup(hostName, ip));
}

/** Finds a pod IP from the host side (the /32 route on its veth), for DEL without prevResult. */
export async function podIpFromHost(ipTool: IpTool, hostName: string): Promise<string | null> {
  const routes = await ipTool.json<{ dst?: string }>(['route', 'show', 'table', 'main', 'dev', hostName]);
  for (const r of routes) {
    if (r.dst && /^\d+\.\d+\.\d+\.\d+$/.test(r.dst)) return r.dst;
  }
  return null;
}

/** True when the IP's /32 route points at a veth other than ours (the IP belongs to another pod). */
export async function routedElsewhere(ipTool: IpTool, hostName: string, ip: string): Promise<boolean> {
  const routes = await ipTool.json<{ dev?: string }>(['route', 'show', 'table', 'main', `${ip}/32`]);
  return routes.some((r) => r.dev !== undefined && r.dev !== hostName);
}

// --- CHECK ---

export interface ObservedHost {
  link: { address?: string; flags?: string[]; mtu?: number } | undefined;
  routes: { dst?: string; dev?: string }[];
  rules: { priority?: number; src?: string; dst?: string; table?: string }[];
}

export interface ObservedPod {
  link:
    | {
        address?: string;
        flags?: string[];
        addr_info?: { family?: string; local?: string; prefixlen?: number }[];
      }
    | undefined;
  routes: { dst?: string; gateway?: string; dev?: string }[];
  neigh: { dst?: string; lladdr?: string; state?: string[] }[];
}

/** The host veth (MAC, up) and the pod's /32 route through it: both modes have them. */
export function diagnoseHostVeth(
  plan: { hostName: string; hostMac: string },
  ip: string,
  host: ObservedHost,
): string[] {
  const problems: string[] = [];
  if (!host.link) problems.push(`host veth ${plan.hostName} is missing`);
  else {
    if (host.link.address !== plan.hostMac)
      problems.push(`host veth ${plan.hostName} has MAC ${host.link.address}`);
    if (!host.link.flags?.includes('UP')) problems.push(`host veth ${plan.hostName} is down`);
  }
  if (!host.routes.some((r) => r.dst === ip && r.dev === plan.hostName)) {
    problems.push(`host route ${ip}/32 dev ${plan.hostName} is missing`);
  }
  return problems;
}

/** Compares what the kernel has with what ADD made; returns human problems (empty: healthy). */
export function diagnoseVeth(spec: VethPodSpec, host: ObservedHost, pod: ObservedPod | null): string[] {
  const plan = planVethAdd(spec);
  const problems = diagnoseHostVeth(plan, spec.ip, host);
  if (!host.rules.some((r) => r.priority === PRIO_TO_POD && r.dst === spec.ip && r.table === 'main')) {
    problems.push(`rule "to ${spec.ip} lookup main" (priority ${PRIO_TO_POD}) is missing`);
  }
  if (
    spec.routeTable > 0 &&
    !host.rules.some(
      (r) => r.priority === PRIO_FROM_POD && r.src === spec.ip && r.table === String(spec.routeTable),
    )
  ) {
    problems.push(`rule "from ${spec.ip} lookup ${spec.routeTable}" (priority ${PRIO_FROM_POD}) is missing`);
  }
  if (!pod) {
    problems.push(`network namespace ${spec.netns} is not usable`);
    return problems;
  }
  if (!pod.link) problems.push(`pod interface ${spec.ifName} is missing`);
  else {
    if (!pod.link.flags?.includes('UP')) problems.push(`pod interface ${spec.ifName} is down`);
    const has = pod.link.addr_info?.some(
      (a) => a.family === 'inet' && a.local === spec.ip && a.prefixlen === 32,
    );
    if (!has) problems.push(`pod interface ${spec.ifName} lacks ${spec.ip}/32`);
  }
  if (!pod.routes.some((r) => r.dst === 'default' && r.gateway === POD_GATEWAY)) {
    problems.push(`pod default route via ${POD_GATEWAY} is missing`);
  }
  if (
    !pod.neigh.some(
      (n) => n.dst === POD_GATEWAY && n.lladdr === plan.hostMac && n.state?.includes('PERMANENT'),
    )
  ) {
    problems.push(`pod neighbour ${POD_GATEWAY} -> ${plan.hostMac} (permanent) is missing`);
  }
  return problems;
}

export async function observeHost(ipTool: IpTool, hostName: string, ip: string): Promise<ObservedHost> {
  const [links, routes, rules] = await Promise.all([
    ipTool.json<NonNullable<ObservedHost['link']>>(['link', 'show', 'dev', hostName]),
    ipTool.json<ObservedHost['routes'][number]>(['route', 'show', 'table', 'main', `${ip}/32`]),
    ipTool.json<ObservedHost['rules'][number]>(['rule', 'show']),
  ]);
  return { link: links[0], routes, rules };
}

export async function observePod(ipTool: IpTool, netns: string, ifName: string): Promise<ObservedPod | null> {
  try {
    const [links, routes, neigh] = await Promise.all([
      ipTool.json<NonNullable<ObservedPod['link']>>(['addr', 'show', 'dev', ifName], { netns }),
      ipTool.json<ObservedPod['routes'][number]>(['route', 'show'], { netns }),
      ipTool.json<ObservedPod['neigh'][number]>(['neigh', 'show', 'dev', ifName], { netns }),
    ]);
    return { link: links[0], routes, neigh };
  } catch {
    return null;
  }
}
