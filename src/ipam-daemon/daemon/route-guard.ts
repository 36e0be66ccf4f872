// The pods' host routes as the last word on which IPs are in use: at start they recover the IPs of
// running pods (whatever the checkpoint says), an IP entering the pool that a route claims is held
// for that pod, and a recovered entry is released only once its route is gone.

import { hostVethName } from '../../netutils/names.ts';
import type { PodHostRoute } from '../../netutils/pod-routes.ts';
import { keyOf } from '../datastore.ts';
import type { RoutedIps } from '../resync-plan.ts';
import { goneRecoveries, type IpHolder, planRecovery, recoveredKey } from '../route-recovery.ts';
import { type DaemonCore, errText } from './core.ts';

export type CheckpointOutcome = 'ok' | 'missing' | 'corrupt' | 'foreign';

/** What is wired on the node right now: IPs with a pod host route, and veth link names. */
export interface Wiring {
  routedIps: ReadonlySet<string>;
  links: ReadonlySet<string>;
}

/** The pod behind an allocation is still wired: its IP is routed, or its host veth exists. */
export function isWired(
  w: Wiring,
  a: { ip: string; containerId: string; ifName: string; recoveredFrom?: string },
  vethPrefix?: string,
): boolean {
  return (
    w.routedIps.has(a.ip) ||
    w.links.has(hostVethName(a.containerId, a.ifName, vethPrefix)) ||
    (a.recoveredFrom !== undefined && w.links.has(a.recoveredFrom))
  );
}

export class RouteGuard {
  private readonly core: DaemonCore;
  /**
   * The pods' host routes as last read (IP -> host veth; start, resyncs that add IPs, releases of
   * recovered entries); null before the first read. An IP entering the pool that a route claims is
   * held for that pod instead of made free. A stale view errs safe: an IP held for a route that is
   * gone is released at the next route check.
   */
  private view: ReadonlyMap<string, string> | null = null;

  constructor(core: DaemonCore) {
    this.core = core;
  }

  /**
   * Hold every IP that the kernel routes to one of our pod veths. Runs on every start, not only
   * after a lost checkpoint: it costs one `ip -j route` and also covers a checkpoint from another
   * instance or one out of step with the node. Without a trustworthy checkpoint, failing to read
   * the routes stops the start (handing out IPs blind could give a running pod's IP to a new one).
   */
  async recoverAtStart(checkpoint: CheckpointOutcome): Promise<void> {
    const { core } = this;
    const read = core.opts.podRoutes;
    if (!read) return;
    const ds = core.mustDs();
    let routes: PodHostRoute[];
    try {
      routes = await read();
    } catch (err) {
      if (checkpoint !== 'ok') {
        throw new Error(
          `checkpoint ${checkpoint} and the pods' host routes cannot be read (${errText(err)}); refusing to start with every IP free`,
          { cause: err },
        );
      }
      core.log.warn({ err: errText(err) }, 'cannot read pod host routes; trusting the checkpoint alone');
      return;
    }
    this.note(routes);
    const p = planRecovery(routes, (ip) => this.holderOf(ip));
    const now = core.clock.now();
    const recovered: PodHostRoute[] = [];
    for (const r of p.recover) if (ds.recover(recoveredKey(r), r.ip, r.hostVeth, now)) recovered.push(r);
    for (const r of p.heldElsewhere) {
      core.log.warn(
        { ip: r.ip, hostVeth: r.hostVeth, key: r.key, expectedVeth: r.expectedVeth },
        'pod host route is on another veth than the allocation holding the IP expects; keeping the allocation',
      );
    }
    const fields = {
      checkpoint,
      routes: routes.length,
      recovered: recovered.map((r) => `${r.ip} dev ${r.hostVeth}`),
      alreadyHeld: p.held.length,
      notOnNode: p.notOnNode.length,
    };
    if (recovered.length > 0) {
      core.log.warn(
        fields,
        'recovered IPs of running pods from their host routes; each is held until its route disappears',
      );
    } else core.log.info(fields, 'pod host routes checked; nothing to recover');
  }

  private note(routes: readonly PodHostRoute[]): void {
    this.view = new Map(routes.map((r) => [r.ip, r.hostVeth]));
  }

