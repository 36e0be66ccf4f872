// The pool loop: plan with the pool engine, run the plan's cloud actions, back off on errors, and
// wake exactly when something becomes due. Runs one round at a time; kick() coalesces.

import {
  isProviderError,
  type ProviderError,
  SubnetExhaustedError,
  ThrottledError,
} from '../../providers/errors.ts';
import { OWNER_TAGS } from '../../providers/types.ts';
import {
  type CloudBackoff,
  type Plan,
  type PoolAction,
  type PoolLimits,
  type PoolTargets,
  plan,
} from '../pool-engine.ts';
import { type DaemonCore, delay, errText } from './core.ts';
import { releaseDeferred } from './gc.ts';

/** How soon node setup is retried while an attached interface is not visible in the node yet. */
export const SETUP_RETRY_MS = 500;

/** How often the pool loop looks for releases plugins deferred while the daemon was down. */
export const DEFERRED_CHECK_MS = 1000;

export class PoolLoop {
  private readonly core: DaemonCore;
  private excessSince: number | null = null;
  private grewAhead = false;
  cloudBackoff: CloudBackoff | null = null;
  errorStreak = 0;
  private lastPlan: Plan | null = null;
  private running: Promise<void> | null = null;
  /** Another round is wanted once this one ends. */
  rerun = false;
  /** When the releases plugins deferred (gc.ts releaseDeferred) were last looked for. */
  private deferredCheckedAt = Number.NEGATIVE_INFINITY;
  /** The running loop has made its last check; a kick now needs a new loop (kickAfter). */
  private loopEnded = false;
  private kickAfter = false;
  private wakeTimer: NodeJS.Timeout | null = null;
  /** The Node is marked unschedulable (cordoned), as the Kubernetes side last saw it. */
  private unschedulable = false;
  private tickTimer: NodeJS.Timeout | null = null;
  /** When the allocations of the last burst window were made (the engine's arrival rate). */
  private readonly arrivals: number[] = [];

  constructor(core: DaemonCore) {
    this.core = core;
  }

  /** Start the periodic tick and run once. */
  start(): void {
    this.tickTimer = setInterval(() => this.kick(), this.core.opts.pool.reconcileIntervalMs);
    this.tickTimer.unref();
    this.kick();
  }

  /** Shutdown, first step: no more rounds are started by timers. */
  clearTimers(): void {
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
  }

  /** Shutdown: resolves when the round in flight ends (or after timeoutMs). */
  async settle(timeoutMs: number): Promise<void> {
    if (this.running) await Promise.race([this.running, delay(timeoutMs)]);
  }

