// The request path: allocate / release / get / list for the socket API. One IP is handed to one
// key, the allocation is on disk before it is answered, and a request that finds no free IP waits
// (first come, first served) for the pool loop to grow the pool, up to allocateWaitMs.

import { hostVethName } from '../../netutils/names.ts';
import type {
  AllocateRequest,
  Allocation,
  AllocationRecord,
  AttachmentKey,
  ReleaseRequest,
  ReleaseResponse,
} from '../api-types.ts';
import { keyOf, type StoredAllocation } from '../datastore.ts';
import { KeyedMutex } from '../key-lock.ts';
import type { NoIpInfo } from '../pool-engine.ts';
import { type DaemonCore, errText, NoIpError, NotReadyError, podOf } from './core.ts';

interface Waiter {
  req: AllocateRequest;
  resolve(a: StoredAllocation): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

const HARD_LIMITS = new Set<string>(['instance-limit', 'max-eni', 'max-pods']);
/** Releases within this share one pool loop run (none waits for it; see nudgePool). */
export const RELEASE_KICK_MS = 10;

export class Requests {
  private readonly core: DaemonCore;
  /** Serializes work per attachment key (an ADD and a DEL of one container never interleave). */
  readonly locks = new KeyedMutex();
  private waiters: Waiter[] = [];
  /** A pool check asked for by the requests of this event-loop turn (one plan for the batch). */
  private poolNudge: 'if-low' | 'kick' | null = null;
  /** The pool loop run for the releases of the last RELEASE_KICK_MS (see nudgePool). */
  private releaseKick: NodeJS.Timeout | null = null;

