// The daemon's core: owns the datastore, runs the pool engine's plans against the cloud provider,
// persists every change before answering, and tells listeners what happened.
//
// Events (for the Kubernetes side, metrics and tests):
//   'allocated'    (AllocationRecord & { durationMs })
//   'released'     (AllocationRecord)
//   'no-ip'        ({ reason, message, containerId, ifName })
//   'pool-changed' (PoolStatus)
//   'drift'        (DriftEvent): a repair after the cloud changed behind the daemon's back
//   'resync'       ({ source, outcome, repairs, durationMs }): one drift resync
//   'error'        is never emitted: failures are logged and surface in status().

import { EventEmitter } from 'node:events';
import type { Logger } from '../lib/log.ts';
import { hostVethName } from '../netutils/names.ts';
import type { PodHostRoute } from '../netutils/pod-routes.ts';
import {
  isProviderError,
  type ProviderError,
  SubnetExhaustedError,
  ThrottledError,
} from '../providers/errors.ts';
import type { CloudProvider, InterfaceInfo, MetadataInterface, NodeInfo } from '../providers/types.ts';
import { OWNER_TAGS } from '../providers/types.ts';
import type {
  AllocateRequest,
  Allocation,
  AllocationRecord,
  AttachmentKey,
  GcResponse,
  PoolStatus,
  ReleaseResponse,
} from './api-types.ts';
import {
  type BeforeRenameHook,
  type CheckpointData,
  loadCheckpoint,
  removeStaleTemps,
  writeCheckpoint,
} from './checkpoint.ts';
import type { WarmPoolConfig } from './config.ts';
import { Datastore, type InterfaceRecord, keyOf, type StoredAllocation } from './datastore.ts';
import { KeyedMutex } from './key-lock.ts';
import {
  type CloudBackoff,
  type EngineSubnet,
  type NoIpInfo,
  type NoIpReason,
  type Plan,
  type PoolAction,
  type PoolLimits,
  type PoolTargets,
  plan,
} from './pool-engine.ts';
import {
  type KnownInterface,
  type ObservedInterface,
  planResync,
  plansAdds,
  type ResyncAction,
  type ResyncPlan,
  type RoutedIps,
} from './resync-plan.ts';
import { goneRecoveries, type IpHolder, planRecovery, recoveredKey } from './route-recovery.ts';

/**
 * Node-level networking the daemon keeps converged (implemented in node-setup/): called at start and
 * whenever the set of interfaces changes; IPs of a new interface are handed out only after it succeeds.
 */
export interface NodeSetupHook {
  reconcile(node: NodeInfo, interfaces: InterfaceInfo[]): Promise<void>;
}

export interface Clock {
  now(): number;
}

/** The drift resync (resync-plan.ts): re-list the node's interfaces and repair the pool. */
export interface ResyncOptions {
  /** Between two resyncs; 0 turns the resync off. Default: pool.resyncIntervalMs, else off. */
  intervalMs: number;
  /** Without usable instance metadata, the API is listed only every `apiEvery` intervals. */
  apiEvery: number;
  /** The daemon's own changes win this long over a listing that disagrees (metadata lags). */
  graceMs: number;
  /** Least time between two on-demand API resyncs (after a NotFound from the cloud). */
  onDemandMinGapMs: number;
}

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

export interface DaemonOptions {
  provider: CloudProvider;
  pool: WarmPoolConfig;
  clusterName: string;
  /** Pod subnets in preference order; null = the primary interface's subnet. */
  podSubnetIds: string[] | null;
  /** null = the primary interface's security groups. */
  podSecurityGroupIds: string[] | null;
  checkpointPath: string;
  logger: Logger;
  clock?: Clock;
  nodeSetup?: NodeSetupHook;
  /**
   * Reads the pods' host routes (`<ip>/32 dev <host veth>`) in the daemon's own netns (the node's).
   * When set, IPs routed to a pod are never handed out, whatever the checkpoint says (route-recovery.ts).
   */
  podRoutes?: () => Promise<PodHostRoute[]>;
  /** Drift resync tuning; the interval defaults to pool.resyncIntervalMs (unset: off). */
  resync?: Partial<ResyncOptions>;
  /** Crash tests only. */
  beforeCheckpointRename?: BeforeRenameHook;
}

/** An allocation could not be served: carries the no-IP reason (CNI "try again later"). */
export class NoIpError extends Error {
  override name = 'NoIpError';
  readonly reason: NoIpReason | 'shutting-down';
  constructor(info: { reason: NoIpReason | 'shutting-down'; message: string }) {
    super(info.message);
    this.reason = info.reason;
  }
}

export class NotReadyError extends Error {
  override name = 'NotReadyError';
}

interface Waiter {
  req: AllocateRequest;
  resolve(a: StoredAllocation): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

const HARD_LIMITS = new Set<string>(['instance-limit', 'max-eni', 'max-pods']);

const realClock: Clock = { now: () => Date.now() };

export class Daemon extends EventEmitter {
  private readonly provider: CloudProvider;
  private readonly opts: DaemonOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly locks = new KeyedMutex();
  private ds: Datastore | null = null;
  private node: NodeInfo | null = null;
  private subnets: EngineSubnet[] = [];
  private securityGroups: string[] = [];
  private ifaceTags = new Map<string, Record<string, string>>();
  private waiters: Waiter[] = [];
  private excessSince: number | null = null;
  private cloudBackoff: CloudBackoff | null = null;
  private errorStreak = 0;
  private lastPlan: Plan | null = null;
  private setupPending = new Set<string>();
  private setupError: string | null = null;
  private loopRunning: Promise<void> | null = null;
  private rerun = false;
  private wakeTimer: NodeJS.Timeout | null = null;
  private tickTimer: NodeJS.Timeout | null = null;
  private dirtyVersion = 0;
  private writtenVersion = 0;
  private writing: Promise<void> | null = null;
  private state: 'new' | 'starting' | 'ready' | 'stopping' | 'stopped' = 'new';
  private readonly resyncOpts: ResyncOptions;
  private lastResyncAt = 0;
  private lastApiResyncAt = 0;
  private lastOnDemandAt = Number.NEGATIVE_INFINITY;
  /** Why an on-demand API resync is wanted (a NotFound from the cloud), or null. */
  private resyncWanted: string | null = null;
  /**
   * The pods' host routes as last read (IP -> host veth; start, resyncs that add IPs, releases of
   * recovered entries); null before the first read. An IP entering the pool that a route claims is
   * held for that pod instead of made free. A stale view errs safe: an IP held for a route that is
   * gone is released at the next route check.
   */
  private routeView: ReadonlyMap<string, string> | null = null;
  /** The daemon's own recent cloud changes (epoch ms), so a lagging listing does not undo them. */
  private readonly recent = {
    assignedIps: new Map<string, number>(),
    unassignedIps: new Map<string, number>(),
    createdInterfaces: new Map<string, number>(),
    deletedInterfaces: new Map<string, number>(),
  };

