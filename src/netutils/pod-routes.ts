// The pods the plugin wired, as the kernel sees them: every routed-veth pod has a host route
// `<pod ip>/32 dev vpc<11 hex> proto 118` in the main table (cni/wiring/veth.ts). The daemon reads
// these in its OWN network namespace (it runs in the node's, host network), so no nsenter here.
import type { IpTool } from './ip.ts';
import { HOST_VETH_PREFIX, hostVethPattern, ROUTE_PROTO } from './names.ts';

export interface PodHostRoute {
  ip: string;
  /** The host end of the pod's veth (hostVethName(containerId, ifName)). */
  hostVeth: string;
}

/** Exactly the names hostVethName() produces with the default prefix. */
export const HOST_VETH_NAME = hostVethPattern([HOST_VETH_PREFIX]);
// `ip -j` prints a /32 destination as the bare address; anything with a prefix is not a pod route.
const BARE_IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * The host veths of pods another plugin wired, named `<prefix><11 hex>`: the AWS VPC CNI's
 * (prefix `eni` unless AWS_VPC_K8S_CNI_VETHPREFIX said otherwise), adopted in a takeover.
 */
export function foreignVethName(prefix: string): RegExp {
  if (!/^[a-z0-9]{1,4}$/.test(prefix)) throw new Error(`invalid veth prefix ${JSON.stringify(prefix)}`);
  return new RegExp(`^${prefix}[0-9a-f]{11}$`);
}

/**
 * Pure: keeps /32 routes on host veths named with one of `names` (prefixes, see hostVethPattern, or
 * a pattern), one per IP (the kernel allows only one anyway).
 */
export function parsePodHostRoutes(
  rows: readonly unknown[],
  names: RegExp | readonly string[] = [HOST_VETH_PREFIX],
): PodHostRoute[] {
  const veth = names instanceof RegExp ? names : hostVethPattern(names);
  const out = new Map<string, PodHostRoute>();
  for (const row of rows) {
    if (typeof row !== 'object' || row === null) continue;
    const { dst, dev } = row as { dst?: unknown; dev?: unknown };
    if (typeof dst !== 'string' || typeof dev !== 'string') continue;
    if (!BARE_IPV4.test(dst) || !veth.test(dev) || out.has(dst)) continue;
    out.set(dst, { ip: dst, hostVeth: dev });
  }
  return [...out.values()];
}

/** `ip -j route show table main proto 118` in the caller's netns, reduced to pod host routes. */
export async function listPodHostRoutes(
  ip: IpTool,
  prefixes: readonly string[] = [HOST_VETH_PREFIX],
): Promise<PodHostRoute[]> {
  const rows = await ip.json(['route', 'show', 'table', 'main', 'proto', String(ROUTE_PROTO)]);
  return parsePodHostRoutes(rows, prefixes);
}

/**
 * The /32 routes of pods another plugin wired (`foreignVethName(prefix)`): theirs carry no protocol
 * 118, so the whole main table is read.
 */
export async function listForeignPodHostRoutes(ip: IpTool, prefix: string): Promise<PodHostRoute[]> {
  const names = foreignVethName(prefix);
  return parsePodHostRoutes(await ip.json(['route', 'show', 'table', 'main']), names);
}
