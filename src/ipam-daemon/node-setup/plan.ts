// Node-level networking, planned as a pure function of (what the cloud says, what the kernel has):
//  - each secondary ENI's interface (found by MAC) up, with its primary IP (noprefixroute);
//  - per-ENI route table (deviceIndex + 1): gateway scope link + default via the subnet gateway;
//  - rule `fwmark 0x80/0x80 lookup main` (prio 1024) so connmarked flows use the primary interface;
//  - ip_forward on and rp_filter loose (2) on `all` (the kernel uses max(all, device), so this
//    covers every ENI, present and future). Only these two keys, the ones the install-cni init
//    container sets: the daemon container's /proc/sys is read-only, and ensure() writes nothing
//    when the value is already right. No per-interface rp_filter writes;
//  - iptables: nat VPC-IPAM-SNAT (RETURN for VPC + excluded CIDRs, SNAT the rest to the primary IP)
//    and mangle VPC-IPAM-CONNMARK / VPC-IPAM-PODMARK (see docs/data-plane.md).
// Everything we install carries protocol 118 (routes, rules) or a VPC-IPAM- chain name, so a
// re-run adds nothing twice and removes only stale state of ours.

import {
  CONNMARK_BIT,
  HOST_VETH_PREFIX,
  PRIO_CONNMARK,
  PRIO_EXTERNAL_SERVICE,
  ROUTE_PROTO,
} from '../../netutils/names.ts';
import { firstHost, parseCidr, validateCidr } from '../../netutils/validate.ts';
import type { InterfaceInfo, NodeInfo } from '../../providers/types.ts';
import type { SnatConfig } from '../config.ts';

export interface ObservedLink {
  ifname?: string;
  address?: string;
  mtu?: number;
  flags?: string[];
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

export interface ObservedRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
  /** Absent for the main table. */
  table?: string;
}

export interface ObservedRule {
  priority?: number;
  dst?: string;
  dstlen?: number;
  fwmark?: string;
  fwmask?: string;
  table?: string;
  protocol?: string;
}

export interface ObservedNode {
  /** `ip -j addr show` */
  links: ObservedLink[];
  /** `ip -j route show table all proto 118` */
  routes: ObservedRoute[];
  /** `ip -j rule show` */
  rules: ObservedRule[];
  /** `iptables-save -t nat` / `-t mangle` */
  nat: string;
  mangle: string;
}

export interface SysctlChange {
  key: string[];
  value: string;
}

export interface NodeSetupPlan {
  /** Lines for one `ip -batch` run, in order. */
  ipLines: string[][];
  sysctls: SysctlChange[];
  /** An iptables-restore --noflush script, or null when the rules are already right. */
  iptables: string | null;
  /** Interfaces the cloud attached that the kernel does not show yet (MACs). */
  missing: { interfaceId: string; mac: string }[];
  /** Link name of each interface we found, by interface id. */
  linkNames: Record<string, string>;
}

/** Node networking choices besides SNAT (built from the daemon config in node-setup/index.ts). */
export interface NodeNetOptions {
  /** Prefixes of host veths carrying pod traffic (the SNAT/connmark rules match `<prefix>+`). */
  vethPrefixes: string[];
  /**
   * AWS_EXTERNAL_SERVICE_CIDRS: `to <cidr> lookup main` at PRIO_EXTERNAL_SERVICE, so pods on a
   * secondary ENI reach these through the main table (primary interface) instead of their ENI's.
   */
  externalServiceCidrs: string[];
  /** AWS_VPC_ENI_MTU: MTU set on every ENI's link, the primary's included; null leaves them alone. */
  eniMtu: number | null;
}

export const DEFAULT_NODE_NET: NodeNetOptions = {
  vethPrefixes: [HOST_VETH_PREFIX],
  externalServiceCidrs: [],
  eniMtu: null,
};

export const CHAIN_SNAT = 'VPC-IPAM-SNAT';
export const CHAIN_CONNMARK = 'VPC-IPAM-CONNMARK';
export const CHAIN_PODMARK = 'VPC-IPAM-PODMARK';
const CHAIN_PREFIX = 'VPC-IPAM-';
const MARK = `0x${CONNMARK_BIT.toString(16)}`;

