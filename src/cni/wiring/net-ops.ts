// The wiring of a pod as data: a few kinds of kernel changes, each one `ip` line or one netlink
// request. The daemon builds them (all CNI semantics stay in TypeScript) and either renders them
// as `ip -batch` lines (ipArgv) or hands them to the shim, which applies them in-process with
// netlink (src/cni/shim/apply.go) so an ADD or DEL forks no `ip`/`nsenter` from the daemon. Pure.

/** The plan version (the shim's `apply`) from which the shim knows linkDel, ruleDel and onlyIfRoute. */
export const DEL_PLAN_VERSION = 2;
/**
 * The plan version from which the shim knows routeDel and reports the index of the link a routeDel
 * names (AppliedReport.links): a veth DEL may then leave the veth to the runtime's netns deletion.
 */
export const LEAVE_VETH_PLAN_VERSION = 3;

/** The main routing table's number (`lookup main`). */
export const TABLE_MAIN = 254;

export type NetOp =
  /** A veth pair, the peer created directly inside peerNetns (no rename, no name clash). */
  | {
      op: 'veth';
      name: string;
      mac: string;
      mtu: number;
      peer: string;
      peerMac: string;
      peerNetns: string;
    }
  | { op: 'up'; dev: string }
  | { op: 'addr'; dev: string; cidr: string }
  /** dst is a CIDR (0.0.0.0/0 is the default route); scope link or universe; replace or add. */
  | {
      op: 'route';
      dst: string;
      dev: string;
      via?: string;
      scopeLink?: boolean;
      proto?: number;
      replace?: boolean;
    }
  /** Exactly one of from/to (a CIDR). */
  | { op: 'rule'; from?: string; to?: string; table: number; priority: number; proto?: number }
  /** A permanent neighbour entry. */
  | { op: 'neigh'; dev: string; ip: string; mac: string }
  /** Deletes a link (a veth takes its peer and its routes with it); done if it is gone already. */
  | { op: 'linkDel'; dev: string }
  /** Deletes a rule (exactly one of from/to; no table: any); done if none matches. */
  | { op: 'ruleDel'; from?: string; to?: string; table?: number; priority: number }
  /**
   * Deletes the main table's route to dst through dev; done if there is none (or no dev). The shim
   * reports dev's ifindex when dev exists (AppliedReport.links).
   */
  | { op: 'routeDel'; dst: string; dev: string };

/** Ops that run in one network namespace: netns undefined is the caller's (the node's). */
export interface NetStep {
  netns?: string;
  /**
   * Run the step only while the main table's route to dst is absent or goes out one of devs (else
   * it is skipped, not failed): rules keyed by a pod IP belong to whichever veth the IP routes to.
   */
  onlyIfRoute?: { dst: string; devs: string[] };
  ops: NetOp[];
}

/** What the shim reports with a plan (version 3): the ifindex of each link a routeDel named that exists. */
export type AppliedLinks = Record<string, number>;

/** What the shim applies, in order; it stops at the first failing op and reports it. */
export interface NetPlan {
  steps: NetStep[];
}

