// Drift resync: every interval re-list the node's interfaces (instance metadata, the API rarely or
// on demand after a NotFound) and repair the pool where the cloud changed behind the daemon's back.
// The plan is pure (resync-plan.ts); this applies it. The daemon's own recent changes win for a
// grace period over a listing that disagrees (metadata lags).

import type { InterfaceInfo, MetadataInterface } from '../../providers/types.ts';
import { keyOf } from '../datastore.ts';
import {
  type KnownInterface,
  type ObservedInterface,
  planResync,
  plansAdds,
  type ResyncAction,
  type ResyncPlan,
} from '../resync-plan.ts';
import { recoveredKey } from '../route-recovery.ts';
import { type DaemonCore, errText, podOf, type ResyncOptions } from './core.ts';

export type DriftKind =
  | 'ip-removed'
  | 'ip-lost'
  | 'ip-regained'
  | 'ip-added'
  | 'ip-held'
  | 'interface-removed'
  | 'interface-added';

export interface DriftEvent {
  kind: DriftKind;
  interfaceId: string;
  ip?: string;
  /** For ip-lost / ip-regained: the allocation's key and pod. */
  key?: string;
  pod?: string;
  source: 'metadata' | 'api';
  message: string;
}

export class DriftResync {
  private readonly core: DaemonCore;
  private readonly opts: ResyncOptions;
  private lastResyncAt = 0;
  private lastApiResyncAt = 0;
  private lastOnDemandAt = Number.NEGATIVE_INFINITY;
  /** Why an on-demand API resync is wanted (a NotFound from the cloud), or null. */
  private wanted: string | null = null;
  /** The daemon's own recent cloud changes (epoch ms), so a lagging listing does not undo them. */
  readonly recent = {
    assignedIps: new Map<string, number>(),
    unassignedIps: new Map<string, number>(),
    createdInterfaces: new Map<string, number>(),
    deletedInterfaces: new Map<string, number>(),
  };

  constructor(core: DaemonCore) {
    this.core = core;
    this.opts = {
      intervalMs: core.opts.pool.resyncIntervalMs ?? 0,
      apiEvery: 10,
      graceMs: 30_000,
      onDemandMinGapMs: 10_000,
      ...core.opts.resync,
    };
  }

  /** The start-up listing counts as the first resync. */
  started(now: number): void {
    this.lastResyncAt = this.lastApiResyncAt = now;
  }

  /** A NotFound from the cloud: an API resync is wanted soon. */
  want(reason: string): void {
    this.wanted = reason;
  }

  /** When the next periodic resync is due, or null when off. */
  nextDue(): number | null {
    return this.opts.intervalMs > 0 ? this.lastResyncAt + this.opts.intervalMs : null;
  }

  /**
   * Remember the daemon's own change for the grace period. Nothing reads these with the resync
   * off; with it on, entries past the grace are dropped here too, so the maps stay as small as
   * the changes of one grace period even when resyncs do not run.
   */
  noteRecent(m: Map<string, number>, keys: string[]): void {
    if (this.opts.intervalMs <= 0) return;
    const now = this.core.clock.now();
    for (const [k, at] of m) {
      // Insertion order is time order (re-noted keys are deleted first, below).
      if (now - at < this.opts.graceMs) break;
      m.delete(k);
    }
    for (const k of keys) {
      m.delete(k);
      m.set(k, now);
    }
  }

  /** Entries across the recent-change maps (tests). */
  recentCount(): number {
    return Object.values(this.recent).reduce((n, m) => n + m.size, 0);
  }

  /** The API may be listed for a periodic resync: rarely, as the Describe budget is per account. */
  private apiAllowed(now: number, everyIntervals = this.opts.apiEvery): boolean {
    return (
      !this.core.parts.pool.throttled(now) &&
      now - this.lastApiResyncAt >= this.opts.intervalMs * everyIntervals
    );
  }

  /** Which listing a resync due now should read, or null when none is due. */
  sourceDue(now: number): 'metadata' | 'api' | null {
    const o = this.opts;
    if (o.intervalMs <= 0) return null;
    if (
      this.wanted !== null &&
      now - this.lastOnDemandAt >= o.onDemandMinGapMs &&
      !this.core.parts.pool.throttled(now)
    ) {
      return 'api';
    }
    if (now - this.lastResyncAt < o.intervalMs) return null;
    if (this.core.provider.listInterfacesFromMetadata) return 'metadata';
    if (this.apiAllowed(now)) return 'api';
    return null;
  }