export function routeTableFor(deviceIndex: number): number {
  return deviceIndex === 0 ? 0 : deviceIndex + 1;
}

// --- iptables ---

export interface TableRules {
  /** Jump rules in built-in chains, as iptables-save prints them (without "-A "). */
  jumps: string[];
  /** Our chains and their rules (without "-A <chain> "), in order. */
  chains: Record<string, string[]>;
}

const PROTO = String(ROUTE_PROTO);

/** Desired rules, written exactly as iptables-save prints them so comparison is textual. */
export function desiredIptables(
  primaryIf: string,
  primaryIp: string,
  vpcCidrs: string[],
  snat: SnatConfig,
  vethPrefixes: readonly string[] = [HOST_VETH_PREFIX],
): { nat: TableRules; mangle: TableRules } {
  const vpc = vpcCidrs.map((c) => validateCidr(c, 'VPC CIDR'));
  const excluded = snat.excludeCidrs.map((c) => validateCidr(c, 'AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS entry'));
  const random =
    snat.randomize === 'prng' ? ' --random-fully' : snat.randomize === 'hashrandom' ? ' --random' : '';
  const veths = vethPrefixes.map((p) => `${p}+`);
  const nat: TableRules = { jumps: [], chains: {} };
  const mangle: TableRules = {
    jumps: [`PREROUTING -m comment --comment "vpc-ipam: connmark" -j ${CHAIN_CONNMARK}`],
    chains: {
      [CHAIN_CONNMARK]: [
        // Connections that reach the node on its primary interface (NodePort, SNAT replies) answer
        // through it too, whichever ENI the pod's IP lives on.
        `-i ${primaryIf} -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark ${MARK}/${MARK}`,
      ],
    },
  };
  if (!snat.externalSnat) {
    nat.jumps.push(
      `POSTROUTING -m comment --comment "vpc-ipam: SNAT pod traffic leaving the VPC" -j ${CHAIN_SNAT}`,
    );
    nat.chains[CHAIN_SNAT] = [
      ...vpc.map((c) => `-d ${c} -m comment --comment "vpc-ipam: VPC CIDR" -j RETURN`),
      ...excluded.map((c) => `-d ${c} -m comment --comment "vpc-ipam: excluded CIDR" -j RETURN`),
      ...veths.map((v) => `-o ${v} -j RETURN`),
      `-o ${primaryIf} -j SNAT --to-source ${primaryIp}${random}`,
    ];
    // Pod flows leaving the VPC are marked so they route via main (primary interface) and get SNATed
    // there, even from pods whose IP is on a secondary ENI (their ENI table would send them out it).
    mangle.chains[CHAIN_CONNMARK]!.push(...veths.map((v) => `-i ${v} -j ${CHAIN_PODMARK}`));
    mangle.chains[CHAIN_PODMARK] = [
      ...vpc.map((c) => `-d ${c} -j RETURN`),
      ...excluded.map((c) => `-d ${c} -j RETURN`),
      `-j CONNMARK --set-xmark ${MARK}/${MARK}`,
    ];
  }
  mangle.chains[CHAIN_CONNMARK]!.push(
    ...veths.map((v) => `-i ${v} -j CONNMARK --restore-mark --nfmask ${MARK} --ctmask ${MARK}`),
  );
  return { nat, mangle };
}

/** Our part of one table in iptables-save output. */
export function parseSaved(saved: string): TableRules {
  const out: TableRules = { jumps: [], chains: {} };
  for (const line of saved.split('\n')) {
    const decl = /^:(\S+) /.exec(line);
    if (decl?.[1]?.startsWith(CHAIN_PREFIX)) out.chains[decl[1]] ??= [];
    const rule = /^-A (\S+) (.*)$/.exec(line);
    if (!rule) continue;
    const [, chain, spec] = rule as unknown as [string, string, string];
    if (chain.startsWith(CHAIN_PREFIX)) {
      out.chains[chain] ??= [];
      out.chains[chain].push(spec);
    } else if (new RegExp(`-j ${CHAIN_PREFIX}\\S+`).test(spec)) out.jumps.push(`${chain} ${spec}`);
  }
  return out;
}

