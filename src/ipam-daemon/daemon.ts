// The daemon: owns the datastore, runs the pool engine's plans against the cloud provider,
// persists every change before answering, and tells listeners what happened. This is its public
// face; each part lives in its own module under daemon/ (see docs/daemon.md, "Modules"):
//   daemon/core.ts              shared state, options, errors
//   daemon/subnets.ts           the pod subnets, their free counts and backoff
//   daemon/interfaces.ts        which interfaces are ours / lend IPs / may be deleted; node setup
//   daemon/restore.ts           start-up: checkpoint + cloud state
//   daemon/route-guard.ts       pods' host routes: recovery at start, holding routed IPs
//   daemon/checkpoint-writer.ts persist before answering (group commit)
//   daemon/requests.ts          allocate / release / get / list, waiters
//   daemon/gc.ts                CNI GC
//   daemon/pool-loop.ts         plan + run cloud actions, backoff, wake-ups
//   daemon/drift-resync.ts      re-list the cloud and repair drift
//   daemon/intents.ts           cloud changes in flight: durable first, finished after a restart
//   daemon/status.ts            the pool as shown to the API
//   daemon/veth-sweep.ts        host veths a DEL left: deleted soon after, their IPs cool till then
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
import type { InterfaceInfo } from '../providers/types.ts';
import type {
  AllocateRequest,
  Allocation,
  AllocationRecord,
  AttachmentKey,
  GcResponse,
  PoolStatus,
  ReleaseRequest,
  ReleaseResponse,
} from './api-types.ts';
import { CheckpointWriter } from './daemon/checkpoint-writer.ts';
import { DaemonCore, type DaemonOptions, startupRead } from './daemon/core.ts';
import { DriftResync } from './daemon/drift-resync.ts';
import { collectGarbage, releaseIfUnwired } from './daemon/gc.ts';
import { CloudIntents } from './daemon/intents.ts';
import { NodeInterfaces } from './daemon/interfaces.ts';
import { PoolLoop } from './daemon/pool-loop.ts';
import { Requests } from './daemon/requests.ts';
import { restoreFromCheckpoint } from './daemon/restore.ts';
import { RouteGuard } from './daemon/route-guard.ts';
import { PodSubnets } from './daemon/subnets.ts';
import { VethSweep } from './daemon/veth-sweep.ts';
import { Datastore } from './datastore.ts';
import type { Plan } from './pool-engine.ts';
import { adoptAwsAllocations } from './takeover/adopt.ts';

export {
  type Clock,
  type DaemonOptions,
  type NodeSetupHook,
  NoIpError,
  NotReadyError,
  type ResyncOptions,
} from './daemon/core.ts';
export type { DriftEvent, DriftKind } from './daemon/drift-resync.ts';

export class Daemon extends EventEmitter {
  private readonly core: DaemonCore;

  constructor(opts: DaemonOptions) {
    super();
    const core = new DaemonCore(opts, (event, payload) => this.emit(event, payload));
    core.parts = {
      subnets: new PodSubnets(core),
      interfaces: new NodeInterfaces(core),
      routes: new RouteGuard(core),
      checkpoint: new CheckpointWriter(core),
      requests: new Requests(core),
      pool: new PoolLoop(core),
      drift: new DriftResync(core),
      intents: new CloudIntents(core),
      veths: new VethSweep(core),
    };
    this.core = core;
  }

  /** Checkpoint writes that reached the disk (snapshots, group-commit journal lines). */
  get checkpointWrites(): CheckpointWriter['writes'] {
    return this.core.parts.checkpoint.writes;
  }

  /** The sweep of host veths a DEL left, and the attachments' command locks (cni-host.ts). */
  get veths(): VethSweep {
    return this.core.parts.veths;
  }

  get ready(): boolean {
    return this.core.state === 'ready';
  }

  get notReadyReason(): string {
    return this.core.notReadyReason;
  }

