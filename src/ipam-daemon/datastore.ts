// The in-memory pool: which interface holds which IP, and which IP is assigned to which
// attachment (container id, interface name), cooling, free, or on its way back to the cloud.
// Synchronous and clock-injected; the daemon persists it (checkpoint.ts) after every change.
// Invariant, checked on every assignment: one IP is held by at most one key.

import type { InterfaceInfo } from '../providers/types.ts';
import type { AllocationRecord, AttachmentKey } from './api-types.ts';
import type { EngineInterface } from './pool-engine.ts';

/** The provider's view of an interface plus what the pool decides about it. */
export interface InterfaceRecord
  extends Pick<InterfaceInfo, 'id' | 'mac' | 'deviceIndex' | 'subnetId' | 'subnetCidr' | 'primaryIp'> {
  /** Pod IPs may be handed out from it (pod subnet, node setup done). */
  usable: boolean;
  /** Ours and not the primary. */
  deletable: boolean;
  /** Being deleted: hand nothing out. */
  draining: boolean;
  /** Gone from the cloud (drift), kept only while pods hold IPs on it: hand nothing out. */
  gone?: boolean;
  /**
   * Ours but outside the current pod subnets (POD_SUBNET_IDS or the PodNetworkConfig changed): its
   * pods keep their IPs, nothing new is handed out, its free IPs do not count towards the pool, and
   * it is deleted once no pod holds an IP on it.
   */
  retired?: boolean;
}

export type IpStateKind = 'free' | 'assigned' | 'cooling' | 'releasing';

export interface IpState {
  ip: string;
  interfaceId: string;
  state: IpStateKind;
  /** For assigned IPs. */
  key?: string;
  /** For cooling IPs: epoch ms when it becomes free. */
  coolUntil?: number;
  /**
   * Assigned, but gone from the cloud (drift): the pod keeps its record, and the IP is dropped
   * instead of cooling when the pod releases it, unless the cloud has it back by then.
   */
  lost?: boolean;
  /** A lost IP the cloud has put on another of our interfaces: where it goes at the release. */
  cloudInterfaceId?: string;
}

export type AllocationMeta = Omit<
  AllocationRecord,
  | 'ip'
  | 'interfaceId'
  | 'interfaceMac'
  | 'deviceIndex'
  | 'subnetCidr'
  | 'gateway'
  | 'routeTable'
  | 'vpcCidrs'
  | 'assignedAt'
>;

/** What the checkpoint stores per allocation. */
export interface StoredAllocation {
  containerId: string;
  ifName: string;
  ip: string;
  interfaceId: string;
  netns?: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  network?: string;
  assignedAt: string;
  /** Held for a pod found only by its host route (route-recovery.ts): the host veth carrying it. */
  recoveredFrom?: string;
}

export function keyOf(k: AttachmentKey): string {
  return `${k.containerId}/${k.ifName}`;
}

export class InvariantError extends Error {
  override name = 'InvariantError';
}

export class Datastore {
  readonly interfaces = new Map<string, InterfaceRecord>();
  /** IP -> state; Map keeps insertion order, which makes free IPs come out least-recently-freed first. */
  private readonly ips = new Map<string, IpState>();
  private readonly byKey = new Map<string, StoredAllocation>();
  /** What the checkpoint has not seen yet (takeChanges): keys whose allocation and IPs whose cooling changed. */
  private readonly changedKeys = new Map<string, AttachmentKey>();
  private readonly changedIps = new Set<string>();
  /**
   * IPs whose cooling may not end yet, with how many holds each: the old pod's host veth may still
   * exist (a DEL left it to the runtime's netns deletion; daemon/veth-sweep.ts). In memory only: a
   * restarted daemon deletes such veths before it serves (VethSweep.deleteOrphans).
   */
  private readonly held = new Map<string, number>();
  private readonly cooldownMs: number;
  private readonly vpcCidrs: string[];
  private readonly noSnatCidrs: string[];

  constructor(options: { cooldownMs: number; vpcCidrs: string[]; noSnatCidrs?: string[] }) {
    this.cooldownMs = options.cooldownMs;
    this.vpcCidrs = options.vpcCidrs;
    this.noSnatCidrs = options.noSnatCidrs ?? options.vpcCidrs;
  }

  // ---- interfaces and IPs ----

  upsertInterface(rec: InterfaceRecord): void {
    this.interfaces.set(rec.id, { ...rec });
  }