/** The restore section that turns `current` into `desired` for one table, or null when equal. */
export function planTable(table: string, current: TableRules, desired: TableRules): string | null {
  const same =
    JSON.stringify([...current.jumps].sort()) === JSON.stringify([...desired.jumps].sort()) &&
    Object.keys(current.chains).length === Object.keys(desired.chains).length &&
    Object.entries(desired.chains).every(
      ([name, rules]) => JSON.stringify(current.chains[name]) === JSON.stringify(rules),
    );
  if (same) return null;
  const lines = [`*${table}`];
  const stale = Object.keys(current.chains).filter((c) => !(c in desired.chains));
  // Declaring a chain in a --noflush restore flushes it (or creates it).
  for (const c of [...Object.keys(desired.chains), ...stale]) lines.push(`:${c} - [0:0]`);
  const want = [...desired.jumps];
  for (const j of current.jumps) {
    const i = want.indexOf(j);
    if (i >= 0)
      want.splice(i, 1); // present once: keep
    else lines.push(`-D ${j}`); // stale or duplicate
  }
  for (const [c, rules] of Object.entries(desired.chains)) for (const r of rules) lines.push(`-A ${c} ${r}`);
  for (const j of want) lines.push(`-A ${j}`);
  for (const c of stale) lines.push(`-X ${c}`);
  lines.push('COMMIT');
  return `${lines.join('\n')}\n`;
}

// --- the whole plan ---

export function planNodeSetup(
  node: Pick<NodeInfo, 'primaryIp' | 'primaryMac' | 'vpcCidrs'>,
  interfaces: Pick<InterfaceInfo, 'id' | 'mac' | 'deviceIndex' | 'subnetCidr' | 'primaryIp'>[],
  snat: SnatConfig,
  observed: ObservedNode,
  net: NodeNetOptions = DEFAULT_NODE_NET,
): NodeSetupPlan {
  const byMac = new Map(observed.links.filter((l) => l.address).map((l) => [l.address!.toLowerCase(), l]));
  const primaryLink = byMac.get(node.primaryMac.toLowerCase());
  if (!primaryLink?.ifname) {
    throw new Error(
      `no interface with the primary MAC ${node.primaryMac}: is this the node's network namespace?`,
    );
  }
  const primaryIf = primaryLink.ifname;
  const ipLines: string[][] = [];
  const setMtu = (link: ObservedLink, dev: string) => {
    if (net.eniMtu !== null && link.mtu !== net.eniMtu) {
      ipLines.push(['link', 'set', 'dev', dev, 'mtu', String(net.eniMtu)]);
    }
  };
  setMtu(primaryLink, primaryIf);
  const sysctls: SysctlChange[] = [
    { key: ['net', 'ipv4', 'ip_forward'], value: '1' },
    { key: ['net', 'ipv4', 'conf', 'all', 'rp_filter'], value: '2' },
  ];
  const missing: NodeSetupPlan['missing'] = [];
  const linkNames: Record<string, string> = {
    [interfaces.find((i) => i.deviceIndex === 0)?.id ?? 'primary']: primaryIf,
  };
  const wantRoutes = new Map<string, string[]>(); // key -> add line

  for (const eni of interfaces) {
    if (eni.deviceIndex === 0) continue;
    const link = byMac.get(eni.mac.toLowerCase());
    if (!link?.ifname) {
      missing.push({ interfaceId: eni.id, mac: eni.mac });
      continue;
    }
    const dev = link.ifname;
    linkNames[eni.id] = dev;
    const table = String(routeTableFor(eni.deviceIndex));
    const gw = firstHost(eni.subnetCidr);
    const prefix = parseCidr(eni.subnetCidr)!.prefix;
    setMtu(link, dev);
    if (!link.flags?.includes('UP')) ipLines.push(['link', 'set', 'dev', dev, 'up']);
    const hasIp = link.addr_info?.some((a) => a.family === 'inet' && a.local === eni.primaryIp);
    // noprefixroute: the subnet must not appear in main via this ENI; its table has the routes.
    if (!hasIp) ipLines.push(['addr', 'add', `${eni.primaryIp}/${prefix}`, 'dev', dev, 'noprefixroute']);
    wantRoutes.set(
      `${table}|${gw}||${dev}`,
      ['route', 'replace', `${gw}/32`, 'dev', dev, 'scope', 'link'].concat(['table', table, 'proto', PROTO]),
    );
    wantRoutes.set(
      `${table}|default|${gw}|${dev}`,
      ['route', 'replace', 'default', 'via', gw, 'dev', dev].concat(['table', table, 'proto', PROTO]),
    );
  }

  // Routes: ours live in numbered tables (main holds the plugin's per-pod routes, not ours to judge).
  const seen = new Set<string>();
  for (const r of observed.routes) {
    if (!r.table || r.table === 'main' || r.table === 'local' || !/^\d+$/.test(r.table)) continue;
    const key = `${r.table}|${r.dst}|${r.gateway ?? ''}|${r.dev}`;
    if (wantRoutes.has(key) && !seen.has(key)) {
      seen.add(key);
      continue;
    }
    const dst = r.dst === 'default' ? 'default' : `${r.dst}`;
    ipLines.push(
      [
        'route',
        'del',
        dst,
        ...(r.gateway ? ['via', r.gateway] : []),
        ...(r.dev ? ['dev', r.dev] : []),
      ].concat(['table', r.table, 'proto', PROTO]),
    );
  }
  // Gateway (scope link) routes first: the default route needs its nexthop reachable.
  const adds = [...wantRoutes.entries()].filter(([k]) => !seen.has(k)).map(([, line]) => line);
  adds.sort((a, b) => Number(a[1] === 'default') - Number(b[1] === 'default'));
  ipLines.push(...adds);

  // The connmark rule: exactly one, exactly this.
  const ours = observed.rules.filter((r) => r.protocol === PROTO && r.priority === PRIO_CONNMARK);
  let kept = false;
  for (const r of ours) {
    if (!kept && r.fwmark === MARK && r.fwmask === MARK && r.table === 'main') {
      kept = true;
      continue;
    }
    const mark = r.fwmark ? ['fwmark', r.fwmask ? `${r.fwmark}/${r.fwmask}` : r.fwmark] : [];
    ipLines.push(
      [
        'rule',
        'del',
        'priority',
        String(PRIO_CONNMARK),
        ...mark,
        ...(r.table ? ['lookup', r.table] : []),
      ].concat(['protocol', PROTO]),
    );
  }
  if (!kept) {
    ipLines.push(
      [
        'rule',
        'add',
        'fwmark',
        `${MARK}/${MARK}`,
        'lookup',
        'main',
        'priority',
        String(PRIO_CONNMARK),
      ].concat(['protocol', PROTO]),
    );
  }

  ipLines.push(...planExternalServiceRules(observed.rules, net.externalServiceCidrs));

  const desired = desiredIptables(primaryIf, node.primaryIp, node.vpcCidrs, snat, net.vethPrefixes);
  const sections = [
    planTable('nat', parseSaved(observed.nat), desired.nat),
    planTable('mangle', parseSaved(observed.mangle), desired.mangle),
  ].filter((s): s is string => s !== null);
  return { ipLines, sysctls, iptables: sections.length > 0 ? sections.join('') : null, missing, linkNames };
}

