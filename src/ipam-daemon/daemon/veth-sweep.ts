// Host veths a DEL left behind. As the AWS VPC CNI does, a veth DEL through the shim (plan version
// 3, with a cooldown) removes the pod's rules and host route and leaves the veth pair to the
// runtime's netns deletion, where the kernel destroys it off everyone's path; deleting it in the DEL
// cost ~19 ms of RTNL and RCU waits. The IP's old veth could still carry it (issue #10), so the IP
// stays cooling until this sweep saw that veth gone: a short while after the DEL, one batch (one
// `ip` reading the veths, one deleting what is left) under the attachments' command locks, so a
// re-ADD of the same container id (which makes a veth of the same name) never interleaves, and
// only a link with the same name AND ifindex is deleted. A daemon restart forgets the records: at
// start, before it serves, it deletes every veth of our prefix that no allocation and no host
// route names (deleteOrphans), and holds the cooling IPs until that succeeded.

import type { LeftVeth } from '../../cni/plugin.ts';
import type { VethLinks } from '../../netutils/host-veths.ts';
import { HOST_VETH_PREFIX, hostVethName, hostVethPattern } from '../../netutils/names.ts';
import { keyOf } from '../datastore.ts';
import { KeyedMutex } from '../key-lock.ts';
import { type DaemonCore, errText } from './core.ts';

/** How long after a DEL its veth is looked at: the runtime's netns deletion usually wins by then. */
export const VETH_SWEEP_DELAY_MS = 2_000;
/** After a sweep or start-up cleanup that failed. */
export const VETH_SWEEP_RETRY_MS = 5_000;

export class VethSweep {
  /** The attachments' command locks (ShimSessions serializes each ADD/DEL under them). */
  readonly locks = new KeyedMutex();
  private readonly core: DaemonCore;
  /** By `${hostName}#${ifindex}`. */
  private readonly pending = new Map<string, LeftVeth & { due: number }>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Cooling IPs held at start until deleteOrphans succeeded (null: nothing held). */
  private unverified: string[] | null = null;
  private stopped = false;

  constructor(core: DaemonCore) {
    this.core = core;
  }

  /**
   * A DEL may leave its veth: only with a cooldown (an IP without one is free at once, so its DEL
   * deletes the veth itself) and a way to read and delete links.
   */
  get enabled(): boolean {
    return this.core.opts.pool.cooldownMs > 0 && this.core.opts.vethLinks !== undefined;
  }

  /** Veths left and not yet seen gone. */
  get size(): number {
    return this.pending.size;
  }

  /** Called by a DEL before it releases: the IP cools until this veth is gone. */
  readonly leave = (v: LeftVeth): void => {
    const id = `${v.hostName}#${v.ifindex}`;
    if (this.pending.has(id) || this.stopped) return;
    this.core.mustDs().holdCooling(v.ip);
    this.pending.set(id, { ...v, due: this.core.clock.now() + this.delayMs() });
    this.schedule();
  };

  /** Well under the cooldown, so the sweep rarely holds an IP past it. */
  private delayMs(): number {
    return Math.min(VETH_SWEEP_DELAY_MS, Math.max(10, this.core.opts.pool.cooldownMs / 4));
  }