  constructor(opts: DaemonOptions) {
    super();
    this.opts = opts;
    this.provider = opts.provider;
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger;
    this.resyncOpts = {
      intervalMs: opts.pool.resyncIntervalMs ?? 0,
      apiEvery: 10,
      graceMs: 30_000,
      onDemandMinGapMs: 10_000,
      ...opts.resync,
    };
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  get notReadyReason(): string {
    return this.state === 'ready' ? '' : `daemon is ${this.state}`;
  }

  /** Discover the node, rebuild from checkpoint + cloud, write a fresh checkpoint, start the loop. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`cannot start a daemon that is ${this.state}`);
    this.state = 'starting';
    const node = await this.provider.describeNode();
    this.node = node;
    const interfaces = await this.provider.listInterfaces();
    const podSubnetIds = this.opts.podSubnetIds ?? [node.primarySubnetId];
    this.securityGroups = this.opts.podSecurityGroupIds ?? node.securityGroupIds;
    this.subnets = await this.loadSubnets(podSubnetIds, interfaces);
    const ds = new Datastore({ cooldownMs: this.opts.pool.cooldownMs, vpcCidrs: node.vpcCidrs });
    this.ds = ds;
    for (const i of interfaces) this.addInterface(i, true);
    await this.runNodeSetup();
    const checkpoint = await this.restore(ds, interfaces);
    await this.recoverFromRoutes(checkpoint);
    ds.check();
    await this.persist();
    this.state = 'ready';
    this.lastResyncAt = this.lastApiResyncAt = this.clock.now();
    this.log.info(
      {
        instanceId: node.instanceId,
        instanceType: node.instanceType,
        interfaces: interfaces.length,
        allocations: ds.size,
      },
      'daemon ready',
    );
    this.tickTimer = setInterval(() => this.kick(), this.opts.pool.reconcileIntervalMs);
    this.tickTimer.unref();
    this.kick();
  }

  private async loadSubnets(ids: string[], interfaces: InterfaceInfo[]): Promise<EngineSubnet[]> {
    let infos: Awaited<ReturnType<CloudProvider['describeSubnets']>> = [];
    try {
      infos = await this.provider.describeSubnets(ids);
    } catch (err) {
      this.log.warn(
        { err: errText(err), subnets: ids },
        'describeSubnets failed; subnet free counts unknown',
      );
    }
    return ids.map((id) => {
      const info = infos.find((s) => s.id === id);
      const cidr = info?.cidr ?? interfaces.find((i) => i.subnetId === id)?.subnetCidr;
      const s: EngineSubnet = { id, availableIps: info ? info.availableIps : null, backoffUntil: null };
      if (cidr) s.cidr = cidr;
      return s;
    });
  }

  private isOurs(i: { tags: Record<string, string> }): boolean {
    return (
      i.tags[OWNER_TAGS.managedBy] !== undefined || i.tags[OWNER_TAGS.instanceId] === this.node?.instanceId
    );
  }

  /** The pool uses this interface's secondary IPs: a pod subnet, and ours or the primary. */
  private lendsIps(i: { deviceIndex: number; subnetId: string; tags: Record<string, string> }): boolean {
    return (i.deviceIndex === 0 || this.isOurs(i)) && this.subnets.some((s) => s.id === i.subnetId);
  }

  /** Record an interface; `initial` ones were attached before we started (setup runs once for all). */
  private addInterface(i: InterfaceInfo, initial: boolean): void {
    const ds = this.mustDs();
    const podSubnet = this.subnets.some((s) => s.id === i.subnetId);
    const managed = i.deviceIndex === 0 || this.isOurs(i);
    const needsSetup = this.opts.nodeSetup !== undefined && i.deviceIndex !== 0;
    const rec: InterfaceRecord = {
      id: i.id,
      mac: i.mac,
      deviceIndex: i.deviceIndex,
      subnetId: i.subnetId,
      subnetCidr: i.subnetCidr,
      primaryIp: i.primaryIp,
      usable: podSubnet && managed && !needsSetup,
      deletable: i.deviceIndex !== 0 && this.isOurs(i),
      draining: false,
    };
    ds.upsertInterface(rec);
    this.ifaceTags.set(i.id, i.tags);
    // Interfaces we do not manage take a slot but lend no IPs to the pool.
    if (managed && podSubnet) this.addIps(i.id, i.secondaryIps);
    if (needsSetup && managed && podSubnet) this.setupPending.add(i.id);
    if (!initial)
      this.log.info(
        { interfaceId: i.id, deviceIndex: i.deviceIndex, subnetId: i.subnetId },
        'interface added',
      );
  }

  private addIps(interfaceId: string, ips: string[]): void {
    const { moved, skipped } = this.mustDs().addIps(interfaceId, ips);
    this.holdRouted(ips);
    if (moved.length > 0) {
      this.log.warn(
        { interfaceId, ips: moved },
        'the cloud moved these IPs to this interface (drift); moved in the pool',
      );
    }
    if (skipped.length > 0) {
      this.log.error(
        { interfaceId, ips: skipped },
        'the cloud put IPs on this interface that are still held on another one (drift): pods holding them lost their address; not handed out until they are released',
      );
    }
  }

  /** Run node setup; on success the interfaces waiting for it become usable. */
  private async runNodeSetup(): Promise<boolean> {
    const hook = this.opts.nodeSetup;
    if (!hook || !this.node) return true;
    try {
      await hook.reconcile(this.node, this.interfaceInfos());
    } catch (err) {
      this.setupError = errText(err);
      this.log.error(
        { err: this.setupError },
        'node setup failed; IPs of new interfaces stay unused until it succeeds',
      );
      return false;
    }
    this.setupError = null;
    const ds = this.mustDs();
    for (const id of this.setupPending) {
      const rec = ds.interfaces.get(id);
      if (rec) ds.upsertInterface({ ...rec, usable: true });
    }
    this.setupPending.clear();
    return true;
  }

  /** The interfaces as the provider shapes them, with the IPs the pool holds. */
  interfaceInfos(): InterfaceInfo[] {
    const ds = this.mustDs();
    return [...ds.interfaces.values()]
      .sort((a, b) => a.deviceIndex - b.deviceIndex)
      .map((r) => ({
        id: r.id,
        mac: r.mac,
        deviceIndex: r.deviceIndex,
        subnetId: r.subnetId,
        subnetCidr: r.subnetCidr,
        primaryIp: r.primaryIp,
        secondaryIps: ds.ipsOf(r.id).map((s) => s.ip),
        tags: this.ifaceTags.get(r.id) ?? {},
      }));
  }

  /** Rebuild from the checkpoint; says whether it could be trusted ('ok') or not. */
  private async restore(
    ds: Datastore,
    interfaces: InterfaceInfo[],
  ): Promise<'ok' | 'missing' | 'corrupt' | 'foreign'> {
    const path = this.opts.checkpointPath;
    const stale = await removeStaleTemps(path);
    if (stale.length > 0) this.log.warn({ files: stale }, 'removed temp checkpoint files left by a crash');
    const loaded = await loadCheckpoint(path, () => this.clock.now());
    const fromRoutes = this.opts.podRoutes !== undefined;
    if (loaded.kind === 'missing') {
      this.log.info(
        { path },
        fromRoutes
          ? 'no checkpoint: IPs of running pods are recovered from their host routes, the rest are free'
          : 'no checkpoint: starting with every IP on the interfaces free',
      );
      return 'missing';
    }
    if (loaded.kind === 'corrupt') {
      this.log.error(
        {
          path,
          reason: loaded.reason,
          movedTo: loaded.movedTo,
          ipsOnInterfaces: interfaces.flatMap((i) => i.secondaryIps).length,
        },
        fromRoutes
          ? 'CHECKPOINT CORRUPT: moved aside; rebuilding from cloud state, IPs of running pods are recovered from their host routes'
          : 'CHECKPOINT CORRUPT: moved aside; rebuilding from cloud state with every IP free. Pods still running on this node may share an IP with new pods until they are restarted',
      );
      return 'corrupt';
    }
    const data = loaded.data;
    if (this.node && data.instanceId !== this.node.instanceId) {
      this.log.error(
        {
          checkpointInstance: data.instanceId,
          instanceId: this.node.instanceId,
          dropped: data.allocations.length,
        },
        'checkpoint belongs to another instance; ignoring its allocations',
      );
      return 'foreign';
    }
    const repairs: string[] = [];
    for (const a of data.allocations) {
      const st = ds.ipState(a.ip);
      if (!st) {
        repairs.push(`dropped ${keyOf(a)} -> ${a.ip}: the IP is no longer on this node's interfaces`);
        continue;
      }
      const moved = st.interfaceId !== a.interfaceId;
      if (!ds.restoreAllocation({ ...a, interfaceId: st.interfaceId })) {
        repairs.push(`dropped ${keyOf(a)} -> ${a.ip}: the IP or key is held twice in the checkpoint`);
        continue;
      }
      if (moved) repairs.push(`${keyOf(a)} -> ${a.ip}: now on ${st.interfaceId} (was ${a.interfaceId})`);
    }
    for (const c of data.cooling) {
      if (!ds.restoreCooling(c.ip, c.coolUntil) && ds.ipState(c.ip) === undefined) {
        repairs.push(`forgot cooling ${c.ip}: no longer on this node`);
      }
    }
    ds.tick(this.clock.now());
    const known = new Set([...data.allocations.map((a) => a.ip), ...data.cooling.map((c) => c.ip)]);
    const freed = interfaces
      .flatMap((i) => i.secondaryIps)
      .filter((ip) => !known.has(ip) && ds.ipState(ip) !== undefined);
    this.log.info(
      { restored: ds.size, repairs: repairs.length, newFree: freed.length },
      'restored allocations from checkpoint + cloud state',
    );
    for (const r of repairs) this.log.warn({ repair: r }, 'checkpoint repair');
    return 'ok';
  }

  /**
   * Hold every IP that the kernel routes to one of our pod veths. Runs on every start, not only
   * after a lost checkpoint: it costs one `ip -j route` and also covers a checkpoint from another
   * instance or one out of step with the node. Without a trustworthy checkpoint, failing to read
   * the routes stops the start (handing out IPs blind could give a running pod's IP to a new one).
   */
  private async recoverFromRoutes(checkpoint: 'ok' | 'missing' | 'corrupt' | 'foreign'): Promise<void> {
    const read = this.opts.podRoutes;
    if (!read) return;
    const ds = this.mustDs();
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
      this.log.warn({ err: errText(err) }, 'cannot read pod host routes; trusting the checkpoint alone');
      return;
    }
    this.noteRoutes(routes);
    const p = planRecovery(routes, (ip) => this.holderOf(ip));
    const now = this.clock.now();
    const recovered: PodHostRoute[] = [];
    for (const r of p.recover) if (ds.recover(recoveredKey(r), r.ip, r.hostVeth, now)) recovered.push(r);
    for (const r of p.heldElsewhere) {
      this.log.warn(
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
      this.log.warn(
        fields,
        'recovered IPs of running pods from their host routes; each is held until its route disappears',
      );
    } else this.log.info(fields, 'pod host routes checked; nothing to recover');
  }

  private noteRoutes(routes: readonly PodHostRoute[]): void {
    this.routeView = new Map(routes.map((r) => [r.ip, r.hostVeth]));
  }

  /**
   * Re-read the pods' host routes before IPs become free: the view for planResync (undefined
   * without a route reader, null when unreadable).
   */
  private async freshRoutes(): Promise<RoutedIps> {
    const read = this.opts.podRoutes;
    if (!read) return undefined;
    try {
      const routes = await read();
      this.noteRoutes(routes);
      return this.routeView;
    } catch (err) {
      this.log.warn(
        { err: errText(err) },
        'drift resync: cannot read pod host routes; IPs that appeared in the cloud wait for the next resync',
      );
      return null;
    }
  }

  /**
   * IPs that just entered the pool as free (a grow, a new interface) but that a pod's host route
   * claims (the cloud handed back an address a running pod still uses): hold them for that pod.
   */
  private holdRouted(ips: readonly string[]): void {
    const view = this.routeView;
    if (!view) return;
    const ds = this.mustDs();
    const now = this.clock.now();
    for (const ip of ips) {
      const hostVeth = view.get(ip);
      if (hostVeth === undefined || ds.ipState(ip)?.state !== 'free') continue;
      if (ds.recover(recoveredKey({ ip, hostVeth }), ip, hostVeth, now)) {
        this.log.warn(
          { ip, hostVeth },
          "the cloud returned an IP a running pod's host route still claims: held for that pod, not handed out",
        );
      }
    }
  }

  private holderOf(ip: string): IpHolder {
    const st = this.mustDs().ipState(ip);
    if (!st) return { state: 'not-on-node' };
    if (st.state !== 'assigned') return { state: st.state };
    const key = st.key ?? '';
    const a = this.mustDs()
      .list()
      .find((x) => keyOf(x) === key);
    return {
      state: 'assigned',
      key,
      hostVeth: a?.recoveredFrom ?? (a ? hostVethName(a.containerId, a.ifName) : ''),
    };
  }

  /** Release recovered entries whose host route is gone (the pod's DEL removed its veth). */
  private async releaseGoneRecoveries(): Promise<void> {
    const read = this.opts.podRoutes;
    const ds = this.mustDs();
    const held = ds.recovered();
    if (!read || held.length === 0) return;
    let routes: PodHostRoute[];
    try {
      routes = await read();
    } catch (err) {
      this.log.warn({ err: errText(err) }, 'cannot read pod host routes; recovered IPs stay held');
      return;
    }
    this.noteRoutes(routes);
    const gone = goneRecoveries(held, routes);
    if (gone.length === 0) return;
    const now = this.clock.now();
    // A DEL may have released one meanwhile (matched by its veth): count only what this released.
    const released = gone.flatMap((a) => (ds.release(a, now) ? [a] : []));
    if (released.length === 0) return;
    await this.persist();
    for (const a of released) {
      this.log.info(
        { ip: a.ip, hostVeth: a.recoveredFrom, key: keyOf(a) },
        'recovered IP released: its host route is gone',
      );
      this.emit('released', ds.toRecord(a));
    }
  }

  // ---- drift resync ----

  private noteRecent(m: Map<string, number>, keys: string[]): void {
    const now = this.clock.now();
    for (const k of keys) m.set(k, now);
  }

  private throttled(now: number): boolean {
    return this.cloudBackoff?.reason === 'throttled' && this.cloudBackoff.until > now;
  }

  /** The API may be listed for a periodic resync: rarely, as the Describe budget is per account. */
  private apiResyncAllowed(now: number, everyIntervals = this.resyncOpts.apiEvery): boolean {
    return !this.throttled(now) && now - this.lastApiResyncAt >= this.resyncOpts.intervalMs * everyIntervals;
  }

  /** Which listing a resync due now should read, or null when none is due. */
  private resyncSource(now: number): 'metadata' | 'api' | null {
    const o = this.resyncOpts;
    if (o.intervalMs <= 0) return null;
    if (
      this.resyncWanted !== null &&
      now - this.lastOnDemandAt >= o.onDemandMinGapMs &&
      !this.throttled(now)
    ) {
      return 'api';
    }
    if (now - this.lastResyncAt < o.intervalMs) return null;
    if (this.provider.listInterfacesFromMetadata) return 'metadata';
    if (this.apiResyncAllowed(now)) return 'api';
    return null;
  }

  /** Re-list the node's interfaces and repair the pool where the cloud changed behind our back. */
  private async resync(source: 'metadata' | 'api'): Promise<ResyncPlan | null> {
    const started = this.clock.now();
    this.lastResyncAt = started;
    if (source === 'api' && this.resyncWanted !== null) {
      this.log.info({ reason: this.resyncWanted }, 'drift resync on demand');
      this.resyncWanted = null;
      this.lastOnDemandAt = started;
    }
    let observed: ObservedInterface[];
    let infos: InterfaceInfo[] | null = null;
    try {
      if (source === 'metadata' && this.provider.listInterfacesFromMetadata) {
        observed = (await this.provider.listInterfacesFromMetadata()).map(fromMetadata);
      } else {
        infos = await this.provider.listInterfaces();
        this.lastApiResyncAt = started;
        observed = infos.map(fromApi);
      }
    } catch (err) {
      this.emit('resync', { source, outcome: 'error', repairs: 0, durationMs: this.clock.now() - started });
      if (source === 'metadata' && this.apiResyncAllowed(this.clock.now())) {
        this.log.warn({ err: errText(err) }, 'drift resync: instance metadata unreadable; listing the API');
        return this.resync('api');
      }
      this.log.warn(
        { err: errText(err), source },
        'drift resync: cannot list the interfaces; retrying later',
      );
      return null;
    }
    const now = this.clock.now();
    for (const m of Object.values(this.recent)) {
      for (const [k, at] of m) if (now - at >= this.resyncOpts.graceMs) m.delete(k);
    }
    let p = planResync(this.knownInterfaces(), observed, this.recent, now, this.resyncOpts.graceMs);
    // Metadata cannot say whose an unknown interface is (no subnet, no tags): ask the API, at most
    // once per interval.
    if (
      source === 'metadata' &&
      p.actions.some((a) => a.kind === 'unknown-interface') &&
      this.apiResyncAllowed(now, 1)
    ) {
      return this.resync('api');
    }
    // IPs about to become free: re-read the pods' host routes first, so an address a running pod
    // still uses (its lost mark dropped by a restart, say) is held for it, never handed out.
    const newInterface = infos !== null && p.actions.some((a) => a.kind === 'unknown-interface');
    if (this.opts.podRoutes && (plansAdds(p) || newInterface)) {
      const routed = await this.freshRoutes();
      p = planResync(this.knownInterfaces(), observed, this.recent, now, this.resyncOpts.graceMs, routed);
    }
    if (p.distrust) this.log.warn({ source, why: p.distrust }, 'drift resync: listing ignored');
    for (const d of p.deferred) this.log.debug({ source, ...d }, 'drift resync: deferred');
    const repairs = await this.applyResync(p, source, infos);
    this.emit('resync', { source, outcome: 'ok', repairs, durationMs: this.clock.now() - started });
    return p;
  }

  private knownInterfaces(): KnownInterface[] {
    const ds = this.mustDs();
    return [...ds.interfaces.values()].map((r) => ({
      id: r.id,
      mac: r.mac,
      deviceIndex: r.deviceIndex,
      primaryIp: r.primaryIp,
      managed: this.lendsIps({ ...r, tags: this.ifaceTags.get(r.id) ?? {} }),
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
  private async applyResync(
    p: ResyncPlan,
    source: 'metadata' | 'api',
    infos: InterfaceInfo[] | null,
  ): Promise<number> {
    const ds = this.mustDs();
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
          ds.recover(key, a.ip, a.hostVeth, this.clock.now());
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
          else this.forgetInterface(a.interfaceId);
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
          this.forgetInterface(a.interfaceId);
          changed = interfacesChanged = true;
          this.log.info({ interfaceId: a.interfaceId }, 'gone interface forgotten: no pod holds an IP on it');
          break;
        case 'interface-back': {
          const rec = ds.interfaces.get(a.interfaceId);
          if (!rec) break;
          const lends = this.lendsIps({ ...rec, tags: this.ifaceTags.get(rec.id) ?? {} });
          const needsSetup = this.opts.nodeSetup !== undefined && rec.deviceIndex !== 0;
          ds.upsertInterface({
            ...rec,
            gone: false,
            usable: lends && !needsSetup,
            deletable: rec.deviceIndex !== 0 && this.isOurs({ tags: this.ifaceTags.get(rec.id) ?? {} }),
          });
          if (lends && needsSetup) this.setupPending.add(rec.id);
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
          this.addInterface(info, false);
          changed = interfacesChanged = true;
          drift.push({
            kind: 'interface-added',
            interfaceId: info.id,
            source,
            message: `interface ${info.id} (device ${info.deviceIndex}) appeared on the node${this.lendsIps(info) ? '' : '; not ours or not in a pod subnet: its IPs are not used'}`,
          });
          break;
        }
      }
    }
    for (const d of drift) {
      const fields = { drift: d.kind, interfaceId: d.interfaceId, ip: d.ip, pod: d.pod, source };
      if (d.kind === 'ip-lost' || (d.kind === 'interface-removed' && d.message.includes('lost'))) {
        this.log.error(fields, d.message);
      } else this.log.warn(fields, d.message);
      this.emit('drift', d);
    }
    if (changed) {
      if (interfacesChanged) await this.runNodeSetup();
      // A cloud error may have been the drift itself (NotFound on a gone interface): plan afresh.
      if (this.cloudBackoff?.reason === 'cloud-error') {
        this.cloudBackoff = null;
        this.errorStreak = 0;
      }
      this.serveWaiters();
      await this.persist();
      this.emit('pool-changed', this.status());
    }
    return drift.length;
  }

  private forgetInterface(id: string): void {
    this.mustDs().removeInterface(id);
    this.ifaceTags.delete(id);
    this.setupPending.delete(id);
  }

  // ---- persistence ----

  private snapshot(): CheckpointData {
    const ds = this.mustDs();
    return {
      version: 1,
      instanceId: this.node?.instanceId ?? '',
      writtenAt: new Date(this.clock.now()).toISOString(),
      allocations: ds.list(),
      cooling: ds.coolingEntries(),
    };
  }

  /** Resolves once a checkpoint containing every change made before the call is on disk. */
  private async persist(): Promise<void> {
    const target = ++this.dirtyVersion;
    while (this.writtenVersion < target) {
      if (this.writing) {
        await this.writing.catch(() => {});
        continue;
      }
      const version = this.dirtyVersion;
      const write = writeCheckpoint(
        this.opts.checkpointPath,
        this.snapshot(),
        this.opts.beforeCheckpointRename,
      ).then(() => {
        this.writtenVersion = Math.max(this.writtenVersion, version);
      });
      this.writing = write;
      try {
        await write;
      } finally {
        if (this.writing === write) this.writing = null;
      }
    }
  }

  // ---- API operations ----

  async allocate(req: AllocateRequest): Promise<Allocation> {
    this.assertReady();
    const started = performance.now();
    const k = keyOf(req);
    return this.locks.run(k, async () => {
      const ds = this.mustDs();
      const existing = ds.get(req);
      if (existing) return stripRecord(ds.toRecord(existing));
      this.assertReady();
      let a = ds.assign(req, this.clock.now());
      if (!a) {
        // A hard limit with nothing cooling will not change by waiting: say so at once.
        const p = this.currentPlan();
        const hard = p.noIp && HARD_LIMITS.has(p.noIp.reason) && p.actions.length === 0;
        if (hard && this.status().cooling === 0) throw this.noIpError(req);
        a = await this.waitForIp(req);
      }
      try {
        await this.persist();
      } catch (err) {
        // Not on disk: not allocated. Put it back (no cooldown: nobody used it).
        ds.release(req, this.clock.now() - this.opts.pool.cooldownMs);
        ds.tick(this.clock.now());
        this.log.error({ err: errText(err), key: k }, 'checkpoint write failed; allocation rolled back');
        throw err;
      }
      const rec = ds.toRecord(a);
      this.log.info({ key: k, ip: rec.ip, interfaceId: rec.interfaceId, pod: podOf(req) }, 'allocated');
      this.emit('allocated', { ...rec, durationMs: performance.now() - started });
      this.kickIfLow();
      return stripRecord(rec);
    });
  }

  async release(key: AttachmentKey): Promise<ReleaseResponse> {
    this.assertNotStopped();
    const k = keyOf(key);
    return this.locks.run(k, async () => {
      const ds = this.mustDs();
      // A pod recovered from its host route is known by its veth, which its own key names.
      const stored = ds.get(key) ?? this.recoveredFor(key);
      if (!stored) return { released: null };
      const rec = ds.toRecord(stored);
      ds.release(stored, this.clock.now());
      await this.persist();
      this.log.info({ key: k, ip: rec.ip }, 'released');
      this.emit('released', rec);
      this.kick();
      return { released: rec.ip };
    });
  }

  private recoveredFor(key: AttachmentKey): StoredAllocation | undefined {
    const veth = hostVethName(key.containerId, key.ifName);
    return this.mustDs()
      .recovered()
      .find((a) => a.recoveredFrom === veth);
  }

  get(key: AttachmentKey): Allocation | null {
    const ds = this.mustDs();
    const a = ds.get(key);
    return a ? stripRecord(ds.toRecord(a)) : null;
  }

  list(): AllocationRecord[] {
    const ds = this.mustDs();
    return ds.list().map((a) => ds.toRecord(a));
  }

  /** Release every allocation whose key is not in `valid` (CNI GC). */
  async gc(valid: AttachmentKey[]): Promise<GcResponse> {
    this.assertNotStopped();
    const keep = new Set(valid.map(keyOf));
    const released: AttachmentKey[] = [];
    for (const a of this.mustDs().list()) {
      // Recovered entries have no runtime key; they go when their host route does.
      if (keep.has(keyOf(a)) || a.recoveredFrom !== undefined) continue;
      const r = await this.release(a);
      if (r.released) released.push({ containerId: a.containerId, ifName: a.ifName });
    }
    if (released.length > 0) this.log.info({ released: released.length }, 'gc released stale allocations');
    return { released };
  }

  status(): PoolStatus {
    const ds = this.mustDs();
    const node = this.mustNode();
    const p = this.currentPlan();
    const interfaces = [...ds.interfaces.values()]
      .sort((a, b) => a.deviceIndex - b.deviceIndex)
      .map((i) => {
        const states = ds.ipsOf(i.id);
        const assigned = states.filter((s) => s.state === 'assigned').length;
        const cooling = states.filter((s) => s.state === 'cooling').length;
        const free = states.filter((s) => s.state === 'free').length;
        const lost = states.filter((s) => s.lost).length;
        return {
          interfaceId: i.id,
          mac: i.mac,
          deviceIndex: i.deviceIndex,
          subnetId: i.subnetId,
          total: states.length,
          assigned,
          cooling,
          free,
          lost,
          ...(i.gone ? { gone: true } : {}),
          ips: states.map((s) => ({ ip: s.ip, state: s.state, ...(s.lost ? { lost: true } : {}) })),
        };
      });
    return {
      instanceId: node.instanceId,
      instanceType: node.instanceType,
      maxPods: p.maxPods,
      total: interfaces.reduce((n, i) => n + i.total, 0),
      assigned: interfaces.reduce((n, i) => n + i.assigned, 0),
      cooling: interfaces.reduce((n, i) => n + i.cooling, 0),
      free: interfaces.reduce((n, i) => n + i.free, 0),
      lost: interfaces.reduce((n, i) => n + i.lost, 0),
      plan: p.why,
      noIpReason: p.noIp ? `${p.noIp.reason}: ${p.noIp.message}` : null,
      interfaces,
    };
  }

  private assertReady(): void {
    if (this.state === 'stopping' || this.state === 'stopped') {
      throw new NoIpError({ reason: 'shutting-down', message: 'the daemon is shutting down; retry shortly' });
    }
    if (this.state !== 'ready') throw new NotReadyError(this.notReadyReason);
  }

  private assertNotStopped(): void {
    if (this.state === 'stopped') throw new NotReadyError('daemon is stopped');
    if (!this.ds) throw new NotReadyError(this.notReadyReason);
  }

  private waitForIp(req: AllocateRequest): Promise<StoredAllocation> {
    const waitMs = this.opts.pool.allocateWaitMs;
    return new Promise<StoredAllocation>((resolve, reject) => {
      const w: Waiter = {
        req,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(this.noIpError(req));
        }, waitMs),
      };
      this.waiters.push(w);
      this.kick();
    });
  }

  private noIpError(req: AttachmentKey): NoIpError {
    const info: NoIpInfo = this.currentPlan().noIp ?? {
      reason: 'pool-growing',
      message: 'no free IP yet; the pool is growing, retry in a few seconds',
    };
    this.log.warn({ key: keyOf(req), reason: info.reason }, info.message);
    this.emit('no-ip', { ...info, containerId: req.containerId, ifName: req.ifName });
    return new NoIpError(info);
  }

  /** Hand free IPs to waiting requests, first come first served. */
  private serveWaiters(): void {
    const ds = this.mustDs();
    while (this.waiters.length > 0) {
      const w = this.waiters[0] as Waiter;
      const a = ds.assign(w.req, this.clock.now());
      if (!a) return;
      this.waiters.shift();
      clearTimeout(w.timer);
      w.resolve(a);
    }
  }

  // ---- the pool loop ----

  private engineInputs(): { limits: PoolLimits; targets: PoolTargets } {
    const node = this.mustNode();
    const p = this.opts.pool;
    return {
      limits: {
        instanceType: node.instanceType,
        maxInterfaces: node.maxInterfaces,
        ipsPerInterface: node.ipsPerInterface,
        maxEni: p.maxEni,
        maxPods: p.maxPods,
      },
      targets: {
        warmEniTarget: p.warmEniTarget,
        warmIpTarget: p.warmIpTarget,
        minimumIpTarget: p.minimumIpTarget,
        minGrowStep: p.minGrowStep,
        shrinkDelayMs: p.shrinkDelayMs,
      },
    };
  }

  private currentPlan(): Plan {
    const { limits, targets } = this.engineInputs();
    const p = this.planFor(limits, targets);
    if (p.noIp?.reason === 'pool-growing' && this.setupPending.size > 0 && this.setupError) {
      // The engine cannot see why attached IPs are held back: say it.
      p.noIp = {
        reason: 'pool-growing',
        message: `node setup failed for interface(s) ${[...this.setupPending].join(', ')} (${this.setupError}); their IPs are handed out once it succeeds (retried every loop)`,
      };
    }
    return p;
  }

  private planFor(limits: PoolLimits, targets: PoolTargets): Plan {
    return plan(
      {
        interfaces: this.mustDs().engineView(),
        pending: this.waiters.length,
        excessSince: this.excessSince,
        subnets: this.subnets,
        cloudBackoff: this.cloudBackoff,
      },
      limits,
      targets,
      this.clock.now(),
    );
  }

  /** Ask the loop to run soon; coalesces. */
  kick(): void {
    if (this.state !== 'ready') return;
    if (this.loopRunning) {
      this.rerun = true;
      return;
    }
    this.loopRunning = this.loop().finally(() => {
      this.loopRunning = null;
      this.scheduleWake();
    });
  }

  private kickIfLow(): void {
    const p = this.currentPlan();
    if (p.actions.length > 0) this.kick();
  }

  /** Run the loop now and wait for it (tests, CLI). */
  async reconcileNow(): Promise<Plan> {
    if (this.loopRunning) await this.loopRunning;
    this.kick();
    if (this.loopRunning) await this.loopRunning;
    return this.lastPlan ?? this.currentPlan();
  }

  private async loop(): Promise<void> {
    let rounds = 0;
    do {
      this.rerun = false;
      try {
        const progressed = await this.reconcileOnce();
        if (progressed && this.waiters.length > 0) this.rerun = true;
      } catch (err) {
        this.log.error({ err: errText(err) }, 'pool reconcile failed');
      }
    } while (this.rerun && this.state === 'ready' && ++rounds < 20);
  }

  /** One plan + execute round. Returns whether any cloud action succeeded. */
  private async reconcileOnce(): Promise<boolean> {
    const ds = this.mustDs();
    const resyncSource = this.resyncSource(this.clock.now());
    if (resyncSource) await this.resync(resyncSource);
    if (this.opts.podRoutes && ds.recovered().length > 0) await this.releaseGoneRecoveries();
    if (this.subnets.some((s) => s.backoffUntil !== null && s.backoffUntil <= this.clock.now())) {
      await this.refreshSubnets();
    }
    const now = this.clock.now();
    if (ds.tick(now) > 0) {
      this.serveWaiters();
      await this.persist();
    }
    if (this.setupPending.size > 0 && (await this.runNodeSetup())) this.serveWaiters();
    const p = this.currentPlan();
    this.lastPlan = p;
    this.excessSince = p.excessSince;
    if (p.actions.length === 0) return false;
    this.log.info({ actions: p.actions, why: p.why }, 'pool plan');
    // Take IPs and interfaces out of circulation synchronously, before any await, so no allocation
    // can pick an IP that is about to be given back.
    const prepared = p.actions.map((a) => this.prepare(a));
    const results = await Promise.allSettled(prepared.map((run) => run()));
    let ok = 0;
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') ok++;
      else if (this.onActionError(p.actions[i] as PoolAction, r.reason) === 'try-another-subnet') {
        // The next plan skips the full subnet: re-plan now rather than at the next tick.
        if (this.waiters.length > 0) this.rerun = true;
      }
    }
    if (ok > 0) {
      this.errorStreak = 0;
      this.cloudBackoff = null;
      this.serveWaiters();
      await this.persist();
      this.emit('pool-changed', this.status());
    }
    return ok > 0;
  }