  private engineInputs(): { limits: PoolLimits; targets: PoolTargets } {
    const node = this.core.mustNode();
    const p = this.core.opts.pool;
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
        // Unset (tests, embedders): off; the daemon config sets VPC_IPAM_BURST_WINDOW (10 s).
        burstWindowMs: p.burstWindowMs ?? 0,
      },
    };
  }

  currentPlan(): Plan {
    const { limits, targets } = this.engineInputs();
    const p = this.planFor(limits, targets);
    if (this.core.opts.pool.noProvisioning) return withoutProvisioning(p);
    const { setupPending, setupError } = this.core.parts.interfaces;
    if (p.noIp?.reason === 'pool-growing' && setupPending.size > 0 && setupError) {
      // The engine cannot see why attached IPs are held back: say it.
      p.noIp = {
        reason: 'pool-growing',
        message: `node setup failed for interface(s) ${[...setupPending].join(', ')} (${setupError}); their IPs are handed out once it succeeds (retried every loop)`,
      };
    }
    return p;
  }

  private planFor(limits: PoolLimits, targets: PoolTargets): Plan {
    const { setupPending } = this.core.parts.interfaces;
    return plan(
      {
        interfaces: this.core
          .mustDs()
          .engineView()
          .map((i) => (setupPending.has(i.id) ? { ...i, settingUp: true } : i)),
        recentAllocations: this.arrivals,
        pending: this.core.parts.requests.waiting,
        excessSince: this.excessSince,
        grewAhead: this.grewAhead,
        subnets: this.core.parts.subnets.list,
        cloudBackoff: this.cloudBackoff,
        cordoned: this.unschedulable && !this.core.opts.pool.manageEnisNonSchedulable,
      },
      limits,
      targets,
      this.core.clock.now(),
    );
  }

  /** An allocation was made: it counts toward the arrival rate for the burst window. */
  noteAllocation(): void {
    const now = this.core.clock.now();
    const windowMs = this.core.opts.pool.burstWindowMs ?? 0;
    if (windowMs <= 0) return;
    this.arrivals.push(now);
    // Oldest first: drop what left the window; the node's max pods bounds the rest in practice.
    let old = 0;
    while (old < this.arrivals.length && (this.arrivals[old] as number) <= now - windowMs) old++;
    if (old > 0) this.arrivals.splice(0, old);
    if (this.arrivals.length > 4096) this.arrivals.splice(0, this.arrivals.length - 4096);
  }

  /** The Kubernetes side saw the Node's spec.unschedulable change. */
  setUnschedulable(unschedulable: boolean): void {
    if (unschedulable === this.unschedulable) return;
    this.unschedulable = unschedulable;
    this.core.log.info(
      { unschedulable, manageEnisNonSchedulable: this.core.opts.pool.manageEnisNonSchedulable ?? false },
      unschedulable ? 'node cordoned' : 'node uncordoned',
    );
    this.kick();
  }

  /** Ask the loop to run soon; coalesces. */
  kick(): void {
    if (this.core.state !== 'ready') return;
    if (this.running) {
      // Past its last check the loop would not see `rerun`: start another once it has settled
      // (a request waiting for the pool must not wait for the next tick).
      if (this.loopEnded) this.kickAfter = true;
      else this.rerun = true;
      return;
    }
    this.loopEnded = false;
    this.running = this.loop().finally(() => {
      this.running = null;
      if (this.kickAfter) {
        this.kickAfter = false;
        this.kick();
      } else this.scheduleWake();
    });
  }

  kickIfLow(): void {
    const p = this.currentPlan();
    if (p.actions.length > 0) this.kick();
  }

  /** Run the loop now and wait for it (tests, CLI). */
  async reconcileNow(): Promise<Plan> {
    if (this.running) await this.running;
    this.kick();
    if (this.running) await this.running;
    return this.lastPlan ?? this.currentPlan();
  }

  private async loop(): Promise<void> {
    let rounds = 0;
    do {
      this.rerun = false;
      try {
        const progressed = await this.reconcileOnce();
        if (progressed && this.core.parts.requests.waiting > 0) this.rerun = true;
      } catch (err) {
        this.core.log.error({ err: errText(err) }, 'pool reconcile failed');
      }
    } while (this.rerun && this.core.state === 'ready' && ++rounds < 20);
    this.loopEnded = true;
  }

  /**
   * One round: plan + execute, then finish what a dead daemon (or a failed call) left in flight and
   * sweep this node's detached interfaces — after the actions, so no create of ours is half done.
   * Returns whether any cloud action succeeded.
   */
  private async reconcileOnce(): Promise<boolean> {
    try {
      return await this.planAndRun();
    } finally {
      if (this.core.state === 'ready') {
        await this.core.parts.intents.resume();
        // A directory read: not on every round (a busy node runs one per event-loop turn of
        // releases), at most once per DEFERRED_CHECK_MS. Notes come only from DELs while the
        // daemon was down; the first round after a start reads them.
        const now = this.core.clock.now();
        if (now - this.deferredCheckedAt >= DEFERRED_CHECK_MS) {
          this.deferredCheckedAt = now;
          await releaseDeferred(this.core);
        }
      }
    }
  }

  private async planAndRun(): Promise<boolean> {
    const { core } = this;
    const { parts } = core;
    const ds = core.mustDs();
    const resyncSource = parts.drift.sourceDue(core.clock.now());
    if (resyncSource) await parts.drift.resync(resyncSource);
    if (core.opts.podRoutes && ds.recovered().length > 0) await parts.routes.releaseGoneRecoveries();
    if (parts.subnets.backoffOver(core.clock.now())) await parts.subnets.refresh();
    const now = core.clock.now();
    if (ds.tick(now) > 0) {
      parts.requests.serveWaiters();
      await parts.checkpoint.persist();
    }
    if (parts.interfaces.setupPending.size > 0 && (await parts.interfaces.runNodeSetup())) {
      parts.requests.serveWaiters();
    }
    let p = this.currentPlan();
    if (core.opts.rankSubnetsByFreeIps && p.actions.some((a) => a.kind === 'create')) {
      // ENABLE_SUBNET_DISCOVERY: as the AWS VPC CNI does before each ENI, the subnet with the most
      // free addresses now comes first; plan again with that order.
      if (await parts.subnets.rankByFreeIps()) p = this.currentPlan();
    }
    this.lastPlan = p;
    this.excessSince = p.excessSince;
    this.grewAhead = p.grewAhead;
    if (p.actions.length === 0) return false;
    core.log.info({ actions: p.actions, why: p.why }, 'pool plan');
    // Take IPs and interfaces out of circulation synchronously, before any await, so no allocation
    // can pick an IP that is about to be given back.
    const prepared = p.actions.map((a) => this.prepare(a));
    const results = await Promise.allSettled(prepared.map((run) => run()));
    let ok = 0;
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') ok++;
      else if (this.onActionError(p.actions[i] as PoolAction, r.reason) === 'try-another-subnet') {
        // The next plan skips the full subnet: re-plan now rather than at the next tick.
        if (parts.requests.waiting > 0) this.rerun = true;
      }
    }
    if (ok > 0) {
      this.errorStreak = 0;
      this.cloudBackoff = null;
      parts.requests.serveWaiters();
      await parts.checkpoint.persist();
      core.emit('pool-changed', core.status());
    }
    return ok > 0;
  }

  private prepare(a: PoolAction): () => Promise<void> {
    const { core } = this;
    const { parts, provider } = core;
    const ds = core.mustDs();
    const recent = parts.drift.recent;
    switch (a.kind) {
      case 'assign':
        return async () => {
          const rec = ds.interfaces.get(a.interfaceId);
          const known = rec
            ? { subnetId: rec.subnetId, ips: [rec.primaryIp, ...ds.ipsOf(a.interfaceId).map((s) => s.ip)] }
            : undefined;
          const ips = await parts.intents.run({ kind: 'assign', interfaceId: a.interfaceId }, () =>
            provider.assignIps(a.interfaceId, { count: a.count, ...(known ? { known } : {}) }),
          );
          parts.drift.noteRecent(recent.assignedIps, ips);
          if (!ds.interfaces.has(a.interfaceId)) return;
          parts.interfaces.addIps(a.interfaceId, ips);
          parts.subnets.adjust(ds.interfaces.get(a.interfaceId)?.subnetId, ips.length);
          core.log.info({ interfaceId: a.interfaceId, ips: ips.length }, 'assigned IPs');
        };
      case 'create':
        return async () => {
          const info = await parts.intents.run({ kind: 'create', subnetId: a.subnetId }, () =>
            provider.createInterface({
              subnetId: a.subnetId,
              securityGroupIds: core.securityGroups,
              secondaryIpCount: a.ipCount,
              tags: { [OWNER_TAGS.clusterName]: core.opts.clusterName },
            }),
          );
          parts.drift.noteRecent(recent.createdInterfaces, [info.id]);
          parts.drift.noteRecent(recent.assignedIps, info.secondaryIps);
          parts.interfaces.add(info, false);
          parts.subnets.adjust(a.subnetId, info.secondaryIps.length + 1);
          await parts.interfaces.runNodeSetup();
        };
      case 'unassign': {
        const taken = ds.reserveForRelease(a.interfaceId, a.ips);
        return async () => {
          if (taken.length === 0) return;
          const give = core.opts.podRoutes ? await this.unclaimed(a.interfaceId, taken) : taken;
          if (give.length === 0) return;
          // On failure the outcome may be unknown: the IPs stay out of the pool ('releasing') and
          // the unassign is sent again until it succeeds (intents.ts).
          await parts.intents.run({ kind: 'unassign', interfaceId: a.interfaceId, ips: give }, () =>
            provider.unassignIps(a.interfaceId, give),
          );
          parts.drift.noteRecent(recent.unassignedIps, give);
          ds.dropIps(give);
          parts.subnets.adjust(ds.interfaces.get(a.interfaceId)?.subnetId, -give.length);
          core.log.info({ interfaceId: a.interfaceId, ips: give }, 'gave IPs back');
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
        const undrain = () => {
          ds.unreserve(taken);
          const cur = ds.interfaces.get(a.interfaceId);
          if (cur) ds.upsertInterface({ ...cur, draining: false });
        };
        return async () => {
          // Last word before the interface and every IP on it go: no pod's host route may use one.
          if (core.opts.podRoutes) {
            const give = await this.unclaimed(a.interfaceId, taken).catch((err: unknown) => {
              undrain();
              throw err;
            });
            if (give.length < taken.length) {
              undrain();
              return;
            }
          }
          // On failure (a detach may have happened) it stays drained and the delete is retried
          // (intents.ts; undrained if the interface is still attached after a few tries).
          await parts.intents.run({ kind: 'delete', interfaceId: a.interfaceId }, () =>
            provider.deleteInterface(a.interfaceId),
          );
          parts.drift.noteRecent(recent.deletedInterfaces, [a.interfaceId]);
          parts.drift.noteRecent(recent.unassignedIps, taken);
          parts.interfaces.forget(a.interfaceId);
          parts.subnets.adjust(rec.subnetId, -(taken.length + 1));
          core.log.info({ interfaceId: a.interfaceId }, 'deleted interface');
          await parts.interfaces.runNodeSetup();
        };
      }
    }
  }

  /**
   * Of IPs reserved to go back to the cloud, those no pod's host route claims. Claimed ones are
   * put back and held for their pod; when the routes cannot be read, none goes (throws: backoff).
   */
  private async unclaimed(interfaceId: string, taken: string[]): Promise<string[]> {
    const { core } = this;
    const ds = core.mustDs();
    const claimed = await core.parts.routes.claimedAmong(taken);
    if (claimed === null) {
      ds.unreserve(taken);
      throw new Error(
        `not giving back IPs of ${interfaceId}: the pods' host routes cannot be read to tell whether a pod still uses one`,
      );
    }
    if (claimed.length === 0) return taken;
    ds.unreserve(claimed);
    core.parts.routes.holdRouted(claimed);
    core.log.error(
      { interfaceId, ips: claimed },
      "a running pod's host route uses these IPs, which the pool had as free: held for their pods, not given back",
    );
    return taken.filter((ip) => !claimed.includes(ip));
  }

  private onActionError(a: PoolAction, err: unknown): 'try-another-subnet' | 'backoff' {
    const { core } = this;
    const now = core.clock.now();
    core.log.warn({ action: a, err: errText(err) }, 'pool action failed');
    if (isProviderError(err) && err.code === 'NOT_FOUND' && a.kind !== 'create') {
      // An interface or IP we thought we had is gone: the cloud changed behind our back.
      core.parts.drift.want(`${a.kind} on ${a.interfaceId}: ${errText(err)}`);
      this.rerun = true;
    }
    if (err instanceof SubnetExhaustedError || (isProviderError(err) && err.code === 'SUBNET_EXHAUSTED')) {
      const subnetId =
        a.kind === 'create'
          ? a.subnetId
          : core.mustDs().interfaces.get(a.kind === 'assign' ? a.interfaceId : '')?.subnetId;
      core.parts.subnets.markFull(subnetId, now);
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

  /** Whether the cloud is throttling us right now. */
  throttled(now: number): boolean {
    return this.cloudBackoff?.reason === 'throttled' && this.cloudBackoff.until > now;
  }

  /** A cloud error may have been drift itself (NotFound on a gone interface): plan afresh. */
  clearCloudError(): void {
    if (this.cloudBackoff?.reason === 'cloud-error') {
      this.cloudBackoff = null;
      this.errorStreak = 0;
    }
  }

  /** Wake up exactly when something becomes due (cooldown end, shrink delay, backoff end). */
  private scheduleWake(): void {
    const { core } = this;
    if (core.state !== 'ready') return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    const now = core.clock.now();
    const { setupPending, setupError } = core.parts.interfaces;
    const candidates = [
      // A hot-plugged interface shows up in the node within seconds and its IPs wait on it (node
      // setup): look again soon, not at the next reconcile tick.
      setupPending.size > 0 && setupError !== null ? now + SETUP_RETRY_MS : null,
      core.mustDs().nextCoolingEnd(),
      this.excessSince === null ? null : this.excessSince + core.opts.pool.shrinkDelayMs,
      this.cloudBackoff?.until ?? null,
      core.parts.drift.nextDue(),
      core.parts.intents.nextDue(),
      ...core.parts.subnets.backoffEnds(),
    ].filter((t): t is number => t !== null && t > now);
    if (candidates.length === 0) return;
    const at = Math.min(...candidates);
    const wait = Math.min(core.opts.pool.reconcileIntervalMs, Math.max(5, at - now + 5));
    this.wakeTimer = setTimeout(() => this.kick(), wait);
    this.wakeTimer.unref();
  }
}

/**
 * DISABLE_NETWORK_RESOURCE_PROVISIONING: the engine's plan with no cloud action, and a no-IP reason
 * that says why the pool cannot grow.
 */
export function withoutProvisioning(p: Plan): Plan {
  if (p.actions.length === 0 && p.noIp === null) return p;
  return {
    ...p,
    actions: [],
    why: `${p.why}; DISABLE_NETWORK_RESOURCE_PROVISIONING=true: no cloud change`,
    noIp:
      p.noIp === null
        ? null
        : {
            reason: 'provisioning-disabled',
            message: `every IP already attached to this node is in use, and DISABLE_NETWORK_RESOURCE_PROVISIONING=true: the daemon attaches nothing; add secondary IPs or interfaces to the node out of band (picked up by the drift resync) or set it to false`,
          },
  };
}
