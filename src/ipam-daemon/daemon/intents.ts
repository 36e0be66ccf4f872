// Cloud changes in flight, made durable before they are sent. A daemon killed (kill -9, OOM, node
// reboot) while a mutating call is in flight does not know whether, or when, the cloud applies it:
// EC2 may apply an UnassignPrivateIpAddresses after the restarted daemon has listed the ENI, and the
// daemon would hand a pod an address that leaves the node moments later. So each call is written to
// the checkpoint first (an intent), removed once its outcome is known, and a restart finishes what
// it finds:
//   unassign  its IPs stay out of the pool ('releasing') and the (idempotent) unassign is sent again
//             until the cloud confirms they are gone;
//   delete    the interface stays drained and the delete (detach + delete) is sent again;
//   assign    the addresses may appear late: the interfaces are re-listed for a while so they are
//             adopted into the pool, not leaked;
//   create    the interface may appear late, attached (adopted by those listings) or detached.
// And at every start (then again while a create or delete may still land) the node's own detached
// interfaces are deleted: tagged with this cluster AND this instance, created by vpc-ipam, not
// attached anywhere. A daemon killed between detaching and deleting leaves exactly that; another
// node's or another cluster's interface never matches.
// An unassign or delete that fails in a running daemon stays pending the same way (its outcome
// may be unknown), and is retried here.

import { randomBytes } from 'node:crypto';
import { isProviderError } from '../../providers/errors.ts';
import type { CheckpointIntent } from '../checkpoint.ts';
import { type DaemonCore, errText } from './core.ts';

export type CloudIntent =
  | { kind: 'unassign'; interfaceId: string; ips: string[] }
  | { kind: 'assign'; interfaceId: string }
  | { kind: 'create'; subnetId: string }
  | { kind: 'delete'; interfaceId: string };

/** After a restart, how long an assign or create the dead daemon sent may still land. */
export const LATE_LANDING_MS = 30_000;
/** Least time between two tries of one pending intent, and between two late-landing checks. */
export const INTENT_RETRY_MS = 3_000;
/** A delete of an interface still attached is given up after this many failed tries (it is undrained). */
export const DELETE_TRIES = 5;

const notFound = (err: unknown) => isProviderError(err) && err.code === 'NOT_FOUND';
const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** The intent a checkpoint holds, or null when it is not one this version understands. */
export function parseIntent(raw: CheckpointIntent): CloudIntent | null {
  const r = raw as Record<string, unknown>;
  switch (r.kind) {
    case 'unassign':
      return str(r.interfaceId) && Array.isArray(r.ips) && r.ips.every(str)
        ? { kind: 'unassign', interfaceId: r.interfaceId, ips: r.ips as string[] }
        : null;
    case 'assign':
    case 'delete':
      return str(r.interfaceId) ? { kind: r.kind, interfaceId: r.interfaceId } : null;
    case 'create':
      return str(r.subnetId) ? { kind: 'create', subnetId: r.subnetId } : null;
    default:
      return null;
  }
}

interface Pending {
  intent: CloudIntent;
  tries: number;
  nextTryAt: number;
}

export class CloudIntents {
  private readonly core: DaemonCore;
  private readonly pending = new Map<string, Pending>();
  /** Until when an assign or create sent before a restart (or failed) may still land. */
  private lateUntil = 0;
  private nextLateCheckAt = 0;
  /** The start-up sweep of this node's detached interfaces has run. */
  private swept = false;
  /** Detached interfaces the sweeps deleted (tests, status). */
  sweptInterfaces = 0;