  private prepare(a: PoolAction): () => Promise<void> {
    const ds = this.mustDs();
    switch (a.kind) {
      case 'assign':
        return async () => {
          const ips = await this.provider.assignIps(a.interfaceId, { count: a.count });
          this.noteRecent(this.recent.assignedIps, ips);
          if (!ds.interfaces.has(a.interfaceId)) return;
          this.addIps(a.interfaceId, ips);
          this.adjustSubnet(ds.interfaces.get(a.interfaceId)?.subnetId, ips.length);
          this.log.info({ interfaceId: a.interfaceId, ips: ips.length }, 'assigned IPs');
        };
      case 'create':
        return async () => {
          const info = await this.provider.createInterface({
            subnetId: a.subnetId,
            securityGroupIds: this.securityGroups,
            secondaryIpCount: a.ipCount,
            tags: { [OWNER_TAGS.clusterName]: this.opts.clusterName },
          });
          this.noteRecent(this.recent.createdInterfaces, [info.id]);
          this.noteRecent(this.recent.assignedIps, info.secondaryIps);
          this.addInterface(info, false);
          this.adjustSubnet(a.subnetId, info.secondaryIps.length + 1);
          await this.runNodeSetup();
        };
      case 'unassign': {
        const taken = ds.reserveForRelease(a.interfaceId, a.ips);
        return async () => {
          if (taken.length === 0) return;
          try {
            await this.provider.unassignIps(a.interfaceId, taken);
          } catch (err) {
            ds.unreserve(taken);
            throw err;
          }
          this.noteRecent(this.recent.unassignedIps, taken);
          ds.dropIps(taken);
          this.adjustSubnet(ds.interfaces.get(a.interfaceId)?.subnetId, -taken.length);
          this.log.info({ interfaceId: a.interfaceId, ips: taken }, 'gave IPs back');
        };
      }
      case 'delete': {
        const rec = ds.interfaces.get(a.interfaceId);
        const busy = ds.ipsOf(a.interfaceId).some((s) => s.state === 'assigned' || s.state === 'cooling');
        if (!rec || busy) return async () => {};
        ds.upsertInterface({ ...rec, draining: true });
        const taken = ds.reserveForRelease(
          a.interfaceId,
          ds.ipsOf(a.interfaceId).map((s) => s.ip),
        );
        return async () => {
          try {
            await this.provider.deleteInterface(a.interfaceId);
          } catch (err) {
            ds.unreserve(taken);
            const cur = ds.interfaces.get(a.interfaceId);
            if (cur) ds.upsertInterface({ ...cur, draining: false });
            throw err;
          }
          this.noteRecent(this.recent.deletedInterfaces, [a.interfaceId]);
          this.noteRecent(this.recent.unassignedIps, taken);
          ds.removeInterface(a.interfaceId);
          this.ifaceTags.delete(a.interfaceId);
          this.adjustSubnet(rec.subnetId, -(taken.length + 1));
          this.log.info({ interfaceId: a.interfaceId }, 'deleted interface');
          await this.runNodeSetup();
        };
      }
    }
  }