  /**
   * Add IPs the cloud assigned to an interface; they arrive free. An address the pool still has on
   * another interface was moved by the cloud behind our back (drift; the cloud's answer is the
   * fresher truth): a free or cooling one moves along, one held by a pod is marked lost there and
   * not handed out twice (the drift resync adds it once that pod is gone), one being released is
   * left to that release. Returns what was moved and what was left out.
   */
  addIps(interfaceId: string, ips: string[]): { moved: string[]; skipped: string[] } {
    if (!this.interfaces.has(interfaceId)) throw new InvariantError(`unknown interface ${interfaceId}`);
    const moved: string[] = [];
    const skipped: string[] = [];
    for (const ip of ips) {
      const cur = this.ips.get(ip);
      if (cur && cur.interfaceId !== interfaceId) {
        if (cur.state === 'free' || cur.state === 'cooling') {
          cur.interfaceId = interfaceId;
          moved.push(ip);
        } else {
          if (cur.state === 'assigned') {
            cur.lost = true;
            cur.cloudInterfaceId = interfaceId;
          }
          skipped.push(ip);
        }
        continue;
      }
      if (cur) continue;
      this.ips.set(ip, { ip, interfaceId, state: 'free' });
    }
    return { moved, skipped };
  }

  /** Forget an interface and every IP on it (it must hold no assignment). */
  removeInterface(interfaceId: string): void {
    for (const s of this.ipsOf(interfaceId)) {
      if (s.state === 'assigned')
        throw new InvariantError(`cannot remove ${interfaceId}: ${s.ip} is assigned`);
    }
    for (const s of this.ipsOf(interfaceId)) this.dropIp(s);
    this.interfaces.delete(interfaceId);
  }

  ipsOf(interfaceId: string): IpState[] {
    return [...this.ips.values()].filter((s) => s.interfaceId === interfaceId);
  }

  ipState(ip: string): IpState | undefined {
    const s = this.ips.get(ip);
    return s ? { ...s } : undefined;
  }

  /** Take free IPs out of circulation before giving them back to the cloud. */
  reserveForRelease(interfaceId: string, ips: string[]): string[] {
    const taken: string[] = [];
    for (const ip of ips) {
      const s = this.ips.get(ip);
      if (s && s.interfaceId === interfaceId && s.state === 'free') {
        s.state = 'releasing';
        taken.push(ip);
      }
    }
    return taken;
  }

  /** The cloud took them back. */
  dropIps(ips: string[]): void {
    for (const ip of ips) {
      const s = this.ips.get(ip);
      if (s?.state === 'assigned') throw new InvariantError(`cannot drop assigned ${ip}`);
      if (s) this.dropIp(s);
    }
  }

  /** An assigned IP the cloud no longer has (drift). Returns whether it was assigned. */
  markLost(ip: string): boolean {
    const s = this.ips.get(ip);
    if (s?.state !== 'assigned') return false;
    s.lost = true;
    return true;
  }

  /** The cloud has a lost IP back. */
  clearLost(ip: string): void {
    const s = this.ips.get(ip);
    if (s) {
      delete s.lost;
      delete s.cloudInterfaceId;
    }
  }

  /** Giving them back failed: they are free again. */
  unreserve(ips: string[]): void {
    for (const ip of ips) {
      const s = this.ips.get(ip);
      if (s?.state === 'releasing') s.state = 'free';
    }
  }

  /** Keep `ip` from leaving cooldown (now or once released) until unholdCooling. */
  holdCooling(ip: string): void {
    this.held.set(ip, (this.held.get(ip) ?? 0) + 1);
  }

  unholdCooling(ip: string): void {
    const n = (this.held.get(ip) ?? 0) - 1;
    if (n > 0) this.held.set(ip, n);
    else this.held.delete(ip);
  }

  /** Cooling IPs whose time is up become free (held ones stay). Returns how many changed. */
  tick(now: number): number {
    let n = 0;
    for (const s of this.ips.values()) {
      if (s.state === 'cooling' && (s.coolUntil ?? 0) <= now && !this.held.has(s.ip)) {
        this.changedIps.add(s.ip);
        s.state = 'free';
        delete s.coolUntil;
        // Move to the end so recently used IPs are handed out last.
        this.ips.delete(s.ip);
        this.ips.set(s.ip, s);
        n++;
      }
    }
    return n;
  }

  /** Earliest time a cooling IP frees up (held ones: when unheld), or null. */
  nextCoolingEnd(): number | null {
    let t: number | null = null;
    for (const s of this.ips.values()) {
      if (this.held.has(s.ip)) continue;
      if (s.state === 'cooling' && s.coolUntil !== undefined && (t === null || s.coolUntil < t))
        t = s.coolUntil;
    }
    return t;
  }