/** The `ip` argv (for `ip -batch`) that makes the same change as the op. */
export function ipArgv(o: NetOp): string[] {
  switch (o.op) {
    case 'veth': {
      const mtu = String(o.mtu);
      return ['link', 'add', 'name', o.name, 'address', o.mac, 'mtu', mtu, 'type', 'veth'].concat([
        'peer',
        'name',
        o.peer,
        'address',
        o.peerMac,
        'mtu',
        mtu,
        'netns',
        o.peerNetns,
      ]);
    }
    case 'up':
      return ['link', 'set', 'dev', o.dev, 'up'];
    case 'addr':
      return ['addr', 'add', o.cidr, 'dev', o.dev];
    case 'route':
      return [
        'route',
        o.replace ? 'replace' : 'add',
        o.dst === '0.0.0.0/0' ? 'default' : o.dst,
        ...(o.via ? ['via', o.via] : []),
        'dev',
        o.dev,
        ...(o.scopeLink ? ['scope', 'link'] : []),
        ...(o.proto !== undefined ? ['proto', String(o.proto)] : []),
      ];
    case 'rule': {
      const [dir, cidr] = o.from !== undefined ? ['from', o.from] : ['to', o.to ?? ''];
      return [
        'rule',
        'add',
        dir,
        cidr,
        'lookup',
        o.table === TABLE_MAIN ? 'main' : String(o.table),
        'priority',
        String(o.priority),
        ...(o.proto !== undefined ? ['protocol', String(o.proto)] : []),
      ];
    }
    case 'neigh':
      return ['neigh', 'add', o.ip, 'lladdr', o.mac, 'dev', o.dev, 'nud', 'permanent'];
    case 'linkDel':
      return ['link', 'del', 'dev', o.dev];
    case 'routeDel':
      return ['route', 'del', o.dst, 'dev', o.dev, 'table', 'main'];
    case 'ruleDel': {
      const [dir, cidr] = o.from !== undefined ? ['from', o.from] : ['to', o.to ?? ''];
      const table =
        o.table === undefined ? [] : ['lookup', o.table === TABLE_MAIN ? 'main' : String(o.table)];
      return ['rule', 'del', dir, cidr, ...table, 'priority', String(o.priority)];
    }
  }
}

/** The interface names a plan may carry (and the shim's report may name back, AppliedLinks). */
export const PLAN_IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** Validates a plan the daemon is about to send: every op complete, names and addresses sane. */
export function checkNetPlan(plan: NetPlan): void {
  const mac = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
  const ip = /^\d{1,3}(\.\d{1,3}){3}$/;
  const cidr = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;
  const bad = (o: NetOp, what: string) => new Error(`bad ${o.op} op (${what}): ${JSON.stringify(o)}`);
  for (const step of plan.steps) {
    if (step.netns !== undefined && !step.netns.startsWith('/')) {
      throw new Error(`netns must be an absolute path: ${step.netns}`);
    }
    const guard = step.onlyIfRoute;
    if (
      guard &&
      (!cidr.test(guard.dst) || guard.devs.length === 0 || !guard.devs.every((d) => PLAN_IFNAME.test(d)))
    ) {
      throw new Error(`bad onlyIfRoute: ${JSON.stringify(guard)}`);
    }
    for (const o of step.ops) {
      const dev = o.op === 'veth' ? o.name : o.op === 'rule' || o.op === 'ruleDel' ? undefined : o.dev;
      if (dev !== undefined && !PLAN_IFNAME.test(dev)) throw bad(o, 'interface name');
      switch (o.op) {
        case 'veth':
          if (!PLAN_IFNAME.test(o.peer) || !mac.test(o.mac) || !mac.test(o.peerMac))
            throw bad(o, 'names/MACs');
          if (!o.peerNetns.startsWith('/') || !(o.mtu >= 68 && o.mtu <= 65535)) throw bad(o, 'netns/mtu');
          break;
        case 'addr':
          if (!cidr.test(o.cidr)) throw bad(o, 'cidr');
          break;
        case 'route':
          if (!cidr.test(o.dst) || (o.via !== undefined && !ip.test(o.via))) throw bad(o, 'dst/via');
          break;
        case 'routeDel':
          if (!cidr.test(o.dst)) throw bad(o, 'dst');
          break;
        case 'rule':
        case 'ruleDel': {
          if ((o.from === undefined) === (o.to === undefined)) throw bad(o, 'exactly one of from/to');
          if (!cidr.test(o.from ?? o.to ?? '')) throw bad(o, 'cidr');
          const tableOk = o.op === 'ruleDel' && o.table === undefined ? true : Number.isInteger(o.table);
          if (!tableOk || (o.table ?? 1) <= 0 || !Number.isInteger(o.priority))
            throw bad(o, 'table/priority');
          break;
        }
        case 'neigh':
          if (!ip.test(o.ip) || !mac.test(o.mac)) throw bad(o, 'ip/mac');
          break;
        case 'up':
        case 'linkDel':
          break;
      }
    }
  }
}
