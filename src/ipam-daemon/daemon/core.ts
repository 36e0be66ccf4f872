// What the daemon's parts share: options, the node, the datastore, the lifecycle state, and a
// reference to each part so one can call another. Each part lives in its own module beside this one
// (see docs/daemon.md, "Modules"); daemon.ts wires them and is the public face.

import type { Logger } from '../../lib/log.ts';
import type { VethLinks } from '../../netutils/host-veths.ts';
import type { PodHostRoute } from '../../netutils/pod-routes.ts';
import { isProviderError } from '../../providers/errors.ts';
import type { CloudProvider, InterfaceInfo, NodeInfo } from '../../providers/types.ts';
import type { PoolStatus } from '../api-types.ts';
import type { BeforeRenameHook } from '../checkpoint.ts';
import type { WarmPoolConfig } from '../config.ts';
import type { Datastore } from '../datastore.ts';
import type { NoIpReason } from '../pool-engine.ts';
import type { TakeoverOptions } from '../takeover/adopt.ts';
import type { CheckpointWriter } from './checkpoint-writer.ts';
import type { DriftResync } from './drift-resync.ts';
import type { CloudIntents } from './intents.ts';
import type { NodeInterfaces } from './interfaces.ts';
import type { PoolLoop } from './pool-loop.ts';
import type { Requests } from './requests.ts';
import type { RouteGuard } from './route-guard.ts';
import { poolStatus } from './status.ts';
import type { PodSubnets } from './subnets.ts';
import type { VethSweep } from './veth-sweep.ts';

/**
 * Node-level networking the daemon keeps converged (implemented in node-setup/): called at start and
 * whenever the set of interfaces changes; IPs of a new interface are handed out only after it succeeds.
 */
export interface NodeSetupHook {
  reconcile(node: NodeInfo, interfaces: InterfaceInfo[]): Promise<void>;
  /** Stop any timer of its own (its drift repair); called by Daemon.stop. */
  stop?(): void;
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
  /** ENABLE_SUBNET_DISCOVERY: before each new interface, re-read the pod subnets and prefer the most free. */
  rankSubnetsByFreeIps?: boolean;
  /** Prefix of the host veths the CNI plugin names (AWS_VPC_K8S_CNI_VETHPREFIX); default HOST_VETH_PREFIX. */
  vethPrefix?: string;
  /**
   * Names of the veth links in the daemon's netns (the node's). With podRoutes, GC and the pod
   * watcher release an allocation only when neither its host route nor its host veth exists.
   */
  hostVeths?: () => Promise<string[]>;
  /**
   * Reads (name + ifindex) and deletes the veth links in the daemon's netns: the sweep of veths a
   * DEL left (veth-sweep.ts), and at start the veths of our prefix no pod holds. Unset: a DEL
   * deletes its veth itself and nothing is swept.
   */
  vethLinks?: VethLinks;
  /** Most allocations waiting for the pool to grow; default the node's max pods. */
  maxWaiters?: number;
  /** CNI GC leaves allocations younger than this alone (an ADD may still be in flight). Default 60 s. */
  gcGraceMs?: number;
  /**
   * The socket the plugins talk to: releases they noted while the daemon was down (a DEL it
   * missed) are made by the pool loop, at most once a second (src/cni/deferred-release.ts).
   * Unset: none are read.
   */
  socketPath?: string;
  /** Drift resync tuning; the interval defaults to pool.resyncIntervalMs (unset: off). */
  resync?: Partial<ResyncOptions>;
  /** Taking the node over from the AWS VPC CNI (takeover/): adopt its ENIs and running pods. */
  takeover?: TakeoverOptions;
  /** The node's SNAT settings, for the allocations' noSnatCidrs (ipvlan pods route by them). */
  podEgress?: { externalSnat: boolean; excludeCidrs: string[] };
  /** Crash tests only. */
  beforeCheckpointRename?: BeforeRenameHook;
  /** Durability tests only: before each group commit's fdatasync. */
  beforeJournalSync?: (journalPath: string) => void | Promise<void>;
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

export type DaemonState = 'new' | 'starting' | 'ready' | 'stopping' | 'stopped';

const realClock: Clock = { now: () => Date.now() };

/** The parts, set once by the Daemon's constructor. */
export interface DaemonParts {
  subnets: PodSubnets;
  interfaces: NodeInterfaces;
  routes: RouteGuard;
  checkpoint: CheckpointWriter;
  requests: Requests;
  pool: PoolLoop;
  drift: DriftResync;
  intents: CloudIntents;
  veths: VethSweep;
}

export class DaemonCore {
  readonly opts: DaemonOptions;
  readonly provider: CloudProvider;
  readonly clock: Clock;
  readonly log: Logger;
  readonly emit: (event: string, payload: unknown) => boolean;
  ds: Datastore | null = null;
  node: NodeInfo | null = null;
  securityGroups: string[] = [];
  state: DaemonState = 'new';
  parts!: DaemonParts;

  constructor(opts: DaemonOptions, emit: (event: string, payload: unknown) => boolean) {
    this.opts = opts;
    this.provider = opts.provider;
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger;
    this.emit = emit;
  }

  get notReadyReason(): string {
    return this.state === 'ready' ? '' : `daemon is ${this.state}`;
  }

  mustDs(): Datastore {
    if (!this.ds) throw new NotReadyError(this.notReadyReason);
    return this.ds;
  }

  mustNode(): NodeInfo {
    if (!this.node) throw new NotReadyError(this.notReadyReason);
    return this.node;
  }

  status(): PoolStatus {
    const ds = this.mustDs();
    return poolStatus(ds, this.mustNode(), this.parts.pool.currentPlan());
  }
}

export function podOf(req: { podName?: string; podNamespace?: string }): string | undefined {
  return req.podName ? `${req.podNamespace ?? 'default'}/${req.podName}` : undefined;
}

export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Tries after the first for a start-up read (describe the node, list its interfaces). */
export const STARTUP_RETRIES = 4;

/**
 * A cloud read at start-up, tried again (1, 2, 4, 8 s apart) when it fails for a reason that may
 * pass (a timeout, a 5xx, throttling: an IMDS or API busy for seconds), instead of the process
 * exiting and the kubelet's back-off making pods wait longer. Anything else fails at once.
 */
export async function startupRead<T>(core: DaemonCore, what: string, read: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      const passing = isProviderError(err) && (err.code === 'OTHER' || err.code === 'THROTTLED');
      if (!passing || attempt >= STARTUP_RETRIES || core.state !== 'starting') throw err;
      const waitMs = 1000 * 2 ** attempt;
      core.log.warn(
        { err: errText(err), attempt: attempt + 1, waitMs },
        `start-up: cannot ${what} yet; retrying`,
      );
      // A timer that holds the process: nothing else does yet (no socket), and an unref'd one
      // would let Node exit (13, top-level await unsettled) in the middle of the wait.
      await new Promise((r) => setTimeout(r, waitMs));
    }
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