  /** Discover the node, rebuild from checkpoint + cloud, write a fresh checkpoint, start the loop. */
  async start(): Promise<void> {
    const { core } = this;
    const { parts } = core;
    if (core.state !== 'new') throw new Error(`cannot start a daemon that is ${core.state}`);
    core.state = 'starting';
    const node = await startupRead(core, 'describe the node', () => core.provider.describeNode());
    core.node = node;
    const interfaces = await startupRead(core, 'list its interfaces', () => core.provider.listInterfaces());
    const podSubnetIds = core.opts.podSubnetIds ?? [node.primarySubnetId];
    core.securityGroups = core.opts.podSecurityGroupIds ?? node.securityGroupIds;
    await parts.subnets.load(podSubnetIds, interfaces);
    const egress = core.opts.podEgress;
    const noSnatCidrs = egress?.externalSnat
      ? ['0.0.0.0/0']
      : [...node.vpcCidrs, ...(egress?.excludeCidrs ?? [])];
    const ds = new Datastore({ cooldownMs: core.opts.pool.cooldownMs, vpcCidrs: node.vpcCidrs, noSnatCidrs });
    core.ds = ds;
    for (const i of interfaces) parts.interfaces.add(i, true);
    await parts.interfaces.runNodeSetup();
    const checkpoint = await restoreFromCheckpoint(core, ds, interfaces);
    await adoptAwsAllocations(core, checkpoint);
    await parts.routes.recoverAtStart(checkpoint);
    // Veths DELs left that this daemon's sweep never saw gone (it restarted): before any IP is free.
    await parts.veths.deleteOrphans();
    // Cloud changes a dead daemon left in flight: their IPs and interfaces stay out of the pool.
    parts.intents.restore();
    ds.check();
    await parts.checkpoint.persist();
    core.state = 'ready';
    parts.drift.started(core.clock.now());
    core.log.info(
      {
        instanceId: node.instanceId,
        instanceType: node.instanceType,
        interfaces: interfaces.length,
        allocations: ds.size,
      },
      'daemon ready',
    );
    parts.pool.start();
  }

  /** The interfaces as the provider shapes them, with the IPs the pool holds. */
  interfaceInfos(): InterfaceInfo[] {
    return this.core.parts.interfaces.infos();
  }

  /** The Node's spec.unschedulable (cordoned) as the Kubernetes side sees it. */
  setNodeUnschedulable(unschedulable: boolean): void {
    this.core.parts.pool.setUnschedulable(unschedulable);
  }

  /** Ask the loop to run soon; coalesces. */
  kick(): void {
    this.core.parts.pool.kick();
  }

  /** Run the loop now and wait for it (tests, CLI). */
  reconcileNow(): Promise<Plan> {
    return this.core.parts.pool.reconcileNow();
  }

  // ---- API operations ----

  allocate(req: AllocateRequest): Promise<Allocation> {
    return this.core.parts.requests.allocate(req);
  }

  /** `key.ip`: only while the key still holds that IP. */
  release(key: ReleaseRequest): Promise<ReleaseResponse> {
    return this.core.parts.requests.release(key);
  }

  get(key: AttachmentKey): Allocation | null {
    return this.core.parts.requests.get(key);
  }

  list(): AllocationRecord[] {
    return this.core.parts.requests.list();
  }

  /**
   * CNI GC: release the allocations of `network` whose key is not in `valid`, older than the GC
   * grace period, and no longer wired on the node (daemon/gc.ts).
   */
  gc(valid: AttachmentKey[], network?: string): Promise<GcResponse> {
    return collectGarbage(this.core, valid, network);
  }

  /** The pod watcher's release: only when the pod is no longer wired on the node. */
  releaseIfUnwired(key: AttachmentKey): Promise<ReleaseResponse & { kept?: boolean }> {
    return releaseIfUnwired(this.core, key);
  }

  status(): PoolStatus {
    return this.core.status();
  }

  // ---- shutdown ----

  /** Drain: refuse new work, let in-flight requests finish, leave a consistent checkpoint. */
  async stop(timeoutMs = 10_000): Promise<void> {
    const { core } = this;
    const { parts } = core;
    if (core.state === 'stopped' || core.state === 'stopping') return;
    const wasReady = core.ds !== null;
    core.state = 'stopping';
    parts.pool.clearTimers();
    parts.veths.stop();
    core.opts.nodeSetup?.stop?.();
    parts.requests.rejectWaiters();
    const drained = await parts.requests.locks.idle(timeoutMs);
    if (!drained) core.log.warn('shutdown: some requests did not finish in time');
    await parts.pool.settle(timeoutMs);
    await parts.checkpoint.finish(wasReady);
    core.state = 'stopped';
    core.log.info('daemon stopped; checkpoint is consistent');
  }
}
