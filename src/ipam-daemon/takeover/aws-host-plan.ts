// What aws-node's ipamd leaves in the node's packet filter, and how to remove it once ours is in
// place (AWS repo, pkg/networkutils):
//  - nat:    chain AWS-SNAT-CHAIN-0 (RETURN for VPC / excluded CIDRs, SNAT the rest to the
//            primary IP), jumped to from POSTROUTING ("AWS SNAT CHAIN"); older versions also left
//            numbered AWS-SNAT-CHAIN-<n> chains;
//  - mangle: with the legacy iptables backend, chain AWS-CONNMARK-CHAIN-0 jumped to from
//            PREROUTING, and PREROUTING rules commented "AWS, primary ENI" (connmark for NodePort
//            and restore-mark on pod veths);
//  - nft:    with iptables in nf_tables mode (current EKS AMIs, this test bed), the connmark part is
//            the nftables table `ip aws-cni` instead.
// The takeover removes these only AFTER our own SNAT and connmark rules are installed, so there is
// no moment without an SNAT rule for new pod connections (both sets agree meanwhile; the first
// matching one wins). Established flows keep their conntrack NAT mapping either way.
//
// Left alone on purpose: the per-pod rules (priority 512 `to <pod ip>`, 1536 `from <pod ip>`) and
// host routes of running pods (each pod's DEL removes them), the ENI route tables (node setup
// takes them over by replacing each route with ours), and aws-node's `fwmark 0x80/0x80 lookup main`
// rule at priority 1024, which is the same as ours and cannot be deleted without risking ours (a
// rule without a protocol cannot be told apart by `ip rule del`).
// Pure: `iptables-save` and `nft list tables` text in, what to run out.

export const AWS_CHAIN_PREFIXES = ['AWS-SNAT-CHAIN', 'AWS-CONNMARK-CHAIN'] as const;
export const AWS_NFT_TABLE = { family: 'ip', name: 'aws-cni' } as const;
const AWS_RULE_COMMENT = /--comment "?AWS, primary ENI"?/;

export interface AwsHostObserved {
  /** `iptables-save -t nat`, `iptables-save -t mangle`. */
  nat: string;
  mangle: string;
  /** `nft list tables` (empty when nft is not installed). */
  nftTables: string;
}

export interface AwsHostCleanup {
  /** An `iptables-restore --noflush` script, or null when nothing of aws-node's is left. */
  iptables: string | null;
  /** nftables tables to delete, as [family, name]. */
  nftTables: Array<[string, string]>;
  /** What was found, for the log. */
  found: string[];
}

const isAwsChain = (name: string) => AWS_CHAIN_PREFIXES.some((p) => name.startsWith(p));

function planTable(table: string, saved: string, found: string[]): string | null {
  const chains: string[] = [];
  const deletes: string[] = [];
  for (const line of saved.split('\n')) {
    const decl = /^:(\S+) /.exec(line);
    if (decl && isAwsChain(decl[1]!)) {
      chains.push(decl[1]!);
      continue;
    }
    const rule = /^-A (\S+) (.*)$/.exec(line);
    if (!rule) continue;
    const [, chain, spec] = rule as unknown as [string, string, string];
    if (isAwsChain(chain)) continue; // goes with its chain
    const jump = /(?:^| )-j (\S+)/.exec(spec)?.[1];
    if ((jump && isAwsChain(jump)) || AWS_RULE_COMMENT.test(spec)) deletes.push(`-D ${chain} ${spec}`);
  }
  if (chains.length === 0 && deletes.length === 0) return null;
  for (const c of chains) found.push(`${table} chain ${c}`);
  for (const d of deletes) found.push(`${table} rule ${d.slice(3)}`);
  // Jumps first (a referenced chain cannot be deleted), then flush (re-declare) and delete.
  return `${[`*${table}`, ...deletes, ...chains.map((c) => `:${c} - [0:0]`), ...chains.map((c) => `-X ${c}`), 'COMMIT'].join('\n')}\n`;
}

export function planAwsHostCleanup(observed: AwsHostObserved): AwsHostCleanup {
  const found: string[] = [];
  const sections = [
    planTable('nat', observed.nat, found),
    planTable('mangle', observed.mangle, found),
  ].filter((s): s is string => s !== null);
  const nftTables: Array<[string, string]> = [];
  for (const line of observed.nftTables.split('\n')) {
    const m = /^table (\S+) (\S+)$/.exec(line.trim());
    if (m && m[1] === AWS_NFT_TABLE.family && m[2] === AWS_NFT_TABLE.name) {
      nftTables.push([m[1], m[2]]);
      found.push(`nft table ${m[1]} ${m[2]}`);
    }
  }
  return { iptables: sections.length > 0 ? sections.join('') : null, nftTables, found };
}