  // ---- allocations ----

  get(key: AttachmentKey): StoredAllocation | undefined {
    const a = this.byKey.get(keyOf(key));
    return a ? { ...a } : undefined;
  }

  list(): StoredAllocation[] {
    return [...this.byKey.values()].map((a) => ({ ...a }));
  }

  get size(): number {
    return this.byKey.size;
  }

  freeCount(): number {
    let n = 0;
    for (const s of this.ips.values()) if (s.state === 'free' && this.allocatable(s.interfaceId)) n++;
    return n;
  }

  private allocatable(interfaceId: string): boolean {
    const i = this.interfaces.get(interfaceId);
    return i?.usable === true && !i.draining && !i.gone && !i.retired;
  }

  /**
   * Assign a free IP to the key (lowest device index first, so higher interfaces drain and can be
   * deleted). Returns undefined when no IP is free. Throws if the key already holds one.
   */
  assign(meta: AllocationMeta & { netns?: string }, now: number): StoredAllocation | undefined {
    const k = keyOf(meta);
    if (this.byKey.has(k)) throw new InvariantError(`${k} already holds ${this.byKey.get(k)?.ip}`);
    // Runs on every allocation: no IP can beat the lowest device index of an allocatable
    // interface, so the scan stops at the first free IP there (the same IP a full scan picks), and
    // an interface is looked up once per run of its IPs, not once per IP.
    let floor = Number.POSITIVE_INFINITY;
    for (const [id, i] of this.interfaces) {
      if (i.deviceIndex < floor && this.allocatable(id)) floor = i.deviceIndex;
    }
    let best: IpState | undefined;
    let bestIdx = Number.POSITIVE_INFINITY;
    let seenIf: string | undefined;
    let seenIdx = Number.POSITIVE_INFINITY;
    for (const s of this.ips.values()) {
      if (s.state !== 'free') continue;
      if (s.interfaceId !== seenIf) {
        seenIf = s.interfaceId;
        seenIdx = this.allocatable(seenIf)
          ? (this.interfaces.get(seenIf)?.deviceIndex ?? Number.POSITIVE_INFINITY)
          : Number.POSITIVE_INFINITY;
      }
      if (seenIdx < bestIdx) {
        best = s;
        bestIdx = seenIdx;
        if (bestIdx <= floor) break;
      }
    }
    if (!best) return undefined;
    return this.bind(k, meta, best, new Date(now).toISOString());
  }

  private bind(
    k: string,
    meta: AllocationMeta & { netns?: string; recoveredFrom?: string },
    s: IpState,
    assignedAt: string,
  ): StoredAllocation {
    for (const other of this.byKey.values()) {
      if (other.ip === s.ip) throw new InvariantError(`${s.ip} is already held by ${keyOf(other)}`);
    }
    if (s.state === 'cooling') this.changedIps.add(s.ip);
    s.state = 'assigned';
    s.key = k;
    delete s.coolUntil;
    const rec: StoredAllocation = {
      containerId: meta.containerId,
      ifName: meta.ifName,
      ip: s.ip,
      interfaceId: s.interfaceId,
      assignedAt,
    };
    if (meta.netns !== undefined) rec.netns = meta.netns;
    if (meta.podNamespace !== undefined) rec.podNamespace = meta.podNamespace;
    if (meta.podName !== undefined) rec.podName = meta.podName;
    if (meta.podUid !== undefined) rec.podUid = meta.podUid;
    if (meta.network !== undefined) rec.network = meta.network;
    if (meta.recoveredFrom !== undefined) rec.recoveredFrom = meta.recoveredFrom;
    this.byKey.set(k, rec);
    this.changedKeys.set(k, { containerId: rec.containerId, ifName: rec.ifName });
    return { ...rec };
  }

