// The veth links in the caller's network namespace (the daemon's: the node's), by name. A pod's
// host veth outliving its allocation's GC or pod-watch decision means the pod may still run.
import type { IpTool } from './ip.ts';

/** `ip -j link show type veth`: the link names. */
export async function listHostVeths(ip: IpTool): Promise<string[]> {
  const rows = await ip.json<{ ifname?: unknown }>(['link', 'show', 'type', 'veth']);
  return rows.flatMap((r) => (typeof r.ifname === 'string' ? [r.ifname] : []));
}
