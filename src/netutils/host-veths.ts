// The veth links in the caller's network namespace (the daemon's: the node's), by name. A pod's
// host veth outliving its allocation's GC or pod-watch decision means the pod may still run.
import type { IpTool } from './ip.ts';

/** `ip -j link show type veth`: the link names. */
export async function listHostVeths(ip: IpTool): Promise<string[]> {
  const rows = await ip.json<{ ifname?: unknown }>(['link', 'show', 'type', 'veth']);
  return rows.flatMap((r) => (typeof r.ifname === 'string' ? [r.ifname] : []));
}

/** The veth links with their ifindex, and their deletion (one `ip -batch`, best effort). */
export function hostVethLinks(ip: IpTool): {
  list(): Promise<Array<{ name: string; index: number }>>;
  del(names: string[]): Promise<string[]>;
} {
  return {
    list: async () => {
      const rows = await ip.json<{ ifname?: unknown; ifindex?: unknown }>(['link', 'show', 'type', 'veth']);
      return rows.flatMap((r) =>
        typeof r.ifname === 'string' && typeof r.ifindex === 'number'
          ? [{ name: r.ifname, index: r.ifindex }]
          : [],
      );
    },
    del: (names) => ip.batchBestEffort(names.map((n) => ['link', 'del', 'dev', n])),
  };
}