/** `to <cidr> lookup main` rules of ours at PRIO_EXTERNAL_SERVICE: exactly one per wanted CIDR. */
export function planExternalServiceRules(rules: ObservedRule[], cidrs: readonly string[]): string[][] {
  const want = new Set(cidrs.map((c) => validateCidr(c, 'AWS_EXTERNAL_SERVICE_CIDRS entry')));
  const lines: string[][] = [];
  for (const r of rules) {
    if (r.protocol !== PROTO || r.priority !== PRIO_EXTERNAL_SERVICE) continue;
    const dst = r.dst && r.dst !== 'all' ? `${r.dst}/${r.dstlen ?? 32}` : 'all';
    if (r.table === 'main' && want.delete(dst)) continue; // present once: keep
    lines.push(
      ['rule', 'del', 'priority', String(PRIO_EXTERNAL_SERVICE)]
        .concat(dst === 'all' ? [] : ['to', dst])
        .concat(r.table ? ['lookup', r.table] : [])
        .concat(['protocol', PROTO]),
    );
  }
  for (const c of want) {
    lines.push([
      'rule',
      'add',
      'to',
      c,
      'lookup',
      'main',
      'priority',
      String(PRIO_EXTERNAL_SERVICE),
      'protocol',
      PROTO,
    ]);
  }
  return lines;
}