  constructor(core: DaemonCore) {
    this.core = core;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  async allocate(req: AllocateRequest): Promise<Allocation> {
    this.assertReady();
    const { core } = this;
    const started = performance.now();
    const k = keyOf(req);
    return this.locks.run(k, async () => {
      const ds = core.mustDs();
      const existing = ds.get(req);
      if (existing) return stripRecord(ds.toRecord(existing));
      this.assertReady();
      let a = ds.assign(req, core.clock.now());
      if (!a) {
        // A hard limit with nothing cooling will not change by waiting: say so at once.
        const p = core.parts.pool.currentPlan();
        const hard = p.noIp && HARD_LIMITS.has(p.noIp.reason) && p.actions.length === 0;
        if (hard && ds.coolingEntries().length === 0) throw this.noIpError(req);
        // More waiting requests than the node can ever hold pods are not real pods: refuse at once
        // (each waiter holds a connection and its demand drives the pool's growth).
        const cap = core.opts.maxWaiters ?? p.maxPods;
        if (this.waiters.length >= cap) {
          core.log.warn(
            { key: k, waiting: this.waiters.length, cap },
            'too many allocations waiting; refused',
          );
          throw new NoIpError({
            reason: 'pool-growing',
            message: `${this.waiters.length} allocations are already waiting for an IP (the most this node can hold is ${cap}); retry in a few seconds`,
          });
        }
        a = await this.waitForIp(req);
      }
      try {
        await core.parts.checkpoint.persist();
      } catch (err) {
        // Not on disk: not allocated. Put it back (no cooldown: nobody used it).
        ds.release(req, core.clock.now() - core.opts.pool.cooldownMs);
        ds.tick(core.clock.now());
        core.log.error({ err: errText(err), key: k }, 'checkpoint write failed; allocation rolled back');
        throw err;
      }
      const rec = ds.toRecord(a);
      // Per request at debug only: at info, thousands of requests a second would each write a line.
      core.log.debug({ key: k, ip: rec.ip, interfaceId: rec.interfaceId, pod: podOf(req) }, 'allocated');
      core.emit('allocated', { ...rec, durationMs: performance.now() - started });
      core.parts.pool.noteAllocation();
      this.nudgePool('if-low');
      return stripRecord(rec);
    });
  }

  /** `key.ip`: only while the key holds that IP (asked under the key's lock). */
  async release(key: ReleaseRequest): Promise<ReleaseResponse> {
    this.assertNotStopped();
    const { core } = this;
    const k = keyOf(key);
    return this.locks.run(k, async () => {
      const ds = core.mustDs();
      // A pod recovered from its host route is known by its veth, which its own key names.
      const stored = ds.get(key) ?? this.recoveredFor(key);
      if (!stored || (key.ip !== undefined && stored.ip !== key.ip)) return { released: null };
      const rec = ds.toRecord(stored);
      ds.release(stored, core.clock.now());
      await core.parts.checkpoint.persist();
      core.log.debug({ key: k, ip: rec.ip }, 'released');
      core.emit('released', rec);
      this.nudgePool('kick');
      return { released: rec.ip };
    });
  }

  /**
   * Release `key` only if `mayGo` agrees, asked under the key's lock (no ADD or DEL of the same
   * attachment interleaves). Answers what was released, or why not.
   */
  async releaseIf(
    key: AttachmentKey,
    mayGo: (a: StoredAllocation) => Promise<boolean>,
  ): Promise<ReleaseResponse & { kept?: boolean }> {
    this.assertNotStopped();
    const { core } = this;
    return this.locks.run(keyOf(key), async () => {
      const ds = core.mustDs();
      const stored = ds.get(key);
      if (!stored) return { released: null };
      if (!(await mayGo(stored))) return { released: null, kept: true };
      // Not under the lock twice: release() takes it again, so release inline.
      const rec = ds.toRecord(stored);
      if (!ds.release(stored, core.clock.now())) return { released: null };
      await core.parts.checkpoint.persist();
      core.log.debug({ key: keyOf(key), ip: rec.ip }, 'released');
      core.emit('released', rec);
      this.nudgePool('kick');
      return { released: rec.ip };
    });
  }

  /**
   * After an allocation (plan, and run the loop if the pool wants to grow) or a release (run the
   * loop): once per event-loop turn for all the requests answered in it, not once per request.
   */
  private nudgePool(kind: 'if-low' | 'kick'): void {
    if (kind === 'kick' && this.waiters.length === 0) {
      // A release nobody waits for changes no plan at once (the IP cools down, or is free for
      // the next assign without the loop): one loop for the releases of the next few ms, not one
      // per event-loop turn of them.
      this.releaseKick ??= setTimeout(() => {
        this.releaseKick = null;
        if (this.core.state === 'ready') this.core.parts.pool.kick();
      }, RELEASE_KICK_MS).unref();
      return;
    }
    const scheduled = this.poolNudge !== null;
    if (kind === 'kick' || !scheduled) this.poolNudge = kind;
    if (scheduled) return;
    setImmediate(() => {
      const k = this.poolNudge;
      this.poolNudge = null;
      if (this.core.state !== 'ready') return;
      if (k === 'kick') this.core.parts.pool.kick();
      else this.core.parts.pool.kickIfLow();
    });
  }

  private recoveredFor(key: AttachmentKey): StoredAllocation | undefined {
    const veth = hostVethName(key.containerId, key.ifName, this.core.opts.vethPrefix);
    return this.core
      .mustDs()
      .recovered()
      .find((a) => a.recoveredFrom === veth);
  }

  get(key: AttachmentKey): Allocation | null {
    const ds = this.core.mustDs();
    const a = ds.get(key);
    return a ? stripRecord(ds.toRecord(a)) : null;
  }

  list(): AllocationRecord[] {
    const ds = this.core.mustDs();
    return ds.list().map((a) => ds.toRecord(a));
  }

  assertReady(): void {
    const { state } = this.core;
    if (state === 'stopping' || state === 'stopped') {
      throw new NoIpError({ reason: 'shutting-down', message: 'the daemon is shutting down; retry shortly' });
    }
    if (state !== 'ready') throw new NotReadyError(this.core.notReadyReason);
  }

  assertNotStopped(): void {
    if (this.core.state === 'stopped') throw new NotReadyError('daemon is stopped');
    if (!this.core.ds) throw new NotReadyError(this.core.notReadyReason);
  }

  private waitForIp(req: AllocateRequest): Promise<StoredAllocation> {
    const waitMs = this.core.opts.pool.allocateWaitMs;
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
      this.core.parts.pool.kick();
    });
  }

  private noIpError(req: AttachmentKey): NoIpError {
    const info: NoIpInfo = this.core.parts.pool.currentPlan().noIp ?? {
      reason: 'pool-growing',
      message: 'no free IP yet; the pool is growing, retry in a few seconds',
    };
    this.core.log.warn({ key: keyOf(req), reason: info.reason }, info.message);
    this.core.emit('no-ip', { ...info, containerId: req.containerId, ifName: req.ifName });
    return new NoIpError(info);
  }

  /** Hand free IPs to waiting requests, first come first served. */
  serveWaiters(): void {
    const ds = this.core.mustDs();
    while (this.waiters.length > 0) {
      const w = this.waiters[0] as Waiter;
      const a = ds.assign(w.req, this.core.clock.now());
      if (!a) return;
      this.waiters.shift();
      clearTimeout(w.timer);
      w.resolve(a);
    }
  }

  /** Shutdown: every waiting request is told to retry. */
  rejectWaiters(): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(
        new NoIpError({ reason: 'shutting-down', message: 'the daemon is shutting down; retry shortly' }),
      );
    }
  }
}

function stripRecord(rec: AllocationRecord): Allocation {
  const { assignedAt: _a, netns: _n, recoveredFrom, podUid: _u, network: _w, ...rest } = rec;
  // An adopted pod (takeover/) keeps the host veth another plugin made: DEL must remove that one.
  return recoveredFrom !== undefined ? { ...rest, hostVeth: recoveredFrom } : rest;
}