  /** Re-list the node's interfaces and repair the pool where the cloud changed behind our back. */
  async resync(source: 'metadata' | 'api'): Promise<ResyncPlan | null> {
    const { core } = this;
    const started = core.clock.now();
    this.lastResyncAt = started;
    if (source === 'api' && this.wanted !== null) {
      core.log.info({ reason: this.wanted }, 'drift resync on demand');
      this.wanted = null;
      this.lastOnDemandAt = started;
    }
    let observed: ObservedInterface[];
    let infos: InterfaceInfo[] | null = null;
    try {
      if (source === 'metadata' && core.provider.listInterfacesFromMetadata) {
        observed = (await core.provider.listInterfacesFromMetadata()).map(fromMetadata);
      } else {
        infos = await core.provider.listInterfaces();
        this.lastApiResyncAt = started;
        observed = infos.map(fromApi);
      }
    } catch (err) {
      core.emit('resync', { source, outcome: 'error', repairs: 0, durationMs: core.clock.now() - started });
      if (source === 'metadata' && this.apiAllowed(core.clock.now())) {
        core.log.warn({ err: errText(err) }, 'drift resync: instance metadata unreadable; listing the API');
        return this.resync('api');
      }
      core.log.warn(
        { err: errText(err), source },
        'drift resync: cannot list the interfaces; retrying later',
      );
      return null;
    }
    const now = core.clock.now();
    for (const m of Object.values(this.recent)) {
      for (const [k, at] of m) if (now - at >= this.opts.graceMs) m.delete(k);
    }
    let p = planResync(this.knownInterfaces(), observed, this.recent, now, this.opts.graceMs);
    // Metadata cannot say whose an unknown interface is (no subnet, no tags): ask the API, at most
    // once per interval.
    if (
      source === 'metadata' &&
      p.actions.some((a) => a.kind === 'unknown-interface') &&
      this.apiAllowed(now, 1)
    ) {
      return this.resync('api');
    }
    // IPs about to become free: re-read the pods' host routes first, so an address a running pod
    // still uses (its lost mark dropped by a restart, say) is held for it, never handed out.
    const newInterface = infos !== null && p.actions.some((a) => a.kind === 'unknown-interface');
    if (core.opts.podRoutes && (plansAdds(p) || newInterface)) {
      const routed = await core.parts.routes.fresh();
      p = planResync(this.knownInterfaces(), observed, this.recent, now, this.opts.graceMs, routed);
    }
    if (p.distrust) core.log.warn({ source, why: p.distrust }, 'drift resync: listing ignored');
    for (const d of p.deferred) core.log.debug({ source, ...d }, 'drift resync: deferred');
    const repairs = await this.apply(p, source, infos);
    core.emit('resync', { source, outcome: 'ok', repairs, durationMs: core.clock.now() - started });
    return p;
  }

  private knownInterfaces(): KnownInterface[] {
    const ds = this.core.mustDs();
    const ifaces = this.core.parts.interfaces;
    return [...ds.interfaces.values()].map((r) => ({
      id: r.id,
      mac: r.mac,
      deviceIndex: r.deviceIndex,
      primaryIp: r.primaryIp,
      managed: ifaces.tracksIps({ ...r, tags: ifaces.tagsOf(r.id) }),
      draining: r.draining,
      gone: r.gone === true,
      ips: ds.ipsOf(r.id).map((s) => ({
        ip: s.ip,
        state: s.state,
        ...(s.key !== undefined ? { key: s.key } : {}),
        ...(s.lost ? { lost: true } : {}),
      })),
    }));
  }