  /**
   * A subnet whose backoff ended: ask the cloud how many addresses it has now (others may have
   * released some). Its count was set to 0 when it reported itself full, and the engine caps grow
   * batches at the count, so without this it would never be used again.
   */
  private async refreshSubnets(): Promise<void> {
    const due = this.subnets.filter((s) => s.backoffUntil !== null && s.backoffUntil <= this.clock.now());
    for (const s of due) s.backoffUntil = null;
    try {
      const infos = await this.provider.describeSubnets(due.map((s) => s.id));
      for (const s of due) s.availableIps = infos.find((i) => i.id === s.id)?.availableIps ?? null;
      this.log.info(
        { subnets: due.map((s) => ({ id: s.id, availableIps: s.availableIps })) },
        'subnet backoff over; free addresses re-read',
      );
    } catch (err) {
      // Unknown: the next grow finds out (and backs off again if it is still full).
      for (const s of due) s.availableIps = null;
      this.log.warn(
        { err: errText(err) },
        'describeSubnets failed after a subnet backoff; free counts unknown',
      );
    }
  }

  private adjustSubnet(subnetId: string | undefined, used: number): void {
    const s = this.subnets.find((x) => x.id === subnetId);
    if (s && s.availableIps !== null) s.availableIps = Math.max(0, s.availableIps - used);
  }