  /** Release the key's IP into cooldown. Returns what it held, or undefined. */
  release(key: AttachmentKey, now: number): StoredAllocation | undefined {
    const k = keyOf(key);
    const rec = this.byKey.get(k);
    if (!rec) return undefined;
    this.byKey.delete(k);
    this.changedKeys.set(k, { containerId: rec.containerId, ifName: rec.ifName });
    const s = this.ips.get(rec.ip);
    const movedTo = s?.cloudInterfaceId;
    if (s && s.key === k && s.lost && (movedTo === undefined || !this.interfaces.has(movedTo))) {
      // The cloud does not have it: it leaves the pool (the drift resync re-adds it if it comes back).
      this.ips.delete(s.ip);
    } else if (s && s.key === k) {
      // A lost IP the cloud put on another of our interfaces cools down there.
      if (movedTo !== undefined) s.interfaceId = movedTo;
      delete s.lost;
      delete s.cloudInterfaceId;
      delete s.key;
      if (this.cooldownMs > 0 || this.held.has(s.ip)) {
        this.changedIps.add(s.ip);
        s.state = 'cooling';
        s.coolUntil = now + this.cooldownMs;
      } else {
        s.state = 'free';
        this.ips.delete(s.ip);
        this.ips.set(s.ip, s);
      }
    }
    return rec;
  }

  // ---- restore (from checkpoint + cloud) ----

  /** Re-bind an allocation read from the checkpoint; the IP must be known and not held. */
  restoreAllocation(a: StoredAllocation): boolean {
    const s = this.ips.get(a.ip);
    if (!s || s.state === 'assigned') return false;
    const k = keyOf(a);
    if (this.byKey.has(k)) return false;
    this.bind(k, a, s, a.assignedAt);
    return true;
  }

  /**
   * Hold a free or cooling IP for a pod found only by its host route (a running pod: its IP must
   * never go to another). Returns the new entry, or undefined when the IP is unknown or held.
   */
  recover(key: AttachmentKey, ip: string, hostVeth: string, now: number): StoredAllocation | undefined {
    const s = this.ips.get(ip);
    if (!s || (s.state !== 'free' && s.state !== 'cooling')) return undefined;
    const k = keyOf(key);
    if (this.byKey.has(k)) return undefined;
    return this.bind(k, { ...key, recoveredFrom: hostVeth }, s, new Date(now).toISOString());
  }

  /** Entries held for pods found by their host route. */
  recovered(): StoredAllocation[] {
    const out: StoredAllocation[] = [];
    for (const a of this.byKey.values()) if (a.recoveredFrom !== undefined) out.push({ ...a });
    return out;
  }

  restoreCooling(ip: string, coolUntil: number): boolean {
    const s = this.ips.get(ip);
    if (s?.state !== 'free') return false;
    this.changedIps.add(ip);
    s.state = 'cooling';
    s.coolUntil = coolUntil;
    return true;
  }

  private dropIp(s: IpState): void {
    if (s.state === 'cooling') this.changedIps.add(s.ip);
    this.ips.delete(s.ip);
  }

  /**
   * What changed for the checkpoint since the last call (allocations put or deleted, IPs that
   * started or stopped cooling), and forget it. O(changes): the request path's journal record.
   */
  takeChanges(): {
    put: StoredAllocation[];
    del: Array<[string, string]>;
    cool: Array<{ ip: string; coolUntil: number }>;
    uncool: string[];
  } {
    const out = {
      put: [] as StoredAllocation[],
      del: [] as Array<[string, string]>,
      cool: [] as Array<{ ip: string; coolUntil: number }>,
      uncool: [] as string[],
    };
    for (const [k, key] of this.changedKeys) {
      const a = this.byKey.get(k);
      if (a) out.put.push({ ...a });
      else out.del.push([key.containerId, key.ifName]);
    }
    for (const ip of this.changedIps) {
      const s = this.ips.get(ip);
      if (s?.state === 'cooling') out.cool.push({ ip, coolUntil: s.coolUntil ?? 0 });
      else out.uncool.push(ip);
    }
    this.changedKeys.clear();
    this.changedIps.clear();
    return out;
  }

  coolingEntries(): Array<{ ip: string; coolUntil: number }> {
    return [...this.ips.values()]
      .filter((s) => s.state === 'cooling')
      .map((s) => ({ ip: s.ip, coolUntil: s.coolUntil ?? 0 }));
  }

  // ---- views ----