  /** Apply a resync plan (synchronously up to the persist); returns the number of repairs. */
  private async apply(
    p: ResyncPlan,
    source: 'metadata' | 'api',
    infos: InterfaceInfo[] | null,
  ): Promise<number> {
    const { core } = this;
    const { parts } = core;
    const ifaces = parts.interfaces;
    const ds = core.mustDs();
    const drift: DriftEvent[] = [];
    let changed = false;
    let interfacesChanged = false;
    const podOfKey = (key: string) => {
      const a = ds.list().find((x) => keyOf(x) === key);
      return a ? (podOf(a) ?? key) : key;
    };
    for (const a of p.actions as ResyncAction[]) {
      switch (a.kind) {
        case 'drop-ip':
          ds.dropIps([a.ip]);
          changed = true;
          drift.push({
            kind: 'ip-removed',
            interfaceId: a.interfaceId,
            ip: a.ip,
            source,
            message: `${a.ip} (${a.was}) is no longer on ${a.interfaceId}: removed from the pool`,
          });
          break;
        case 'lose-ip': {
          ds.markLost(a.ip);
          changed = true;
          const pod = podOfKey(a.key);
          drift.push({
            kind: 'ip-lost',
            interfaceId: a.interfaceId,
            ip: a.ip,
            key: a.key,
            pod,
            source,
            message: `${a.ip} of pod ${pod} is no longer on ${a.interfaceId}: the pod has lost its address (restart it); the IP is never handed out again unless the cloud has it back`,
          });
          break;
        }
        case 'regain-ip': {
          ds.clearLost(a.ip);
          const pod = podOfKey(a.key);
          drift.push({
            kind: 'ip-regained',
            interfaceId: a.interfaceId,
            ip: a.ip,
            key: a.key,
            pod,
            source,
            message: `${a.ip} of pod ${pod} is on ${a.interfaceId} again`,
          });
          break;
        }
        case 'add-ip':
          if (!ds.interfaces.has(a.interfaceId) || ds.ipState(a.ip)) break;
          ds.addIps(a.interfaceId, [a.ip]);
          changed = true;
          drift.push({
            kind: 'ip-added',
            interfaceId: a.interfaceId,
            ip: a.ip,
            source,
            message: `${a.ip} appeared on ${a.interfaceId}: added to the pool as free`,
          });
          break;
        case 'hold-ip': {
          if (!ds.interfaces.has(a.interfaceId) || ds.ipState(a.ip)) break;
          ds.addIps(a.interfaceId, [a.ip]);
          const key = recoveredKey({ ip: a.ip, hostVeth: a.hostVeth });
          ds.recover(key, a.ip, a.hostVeth, core.clock.now());
          changed = true;
          drift.push({
            kind: 'ip-held',
            interfaceId: a.interfaceId,
            ip: a.ip,
            key: keyOf(key),
            source,
            message: `${a.ip} appeared on ${a.interfaceId} but a running pod's host route (dev ${a.hostVeth}) still claims it: held for that pod, not handed out, until the route is gone`,
          });
          break;
        }
        case 'interface-gone': {
          const rec = ds.interfaces.get(a.interfaceId);
          if (!rec) break;
          const held = ds.ipsOf(a.interfaceId).some((s) => s.state === 'assigned');
          if (held) ds.upsertInterface({ ...rec, gone: true, usable: false, deletable: false });
          else ifaces.forget(a.interfaceId);
          changed = interfacesChanged = true;
          drift.push({
            kind: 'interface-removed',
            interfaceId: a.interfaceId,
            source,
            message: held
              ? `interface ${a.interfaceId} is gone: its pods lost their addresses; no IP is handed out from it`
              : `interface ${a.interfaceId} is gone: forgotten`,
          });
          break;
        }
        case 'forget-interface':
          if (ds.ipsOf(a.interfaceId).some((s) => s.state === 'assigned')) break;
          ifaces.forget(a.interfaceId);
          changed = interfacesChanged = true;
          core.log.info({ interfaceId: a.interfaceId }, 'gone interface forgotten: no pod holds an IP on it');
          break;
        case 'interface-back': {
          const rec = ds.interfaces.get(a.interfaceId);
          if (!rec) break;
          const tags = ifaces.tagsOf(rec.id);
          const lends = ifaces.lendsIps({ ...rec, tags });
          const needsSetup = ifaces.needsSetup(rec.deviceIndex);
          ds.upsertInterface({
            ...rec,
            gone: false,
            usable: lends && !needsSetup,
            deletable: rec.deviceIndex !== 0 && ifaces.isOurs({ tags }),
          });
          if (lends && needsSetup) ifaces.setupPending.add(rec.id);
          changed = interfacesChanged = true;
          drift.push({
            kind: 'interface-added',
            interfaceId: a.interfaceId,
            source,
            message: `interface ${a.interfaceId} is listed again`,
          });
          break;
        }
        case 'unknown-interface': {
          const info = infos?.find((i) => (a.id !== '' ? i.id === a.id : i.mac === a.mac));
          if (!info) break; // metadata only: learnt from the API at the next chance
          ifaces.add(info, false);
          changed = interfacesChanged = true;
          drift.push({
            kind: 'interface-added',
            interfaceId: info.id,
            source,
            message: `interface ${info.id} (device ${info.deviceIndex}) appeared on the node${ifaces.lendsIps(info) ? '' : '; not ours or not in a pod subnet: its IPs are not used'}`,
          });
          break;
        }
      }
    }
    for (const d of drift) {
      const fields = { drift: d.kind, interfaceId: d.interfaceId, ip: d.ip, pod: d.pod, source };
      if (d.kind === 'ip-lost' || (d.kind === 'interface-removed' && d.message.includes('lost'))) {
        core.log.error(fields, d.message);
      } else core.log.warn(fields, d.message);
      core.emit('drift', d);
    }
    if (changed) {
      if (interfacesChanged) await ifaces.runNodeSetup();
      parts.pool.clearCloudError();
      parts.requests.serveWaiters();
      await parts.checkpoint.persist();
      core.emit('pool-changed', core.status());
    }
    return drift.length;
  }
}

function fromMetadata(i: MetadataInterface): ObservedInterface {
  return { id: i.id, mac: i.mac, deviceIndex: i.deviceIndex, ips: i.ips };
}

function fromApi(i: InterfaceInfo): ObservedInterface {
  return { id: i.id, mac: i.mac, deviceIndex: i.deviceIndex, ips: [i.primaryIp, ...i.secondaryIps] };
}