  private onActionError(a: PoolAction, err: unknown): 'try-another-subnet' | 'backoff' {
    const now = this.clock.now();
    this.log.warn({ action: a, err: errText(err) }, 'pool action failed');
    if (isProviderError(err) && err.code === 'NOT_FOUND' && a.kind !== 'create') {
      // An interface or IP we thought we had is gone: the cloud changed behind our back.
      this.resyncWanted = `${a.kind} on ${a.interfaceId}: ${errText(err)}`;
      this.rerun = true;
    }
    if (err instanceof SubnetExhaustedError || (isProviderError(err) && err.code === 'SUBNET_EXHAUSTED')) {
      const subnetId =
        a.kind === 'create'
          ? a.subnetId
          : this.mustDs().interfaces.get(a.kind === 'assign' ? a.interfaceId : '')?.subnetId;
      const s = this.subnets.find((x) => x.id === subnetId);
      if (s) {
        s.backoffUntil = now + this.opts.pool.subnetBackoffMs;
        s.availableIps = 0;
        this.log.warn(
          { subnetId: s.id, cidr: s.cidr, backoffMs: this.opts.pool.subnetBackoffMs },
          'subnet is full; skipping it for a while',
        );
      }
      return 'try-another-subnet';
    }
    this.errorStreak++;
    const backoffMs = Math.min(60_000, 1000 * 2 ** Math.min(6, this.errorStreak - 1));
    if (err instanceof ThrottledError || (isProviderError(err) && err.code === 'THROTTLED')) {
      const wait = (err as ProviderError).retryAfterMs ?? backoffMs;
      this.cloudBackoff = {
        reason: 'throttled',
        message: `the cloud API is throttling this account (${(err as ProviderError).cloudCode ?? 'throttled'}); retrying in ${Math.ceil(wait / 1000)}s. If it persists, lower warm targets cluster-wide or raise the account's API limits`,
        until: now + wait,
      };
      return 'backoff';
    }
    this.cloudBackoff = {
      reason: 'cloud-error',
      message: `the last cloud call (${a.kind}) failed: ${errText(err)}; retrying in ${Math.ceil(backoffMs / 1000)}s`,
      until: now + backoffMs,
    };
    return 'backoff';
  }

