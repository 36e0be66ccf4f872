// The pod subnets the pool grows into, in preference order, with what the cloud last said about
// their free addresses and how long a full one is skipped.

import type { CloudProvider, InterfaceInfo } from '../../providers/types.ts';
import type { EngineSubnet } from '../pool-engine.ts';
import { type DaemonCore, errText } from './core.ts';

/** Free counts ranked this recently are not re-read for the next grow. */
export const RANK_FRESH_MS = 10_000;

export class PodSubnets {
  /** Read by the pool engine; backoff and free counts are updated in place. */
  list: EngineSubnet[] = [];
  private readonly core: DaemonCore;
  /** When rankByFreeIps last read the counts (ms), or null. */
  private rankedAt: number | null = null;

  constructor(core: DaemonCore) {
    this.core = core;
  }

  /** Whether `subnetId` is one of the current pod subnets. */
  has(subnetId: string): boolean {
    return this.list.some((s) => s.id === subnetId);
  }

  async load(ids: string[], interfaces: InterfaceInfo[]): Promise<void> {
    let infos: Awaited<ReturnType<CloudProvider['describeSubnets']>> = [];
    try {
      infos = await this.core.provider.describeSubnets(ids);
    } catch (err) {
      this.core.log.warn(
        { err: errText(err), subnets: ids },
        'describeSubnets failed; subnet free counts unknown',
      );
    }
    this.list = ids.map((id) => {
      const info = infos.find((s) => s.id === id);
      const cidr = info?.cidr ?? interfaces.find((i) => i.subnetId === id)?.subnetCidr;
      const s: EngineSubnet = { id, availableIps: info ? info.availableIps : null, backoffUntil: null };
      if (cidr) s.cidr = cidr;
      return s;
    });
  }

  /**
   * Re-reads every pod subnet's free addresses and orders them most free first (subnets in backoff
   * keep theirs at 0). True when it read them; a failed call keeps the old order.
   */
  async rankByFreeIps(): Promise<boolean> {
    // The grows of one burst come seconds apart: counts read within RANK_FRESH_MS (and kept
    // current with our own takes, adjust()) still rank the same, so one read serves them all.
    const now = this.core.clock.now();
    if (this.rankedAt !== null && now - this.rankedAt < RANK_FRESH_MS) return false;
    try {
      const infos = await this.core.provider.describeSubnets(this.list.map((s) => s.id));
      for (const s of this.list) {
        if (s.backoffUntil === null)
          s.availableIps = infos.find((i) => i.id === s.id)?.availableIps ?? s.availableIps;
      }
    } catch (err) {
      this.core.log.warn({ err: errText(err) }, 'describeSubnets failed; pod subnets keep their order');
      return false;
    }
    this.rankedAt = now;
    // Stable: ties keep the discovery order (the node's subnet first).
    this.list = [...this.list].sort((a, b) => (b.availableIps ?? -1) - (a.availableIps ?? -1));
    return true;
  }

  /** Some subnet's backoff has ended (its free count must be re-read). */
  backoffOver(now: number): boolean {
    return this.list.some((s) => s.backoffUntil !== null && s.backoffUntil <= now);
  }

  /**
   * A subnet whose backoff ended: ask the cloud how many addresses it has now (others may have
   * released some). Its count was set to 0 when it reported itself full, and the engine caps grow
   * batches at the count, so without this it would never be used again.
   */
  async refresh(): Promise<void> {
    const { core } = this;
    const due = this.list.filter((s) => s.backoffUntil !== null && s.backoffUntil <= core.clock.now());
    for (const s of due) s.backoffUntil = null;
    try {
      const infos = await core.provider.describeSubnets(due.map((s) => s.id));
      for (const s of due) s.availableIps = infos.find((i) => i.id === s.id)?.availableIps ?? null;
      core.log.info(
        { subnets: due.map((s) => ({ id: s.id, availableIps: s.availableIps })) },
        'subnet backoff over; free addresses re-read',
      );
    } catch (err) {
      // Unknown: the next grow finds out (and backs off again if it is still full).
      for (const s of due) s.availableIps = null;
      core.log.warn(
        { err: errText(err) },
        'describeSubnets failed after a subnet backoff; free counts unknown',
      );
    }
  }

  adjust(subnetId: string | undefined, used: number): void {
    const s = this.list.find((x) => x.id === subnetId);
    if (s && s.availableIps !== null) s.availableIps = Math.max(0, s.availableIps - used);
  }

  /** The cloud said the subnet is full: skip it for a while. */
  markFull(subnetId: string | undefined, now: number): void {
    const s = this.list.find((x) => x.id === subnetId);
    if (!s) return;
    const backoffMs = this.core.opts.pool.subnetBackoffMs;
    s.backoffUntil = now + backoffMs;
    s.availableIps = 0;
    this.core.log.warn(
      { subnetId: s.id, cidr: s.cidr, backoffMs },
      'subnet is full; skipping it for a while',
    );
  }

  backoffEnds(): (number | null)[] {
    return this.list.map((s) => s.backoffUntil);
  }
}