  /** The engine's view of one interface. */
  engineView(): EngineInterface[] {
    // A gone interface (drift) no longer takes a slot on the node, nor lends an IP: the engine
    // must not see it, or it would never create the interface that replaces it.
    // One pass over the IPs (this runs on every allocation): counts per interface.
    const counts = new Map<string, { total: number; assigned: number; cooling: number; free: string[] }>();
    for (const i of this.interfaces.values()) {
      if (!i.gone) counts.set(i.id, { total: 0, assigned: 0, cooling: 0, free: [] });
    }
    for (const s of this.ips.values()) {
      // A lost IP counts where the cloud has it (it takes a slot there).
      const c = counts.get(s.cloudInterfaceId ?? s.interfaceId);
      if (!c) continue;
      // IPs being released are already leaving: do not count them.
      if (s.state !== 'releasing') c.total++;
      if (s.state === 'assigned') c.assigned++;
      else if (s.state === 'cooling') c.cooling++;
      else if (s.state === 'free') c.free.push(s.ip);
    }
    return [...this.interfaces.values()]
      .filter((i) => !i.gone)
      .map((i) => {
        const c = counts.get(i.id) ?? { total: 0, assigned: 0, cooling: 0, free: [] };
        return {
          id: i.id,
          deviceIndex: i.deviceIndex,
          subnetId: i.subnetId,
          usable: i.usable && !i.draining && !i.gone && !i.retired,
          deletable: i.deletable && !i.draining && !i.gone,
          // A retired interface's free IPs serve no pod: only its pods count, so it empties and goes as a whole.
          total: i.retired ? c.total - c.free.length : c.total,
          assigned: c.assigned,
          cooling: c.cooling,
          freeIps: i.draining || i.retired ? [] : c.free,
        };
      });
  }

  private readonly gateways = new Map<string, string>();
  /** gatewayOf, remembered per CIDR (it runs on every request). */
  private gateway(cidr: string): string {
    let gw = this.gateways.get(cidr);
    if (gw === undefined) {
      gw = gatewayOf(cidr);
      this.gateways.set(cidr, gw);
    }
    return gw;
  }

  /** Full record for the API. */
  toRecord(a: StoredAllocation): AllocationRecord {
    const i = this.interfaces.get(a.interfaceId);
    if (!i) throw new InvariantError(`${a.ip} is on unknown interface ${a.interfaceId}`);
    const rec: AllocationRecord = {
      containerId: a.containerId,
      ifName: a.ifName,
      ip: a.ip,
      interfaceId: i.id,
      interfaceMac: i.mac,
      deviceIndex: i.deviceIndex,
      subnetCidr: i.subnetCidr,
      gateway: this.gateway(i.subnetCidr),
      routeTable: i.deviceIndex === 0 ? 0 : i.deviceIndex + 1,
      vpcCidrs: [...this.vpcCidrs],
      noSnatCidrs: [...this.noSnatCidrs],
      assignedAt: a.assignedAt,
    };
    if (a.netns !== undefined) rec.netns = a.netns;
    if (a.podNamespace !== undefined) rec.podNamespace = a.podNamespace;
    if (a.podName !== undefined) rec.podName = a.podName;
    if (a.podUid !== undefined) rec.podUid = a.podUid;
    if (a.network !== undefined) rec.network = a.network;
    if (a.recoveredFrom !== undefined) rec.recoveredFrom = a.recoveredFrom;
    return rec;
  }

  /** Throws if any invariant is broken (used by tests and after restores). */
  check(): void {
    const seen = new Map<string, string>();
    for (const [k, a] of this.byKey) {
      const prev = seen.get(a.ip);
      if (prev) throw new InvariantError(`${a.ip} held by both ${prev} and ${k}`);
      seen.set(a.ip, k);
      const s = this.ips.get(a.ip);
      if (s?.state !== 'assigned' || s.key !== k) throw new InvariantError(`${k} -> ${a.ip} is not bound`);
    }
    for (const s of this.ips.values()) {
      if (s.state === 'assigned' && (!s.key || this.byKey.get(s.key)?.ip !== s.ip)) {
        throw new InvariantError(`${s.ip} assigned to a missing key`);
      }
      if (!this.interfaces.has(s.interfaceId))
        throw new InvariantError(`${s.ip} on unknown ${s.interfaceId}`);
    }
  }
}

/** First host address of an IPv4 CIDR: the VPC router (AWS) / default gateway (Azure). */
export function gatewayOf(cidr: string): string {
  const [addr, bitsRaw] = cidr.split('/');
  const bits = Number(bitsRaw);
  const parts = (addr ?? '').split('.').map(Number);
  if (
    parts.length !== 4 ||
    parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255) ||
    !(bits >= 0 && bits <= 32)
  ) {
    throw new Error(`not an IPv4 CIDR: ${cidr}`);
  }
  const n = parts.reduce((a, p) => a * 256 + p, 0);
  const size = 2 ** (32 - bits);
  const gw = Math.floor(n / size) * size + (bits >= 31 ? 0 : 1);
  return [24, 16, 8, 0].map((sh) => Math.floor(gw / 2 ** sh) % 256).join('.');
}