  /** Wake up exactly when something becomes due (cooldown end, shrink delay, backoff end). */
  private scheduleWake(): void {
    if (this.state !== 'ready') return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    const now = this.clock.now();
    const candidates = [
      this.mustDs().nextCoolingEnd(),
      this.excessSince === null ? null : this.excessSince + this.opts.pool.shrinkDelayMs,
      this.cloudBackoff?.until ?? null,
      this.resyncOpts.intervalMs > 0 ? this.lastResyncAt + this.resyncOpts.intervalMs : null,
      ...this.subnets.map((s) => s.backoffUntil),
    ].filter((t): t is number => t !== null && t > now);
    if (candidates.length === 0) return;
    const at = Math.min(...candidates);
    const delay = Math.min(this.opts.pool.reconcileIntervalMs, Math.max(5, at - now + 5));
    this.wakeTimer = setTimeout(() => this.kick(), delay);
    this.wakeTimer.unref();
  }

  // ---- shutdown ----

  /** Drain: refuse new work, let in-flight requests finish, leave a consistent checkpoint. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    const wasReady = this.ds !== null;
    this.state = 'stopping';
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(
        new NoIpError({ reason: 'shutting-down', message: 'the daemon is shutting down; retry shortly' }),
      );
    }
    const drained = await this.locks.idle(timeoutMs);
    if (!drained) this.log.warn('shutdown: some requests did not finish in time');
    if (this.loopRunning) await Promise.race([this.loopRunning, delay(timeoutMs)]);
    if (wasReady) await this.persist();
    this.state = 'stopped';
    this.log.info('daemon stopped; checkpoint is consistent');
  }

  private mustDs(): Datastore {
    if (!this.ds) throw new NotReadyError(this.notReadyReason);
    return this.ds;
  }

  private mustNode(): NodeInfo {
    if (!this.node) throw new NotReadyError(this.notReadyReason);
    return this.node;
  }
}

function stripRecord(rec: AllocationRecord): Allocation {
  const { assignedAt: _a, netns: _n, recoveredFrom: _r, ...rest } = rec;
  return rest;
}

function fromMetadata(i: MetadataInterface): ObservedInterface {
  return { id: i.id, mac: i.mac, deviceIndex: i.deviceIndex, ips: i.ips };
}

function fromApi(i: InterfaceInfo): ObservedInterface {
  return { id: i.id, mac: i.mac, deviceIndex: i.deviceIndex, ips: [i.primaryIp, ...i.secondaryIps] };
}

function podOf(req: { podName?: string; podNamespace?: string }): string | undefined {
  return req.podName ? `${req.podNamespace ?? 'default'}/${req.podName}` : undefined;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
