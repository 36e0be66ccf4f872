// The veth links in the caller's network namespace (the daemon's: the node's), by name. A pod's
// host veth outliving its allocation's GC or pod-watch decision means the pod may still run.
import type { IpTool } from './ip.ts';

/** The node's veth links (name + ifindex) and their deletion: the daemon's sweep of veths a DEL left. */
export interface VethLinks {
  list(): Promise<Array<{ name: string; index: number }>>;
  /** Deletes the links; returns unexpected errors (not "already gone"). */
  del(names: string[]): Promise<string[]>;
}

/** `ip -j link show type veth`: the rows, as they come. */
function vethRows(ip: IpTool) {
  return ip.json<{ ifname?: unknown; ifindex?: unknown }>(['link', 'show', 'type', 'veth']);
}

/** `ip -j link show type veth`: the link names. */
export async function listHostVeths(ip: IpTool): Promise<string[]> {
  return (await vethRows(ip)).flatMap((r) => (typeof r.ifname === 'string' ? [r.ifname] : []));
}

/** The veth links with their ifindex, and their deletion (one `ip -batch`, best effort). */
export function hostVethLinks(ip: IpTool): VethLinks {
  return {
    list: async () =>
      (await vethRows(ip)).flatMap((r) =>
        typeof r.ifname === 'string' && typeof r.ifindex === 'number'
          ? [{ name: r.ifname, index: r.ifindex }]
          : [],
      ),
    del: (names) => ip.batchBestEffort(names.map((n) => ['link', 'del', 'dev', n])),
  };
}