  constructor(core: DaemonCore) {
    this.core = core;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** When resume() next has something to do (the pool loop wakes for it), or null. */
  nextDue(): number | null {
    const at = [...this.pending.values()].map((p) => p.nextTryAt);
    if (this.core.clock.now() < this.lateUntil) at.push(this.nextLateCheckAt);
    return at.length > 0 ? Math.min(...at) : null;
  }

  private record(id: string, intent: CloudIntent | null): Promise<void> {
    return this.core.parts.checkpoint.setIntent(id, intent as CheckpointIntent | null);
  }

  /**
   * Runs `call` with its intent durable first. On success the intent is removed (durably) before
   * the result is used. On failure an unassign or delete stays pending (retried by resume(); its
   * IPs stay out of the pool), an assign or create is dropped but the node is re-listed for a while.
   */
  async run<T>(intent: CloudIntent, call: () => Promise<T>): Promise<T> {
    const id = randomBytes(6).toString('hex');
    await this.record(id, intent);
    let result: T;
    try {
      result = await call();
    } catch (err) {
      if (intent.kind === 'unassign' || intent.kind === 'delete') {
        this.pending.set(id, { intent, tries: 1, nextTryAt: this.core.clock.now() + INTENT_RETRY_MS });
      } else {
        this.lateUntil = Math.max(this.lateUntil, this.core.clock.now() + LATE_LANDING_MS);
        await this.record(id, null);
      }
      throw err;
    }
    await this.record(id, null);
    return result;
  }

  /**
   * Start-up, after the checkpoint and the cloud listing are in the datastore and before the daemon
   * is ready: what a dead daemon left in flight is held back from the pool.
   */
  restore(): void {
    const { core } = this;
    const ds = core.mustDs();
    const now = core.clock.now();
    for (const [id, raw] of core.parts.checkpoint.intents()) {
      const intent = parseIntent(raw);
      if (!intent) {
        core.log.warn({ id, intent: raw }, 'checkpoint intent not understood; dropped');
        void this.record(id, null).catch(() => {});
        continue;
      }
      switch (intent.kind) {
        case 'unassign': {
          // Only addresses no pod holds: the pool had them reserved when the call went out.
          const held = ds.reserveForRelease(intent.interfaceId, intent.ips);
          const taken = [
            ...held,
            ...intent.ips.filter((ip) => !held.includes(ip) && ds.ipState(ip)?.state === 'releasing'),
          ];
          this.pending.set(id, { intent: { ...intent, ips: taken }, tries: 0, nextTryAt: now });
          break;
        }
        case 'delete': {
          const rec = ds.interfaces.get(intent.interfaceId);
          if (rec && ds.ipsOf(intent.interfaceId).some((s) => s.state === 'assigned')) {
            core.log.warn(
              { interfaceId: intent.interfaceId },
              'an interrupted delete names an interface pods now use; not finishing it',
            );
            void this.record(id, null).catch(() => {});
            break;
          }
          if (rec) {
            ds.upsertInterface({ ...rec, draining: true });
            ds.reserveForRelease(
              intent.interfaceId,
              ds.ipsOf(intent.interfaceId).map((s) => s.ip),
            );
          }
          this.pending.set(id, { intent, tries: 0, nextTryAt: now });
          break;
        }
        case 'assign':
        case 'create':
          this.lateUntil = Math.max(this.lateUntil, now + LATE_LANDING_MS);
          this.pending.set(id, { intent, tries: 0, nextTryAt: now + LATE_LANDING_MS });
          break;
      }
    }
    if (this.pending.size > 0) {
      core.log.warn(
        { intents: [...this.pending.values()].map((p) => p.intent) },
        'cloud changes were in flight when the daemon stopped: their IPs and interfaces are held back until finished',
      );
    }
  }

  /** Each pool round, before planning: the start-up sweep, late landings, pending intents. */
  async resume(): Promise<void> {
    const { core } = this;
    const now = core.clock.now();
    const late = now < this.lateUntil;
    if (!this.swept || (late && now >= this.nextLateCheckAt)) {
      this.swept = true;
      await this.sweepDetached();
    }
    if (late && now >= this.nextLateCheckAt) {
      this.nextLateCheckAt = now + INTENT_RETRY_MS;
      // Addresses or an attached interface that landed late are adopted by the drift repair.
      await core.parts.drift.resync('api');
    }
    for (const [id, p] of this.pending) {
      if (now < p.nextTryAt) continue;
      p.tries++;
      p.nextTryAt = now + INTENT_RETRY_MS;
      try {
        if (await this.finish(p)) {
          this.pending.delete(id);
          await this.record(id, null);
        }
      } catch (err) {
        core.log.warn(
          { intent: p.intent, tries: p.tries, err: errText(err) },
          'finishing a cloud change failed',
        );
      }
    }
  }

  /** One try at an intent; true once it is done. */
  private async finish(p: Pending): Promise<boolean> {
    const { core } = this;
    const ds = core.mustDs();
    const { intent } = p;
    switch (intent.kind) {
      case 'assign':
      case 'create':
        return true; // the late-landing window is over
      case 'unassign': {
        const ips = intent.ips.filter((ip) => ds.ipState(ip)?.state === 'releasing');
        if (ips.length > 0) {
          try {
            await core.provider.unassignIps(intent.interfaceId, ips);
          } catch (err) {
            if (!notFound(err)) throw err;
          }
          ds.dropIps(ips);
          core.parts.subnets.adjust(ds.interfaces.get(intent.interfaceId)?.subnetId, -ips.length);
          core.parts.drift.noteRecent(core.parts.drift.recent.unassignedIps, ips);
          core.log.info({ interfaceId: intent.interfaceId, ips }, 'finished an interrupted unassign');
        }
        return true;
      }
      case 'delete': {
        const rec = ds.interfaces.get(intent.interfaceId);
        try {
          // Not attached here any more: delete it only if it is attached nowhere.
          await core.provider.deleteInterface(intent.interfaceId, rec ? {} : { onlyIfDetached: true });
        } catch (err) {
          if (!notFound(err)) {
            if (rec && p.tries >= DELETE_TRIES) {
              const cur = ds.interfaces.get(intent.interfaceId);
              ds.unreserve(ds.ipsOf(intent.interfaceId).map((s) => s.ip));
              if (cur) ds.upsertInterface({ ...cur, draining: false });
              core.log.warn(
                { interfaceId: intent.interfaceId, err: errText(err) },
                'giving up an interrupted delete; the interface serves the pool again',
              );
              return true;
            }
            throw err;
          }
        }
        if (rec) {
          const ips = ds.ipsOf(intent.interfaceId).length;
          core.parts.drift.noteRecent(core.parts.drift.recent.deletedInterfaces, [intent.interfaceId]);
          core.parts.interfaces.forget(intent.interfaceId);
          core.parts.subnets.adjust(rec.subnetId, -(ips + 1));
          await core.parts.interfaces.runNodeSetup();
        }
        core.log.info({ interfaceId: intent.interfaceId }, 'finished an interrupted delete');
        return true;
      }
    }
  }

  /**
   * Deletes this node's detached interfaces: ours by every tag (vpc-ipam, this cluster, THIS
   * instance), attached nowhere. Runs inside a pool round, so no create of this daemon is between
   * its create and attach steps.
   */
  private async sweepDetached(): Promise<void> {
    const { core } = this;
    const node = core.mustNode();
    let found: Awaited<ReturnType<typeof core.provider.findLeakedInterfaces>>;
    try {
      found = await core.provider.findLeakedInterfaces({ clusterName: core.opts.clusterName });
    } catch (err) {
      this.swept = false; // try again next round
      core.log.warn({ err: errText(err) }, "cannot list this node's detached interfaces; retrying");
      return;
    }
    for (const l of found) {
      if (
        (l.createdBy ?? 'vpc-ipam') !== 'vpc-ipam' ||
        l.clusterName !== core.opts.clusterName ||
        l.instanceId !== node.instanceId
      ) {
        continue;
      }
      try {
        await core.provider.deleteInterface(l.id, { onlyIfDetached: true });
        this.sweptInterfaces++;
        core.log.warn(
          { interfaceId: l.id },
          'deleted a detached interface of this node (a daemon stopped between detaching and deleting it)',
        );
      } catch (err) {
        if (!notFound(err))
          core.log.warn({ interfaceId: l.id, err: errText(err) }, 'could not delete a detached interface');
      }
    }
  }
}
