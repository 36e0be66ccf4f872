// Drift between the cloud and the pool: a pure function from what the daemon holds, what the cloud
// lists now (instance metadata or the API) and the daemon's own recent cloud changes to the
// repairs. No I/O, no clock of its own: every case is a table-driven test.
//
// The rules (docs/daemon.md, "Drift resync"):
// - an IP gone from the cloud that is free or cooling is dropped from the pool;
// - an IP gone but assigned to a pod stays allocated (the pod runs) but is marked lost: never
//   handed out again, and dropped when the pod releases it, unless the cloud has it back by then;
// - an interface gone: its free/cooling IPs are dropped, its assigned ones lost, and it is
//   forgotten once no pod holds an IP on it;
// - an IP present in the cloud but unknown is added as free, only on interfaces whose IPs the pool
//   uses, never an interface's primary IP; an unknown interface needs the API (subnet, tags) first;
// - but an unknown IP that a running pod's host route still claims (`<ip>/32 dev <our veth>`) is
//   never free: it is held for that pod instead (a recovered entry, released when the route goes);
//   when the routes could not be read, the add waits for the next resync;
// - the daemon's own changes win for `graceMs`: metadata lags the API by seconds, so an IP the
//   daemon assigned (or an interface it created) recently is not dropped for being absent, and one
//   it unassigned (or an interface it deleted) recently is not re-added for being present.

import type { IpStateKind } from './datastore.ts';

export interface KnownIp {
  ip: string;
  state: IpStateKind;
  /** For assigned IPs: the attachment key holding it. */
  key?: string;
  /** Already known to be gone from the cloud while assigned. */
  lost?: boolean;
}

export interface KnownInterface {
  id: string;
  mac: string;
  deviceIndex: number;
  primaryIp: string;
  /** The pool uses its secondary IPs (pod subnet; ours or the node's primary interface). */
  managed: boolean;
  /** The daemon is deleting it right now. */
  draining: boolean;
  /** Already known to be gone from the cloud (kept while pods hold IPs on it). */
  gone: boolean;
  ips: KnownIp[];
}

export interface ObservedInterface {
  /** '' when the source cannot name it (matched by MAC then). */
  id: string;
  mac: string;
  deviceIndex: number;
  /** Every private IPv4 the cloud lists on it, primary included. */
  ips: string[];
}

/** When the daemon itself last changed the cloud (epoch ms), per IP and per interface id. */
export interface RecentChanges {
  assignedIps: ReadonlyMap<string, number>;
  unassignedIps: ReadonlyMap<string, number>;
  createdInterfaces: ReadonlyMap<string, number>;
  deletedInterfaces: ReadonlyMap<string, number>;
}

export type ResyncAction =
  /** A free or cooling IP the cloud no longer has: drop it. */
  | { kind: 'drop-ip'; interfaceId: string; ip: string; was: 'free' | 'cooling' }
  /** An assigned IP the cloud no longer has: keep the allocation, never hand the IP out again. */
  | { kind: 'lose-ip'; interfaceId: string; ip: string; key: string }
  /** A lost IP is on its interface again. */
  | { kind: 'regain-ip'; interfaceId: string; ip: string; key: string }
  /** An IP on a managed interface that the pool does not know: add it as free. */
  | { kind: 'add-ip'; interfaceId: string; ip: string }
  /** An unknown IP on a managed interface that a pod's host route claims: add it, held for that pod. */
  | { kind: 'hold-ip'; interfaceId: string; ip: string; hostVeth: string }
  /** The interface is gone (its IPs have their own actions); `forget` when no pod holds an IP on it. */
  | { kind: 'interface-gone'; interfaceId: string; forget: boolean }
  /** A gone interface on which no pod holds an IP any more. */
  | { kind: 'forget-interface'; interfaceId: string }
  /** A gone interface is listed again. */
  | { kind: 'interface-back'; interfaceId: string }
  /** An interface the daemon does not know: needs the API (subnet, tags) to judge it. */
  | { kind: 'unknown-interface'; id: string; mac: string; deviceIndex: number };

export interface Deferred {
  what: string;
  why: string;
}

export interface ResyncPlan {
  actions: ResyncAction[];
  /** Differences left alone for now (the daemon's own recent change), for the logs. */
  deferred: Deferred[];
  /** Set when the observation cannot be trusted (no actions then): why. */
  distrust: string | null;
}

/**
 * The pods' host routes, IP -> host veth: `undefined` when the daemon has no route view at all
 * (unknown IPs are added as free, as before), `null` when it has one but could not read it now
 * (unknown IPs wait: adding them blind could hand a running pod's IP to a new one).
 */
export type RoutedIps = ReadonlyMap<string, string> | null | undefined;

/** Does the plan make IPs free (the daemon re-reads the pods' host routes before applying it)? */
export function plansAdds(p: ResyncPlan): boolean {
  return p.actions.some((a) => a.kind === 'add-ip' || a.kind === 'hold-ip');
}