  private schedule(): void {
    if (this.timer || this.running || this.stopped || this.pending.size === 0) return;
    const next = Math.min(...[...this.pending.values()].map((p) => p.due));
    const wait = Math.max(0, next - this.core.clock.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.sweep();
    }, wait);
    this.timer.unref();
  }

  /** Deletes the due veths still present (same name and ifindex); frees their IPs' cooldown. */
  async sweep(): Promise<void> {
    const links = this.core.opts.vethLinks;
    if (this.running || !links) return;
    this.running = true;
    try {
      const now = this.core.clock.now();
      const due = [...this.pending.entries()].filter(([, p]) => p.due <= now);
      if (due.length > 0)
        await underLocks(this.locks, [...new Set(due.map(([, p]) => keyOf(p)))].sort(), () =>
          this.sweepDue(links, due),
        );
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private async sweepDue(links: VethLinks, due: Array<[string, LeftVeth & { due: number }]>): Promise<void> {
    const { log } = this.core;
    let present: Map<string, number>;
    try {
      present = new Map((await links.list()).map((l) => [l.name, l.index]));
    } catch (err) {
      log.warn(
        { err: errText(err), veths: due.length },
        'veth sweep: cannot list links; their IPs stay cooling',
      );
      this.retry(due);
      return;
    }
    const doomed = due.filter(([, p]) => present.get(p.hostName) === p.ifindex);
    const problems =
      doomed.length > 0 ? await links.del(doomed.map(([, p]) => p.hostName)).catch((e) => [errText(e)]) : [];
    if (problems.length > 0) {
      log.warn(
        { problems, veths: doomed.map(([, p]) => p.hostName) },
        'veth sweep: some veths could not be deleted; their IPs stay cooling',
      );
      this.retry(doomed);
    }
    const gone = problems.length > 0 ? due.filter((d) => !doomed.includes(d)) : due;
    for (const [id, p] of gone) {
      this.pending.delete(id);
      this.core.mustDs().unholdCooling(p.ip);
    }
    if (doomed.length > 0) log.debug({ deleted: doomed.length, gone: gone.length }, 'veth sweep');
    // An IP whose cooldown ended meanwhile is free now: the pool loop's tick makes it so.
    if (gone.length > 0) this.core.parts.pool.kick();
  }

  private retry(entries: Array<[string, LeftVeth & { due: number }]>): void {
    const at = this.core.clock.now() + VETH_SWEEP_RETRY_MS;
    for (const [, p] of entries) p.due = at;
  }

  /**
   * At start, before serving: the veths of our prefix that no allocation and no pod host route
   * names are left by DELs whose sweep this daemon never ran (or by failed ADDs): delete them. If
   * that fails, every cooling IP is held until a retry succeeds.
   */
  async deleteOrphans(): Promise<void> {
    const links = this.core.opts.vethLinks;
    if (!links) return;
    const { core } = this;
    const ds = core.mustDs();
    const prefix = core.opts.vethPrefix ?? HOST_VETH_PREFIX;
    const ours = hostVethPattern([prefix]);
    try {
      const owned = new Set(
        ds.list().map((a) => a.recoveredFrom ?? hostVethName(a.containerId, a.ifName, prefix)),
      );
      const [present, routes] = await Promise.all([links.list(), core.opts.podRoutes?.() ?? []]);
      for (const r of routes) owned.add(r.hostVeth);
      const orphans = present.map((l) => l.name).filter((n) => ours.test(n) && !owned.has(n));
      const problems = orphans.length > 0 ? await links.del(orphans) : [];
      if (problems.length > 0) throw new Error(problems.join('; '));
      if (orphans.length > 0)
        core.log.info({ veths: orphans }, 'deleted host veths no pod holds (left by DELs before a restart)');
      if (this.unverified) {
        for (const ip of this.unverified) ds.unholdCooling(ip);
        this.unverified = null;
        core.parts.pool.kick();
      }
    } catch (err) {
      if (!this.unverified) {
        this.unverified = ds.coolingEntries().map((c) => c.ip);
        for (const ip of this.unverified) ds.holdCooling(ip);
      }
      core.log.warn(
        { err: errText(err), held: this.unverified.length },
        'cannot delete host veths no pod holds; cooling IPs stay cooling until they are gone',
      );
      if (this.stopped) return;
      setTimeout(() => void this.deleteOrphans(), VETH_SWEEP_RETRY_MS).unref();
    }
  }

  /** The daemon stops: no more sweeps (a restart deletes what is left, deleteOrphans). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Runs fn holding every key's lock, taken in the given (sorted) order. */
function underLocks<T>(locks: KeyedMutex, keys: string[], fn: () => Promise<T>): Promise<T> {
  const [k, ...rest] = keys;
  return k === undefined ? fn() : locks.run(k, () => underLocks(locks, rest, fn));
}