  /**
   * Re-read the pods' host routes before IPs become free: the view for planResync (undefined
   * without a route reader, null when unreadable).
   */
  async fresh(): Promise<RoutedIps> {
    const read = this.core.opts.podRoutes;
    if (!read) return undefined;
    try {
      const routes = await read();
      this.note(routes);
      return this.view;
    } catch (err) {
      this.core.log.warn(
        { err: errText(err) },
        'drift resync: cannot read pod host routes; IPs that appeared in the cloud wait for the next resync',
      );
      return null;
    }
  }

  /**
   * The node's wiring, read now (for GC and the pod watcher), or null when it cannot be read.
   * Without readers (tests on the in-memory cloud), nothing counts as wired.
   */
  async wiring(): Promise<Wiring | null> {
    const { podRoutes, hostVeths } = this.core.opts;
    try {
      const [routes, links] = await Promise.all([podRoutes?.() ?? [], hostVeths?.() ?? []]);
      if (podRoutes) this.note(routes);
      return { routedIps: new Set(routes.map((r) => r.ip)), links: new Set(links) };
    } catch (err) {
      this.core.log.warn(
        { err: errText(err) },
        "cannot read the pods' host routes or veths; no allocation is released by GC until they can be",
      );
      return null;
    }
  }

  /**
   * Before IPs go back to the cloud (an unassign, an interface delete): which of them a pod's host
   * route claims right now (re-read), or null when the routes cannot be read. Without a route
   * reader, none. The caller gives back none of the claimed ones and holds them for their pod.
   */
  async claimedAmong(ips: readonly string[]): Promise<string[] | null> {
    const read = this.core.opts.podRoutes;
    if (!read) return [];
    try {
      this.note(await read());
    } catch (err) {
      this.core.log.warn(
        { err: errText(err) },
        'cannot read pod host routes; IPs are not given back until they can be (a pod may still use one)',
      );
      return null;
    }
    const view = this.view;
    return ips.filter((ip) => view?.has(ip));
  }

  /**
   * IPs that just entered the pool as free (a grow, a new interface) but that a pod's host route
   * claims (the cloud handed back an address a running pod still uses): hold them for that pod.
   */
  holdRouted(ips: readonly string[]): void {
    const view = this.view;
    if (!view) return;
    const ds = this.core.mustDs();
    const now = this.core.clock.now();
    for (const ip of ips) {
      const hostVeth = view.get(ip);
      if (hostVeth === undefined || ds.ipState(ip)?.state !== 'free') continue;
      if (ds.recover(recoveredKey({ ip, hostVeth }), ip, hostVeth, now)) {
        this.core.log.warn(
          { ip, hostVeth },
          "the cloud returned an IP a running pod's host route still claims: held for that pod, not handed out",
        );
      }
    }
  }

  holderOf(ip: string): IpHolder {
    const ds = this.core.mustDs();
    const st = ds.ipState(ip);
    if (!st) return { state: 'not-on-node' };
    if (st.state !== 'assigned') return { state: st.state };
    const key = st.key ?? '';
    const a = ds.list().find((x) => keyOf(x) === key);
    return {
      state: 'assigned',
      key,
      hostVeth:
        a?.recoveredFrom ?? (a ? hostVethName(a.containerId, a.ifName, this.core.opts.vethPrefix) : ''),
    };
  }

  /** Release recovered entries whose host route is gone (the pod's DEL removed its veth). */
  async releaseGoneRecoveries(): Promise<void> {
    const { core } = this;
    const read = core.opts.podRoutes;
    const ds = core.mustDs();
    const held = ds.recovered();
    if (!read || held.length === 0) return;
    let routes: PodHostRoute[];
    try {
      routes = await read();
    } catch (err) {
      core.log.warn({ err: errText(err) }, 'cannot read pod host routes; recovered IPs stay held');
      return;
    }
    this.note(routes);
    const gone = goneRecoveries(held, routes);
    if (gone.length === 0) return;
    const now = core.clock.now();
    // A DEL may have released one meanwhile (matched by its veth): count only what this released.
    const released = gone.flatMap((a) => (ds.release(a, now) ? [a] : []));
    if (released.length === 0) return;
    await core.parts.checkpoint.persist();
    for (const a of released) {
      core.log.info(
        { ip: a.ip, hostVeth: a.recoveredFrom, key: keyOf(a) },
        'recovered IP released: its host route is gone',
      );
      core.emit('released', ds.toRecord(a));
    }
  }
}