export function planResync(
  known: KnownInterface[],
  observed: ObservedInterface[],
  recent: RecentChanges,
  now: number,
  graceMs: number,
  routed?: RoutedIps,
): ResyncPlan {
  const actions: ResyncAction[] = [];
  const deferred: Deferred[] = [];
  const isRecent = (m: ReadonlyMap<string, number>, k: string) => {
    const at = m.get(k);
    return at !== undefined && now - at < graceMs;
  };

  // A listing without the primary interface is a broken read, not a node that lost its primary
  // ENI (which cannot be detached): repairing from it would empty the pool.
  const knownPrimary = known.find((k) => k.deviceIndex === 0);
  const matches = (k: KnownInterface, o: ObservedInterface) =>
    o.id !== '' ? o.id.toLowerCase() === k.id.toLowerCase() : o.mac.toLowerCase() === k.mac.toLowerCase();
  if (observed.length === 0) return { actions, deferred, distrust: 'the cloud listed no interface at all' };
  if (knownPrimary && !observed.some((o) => matches(knownPrimary, o))) {
    return {
      actions,
      deferred,
      distrust: `the listing lacks the primary interface ${knownPrimary.id}`,
    };
  }

  const matched = new Set<ObservedInterface>();
  // IPs the pool holds after this plan's drops, and where: an IP that moved between interfaces is
  // dropped from the old one before it is added to the new one.
  const held = new Map<string, string>();
  for (const k of known) for (const s of k.ips) held.set(s.ip, k.id);
  const adds: Array<{ k: KnownInterface; o: ObservedInterface }> = [];

  for (const k of known) {
    const o = observed.find((x) => !matched.has(x) && matches(k, x));
    if (o) matched.add(o);
    if (k.draining) continue; // the daemon's own delete is under way
    if (!o) {
      if (k.gone) {
        if (!k.ips.some((s) => s.state === 'assigned'))
          actions.push({ kind: 'forget-interface', interfaceId: k.id });
        continue;
      }
      if (isRecent(recent.createdInterfaces, k.id)) {
        deferred.push({
          what: `interface ${k.id}`,
          why: 'not listed yet, but the daemon created it recently',
        });
        continue;
      }
      let assigned = 0;
      for (const s of k.ips) {
        if (s.state === 'releasing') continue;
        if (s.state === 'assigned') {
          assigned++;
          if (!s.lost) actions.push({ kind: 'lose-ip', interfaceId: k.id, ip: s.ip, key: s.key ?? '' });
        } else {
          actions.push({ kind: 'drop-ip', interfaceId: k.id, ip: s.ip, was: s.state });
          held.delete(s.ip);
        }
      }
      actions.push({ kind: 'interface-gone', interfaceId: k.id, forget: assigned === 0 });
      continue;
    }
    if (k.gone) actions.push({ kind: 'interface-back', interfaceId: k.id });
    const inCloud = new Set(o.ips);
    for (const s of k.ips) {
      if (s.state === 'releasing') continue; // the daemon's own unassign is under way
      if (inCloud.has(s.ip)) {
        if (s.state === 'assigned' && s.lost)
          actions.push({ kind: 'regain-ip', interfaceId: k.id, ip: s.ip, key: s.key ?? '' });
        continue;
      }
      if (s.state === 'assigned' && s.lost) continue; // already reported
      if (isRecent(recent.assignedIps, s.ip)) {
        deferred.push({
          what: `${s.ip} on ${k.id}`,
          why: 'not listed yet, but the daemon assigned it recently',
        });
        continue;
      }
      if (s.state === 'assigned') {
        actions.push({ kind: 'lose-ip', interfaceId: k.id, ip: s.ip, key: s.key ?? '' });
      } else {
        actions.push({ kind: 'drop-ip', interfaceId: k.id, ip: s.ip, was: s.state });
        held.delete(s.ip);
      }
    }
    if (k.managed) adds.push({ k, o });
  }

  for (const { k, o } of adds) {
    for (const ip of new Set(o.ips)) {
      if (ip === k.primaryIp || ip === o.ips[0] || held.has(ip)) continue;
      if (isRecent(recent.unassignedIps, ip)) {
        deferred.push({
          what: `${ip} on ${k.id}`,
          why: 'still listed, but the daemon unassigned it recently',
        });
        continue;
      }
      if (routed === null) {
        deferred.push({
          what: `${ip} on ${k.id}`,
          why: "unknown, but the pods' host routes cannot be read to tell whether a pod still uses it",
        });
        continue;
      }
      const hostVeth = routed?.get(ip);
      if (hostVeth !== undefined) actions.push({ kind: 'hold-ip', interfaceId: k.id, ip, hostVeth });
      else actions.push({ kind: 'add-ip', interfaceId: k.id, ip });
      held.set(ip, k.id);
    }
  }

  for (const o of observed) {
    if (matched.has(o)) continue;
    if (o.id !== '' && isRecent(recent.deletedInterfaces, o.id)) {
      deferred.push({ what: `interface ${o.id}`, why: 'still listed, but the daemon deleted it recently' });
      continue;
    }
    actions.push({ kind: 'unknown-interface', id: o.id, mac: o.mac, deviceIndex: o.deviceIndex });
  }
  return { actions, deferred, distrust: null };
}
