// Leader election over a coordination.k8s.io/v1 Lease with optimistic concurrency: every write
// carries the resourceVersion we read, so when two replicas race only one write succeeds (the
// other gets 409 Conflict and stays a follower). A leader stops acting as one when it could not
// renew within renewDeadline, which is shorter than the lease duration others wait for.
import { EventEmitter } from 'node:events';
import { type CoordinationV1Api, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.ts';
import { decideLease, type LeaseRecord, type Observation, observe } from './lease-policy.ts';

export interface LeaseElectorOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds: number;
  /** Must be below the lease duration. */
  renewDeadlineMs: number;
  retryPeriodMs: number;
  logger: Logger;
  now?: () => number;
}

/** Events: 'started-leading', 'stopped-leading'. */
export class LeaseElector extends EventEmitter {
  private readonly opts: LeaseElectorOptions;
  private readonly now: () => number;
  private observation: Observation | null = null;
  private leader = false;
  private lastRenewAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<boolean> | undefined;

  constructor(opts: LeaseElectorOptions) {
    super();
    if (opts.renewDeadlineMs >= opts.leaseDurationSeconds * 1000) {
      throw new Error('lease renew deadline must be shorter than the lease duration');
    }
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  /** True only while our last successful renewal is fresher than the renew deadline. */
  isLeader(): boolean {
    return this.leader && this.now() - this.lastRenewAt < this.opts.renewDeadlineMs;
  }

  start(): void {
    const loop = () => {
      void this.tryOnce().finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(loop, this.opts.retryPeriodMs).unref();
      });
    };
    this.timer = setTimeout(loop, 0).unref();
  }

  /** Stops the loop and, when leading, hands the lease back so a successor need not wait. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
    if (!this.leader) return;
    try {
      const lease = await this.opts.api.readNamespacedLease({
        name: this.opts.name,
        namespace: this.opts.namespace,
      });
      if (lease.spec?.holderIdentity === this.opts.identity) {
        lease.spec = {
          ...lease.spec,
          holderIdentity: undefined,
          leaseDurationSeconds: 1,
          renewTime: micro(this.now()),
        };
        await this.opts.api.replaceNamespacedLease({
          name: this.opts.name,
          namespace: this.opts.namespace,
          body: lease,
        });
      }
    } catch (err) {
      this.opts.logger.warn(
        { err: String(err) },
        'could not release the lease; successors wait for it to expire',
      );
    }
    this.setLeader(false);
  }

  /** One election round; resolves to whether we lead afterwards. Rounds never overlap. */
  tryOnce(): Promise<boolean> {
    if (!this.inFlight) {
      this.inFlight = this.round().finally(() => {
        this.inFlight = undefined;
      });
    }
    return this.inFlight;
  }

  private async round(): Promise<boolean> {
    const { api, namespace, name, identity, logger } = this.opts;
    try {
      let lease: V1Lease | null = null;
      try {
        lease = await api.readNamespacedLease({ name, namespace });
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
      }
      const now = this.now();
      this.observation = lease ? observe(this.observation, toRecord(lease), now) : null;
      const action = decideLease(identity, this.observation, now);
      if (action.kind === 'wait') {
        this.setLeader(false);
        return false;
      }
      const spec = {
        holderIdentity: identity,
        leaseDurationSeconds: this.opts.leaseDurationSeconds,
        acquireTime: action.kind === 'renew' ? lease?.spec?.acquireTime : micro(now),
        renewTime: micro(now),
        leaseTransitions: (lease?.spec?.leaseTransitions ?? 0) + (action.kind === 'takeover' ? 1 : 0),
      };
      let written: V1Lease;
      if (action.kind === 'create') {
        written = await api.createNamespacedLease({
          namespace,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec },
        });
      } else {
        written = await api.replaceNamespacedLease({
          name,
          namespace,
          body: { ...lease!, spec },
        });
        if (action.kind === 'takeover') {
          logger.info({ previousHolder: action.previousHolder }, 'took over the janitor lease');
        }
      }
      this.lastRenewAt = now;
      this.observation = { record: toRecord(written), observedAt: now };
      this.setLeader(true);
      return true;
    } catch (err) {
      const status = statusOf(err);
      if (status === 409) {
        // Someone else wrote first: we are not the leader, whatever we were.
        logger.debug('lease write lost a race (409 Conflict)');
        this.setLeader(false);
      } else {
        logger.warn({ err: String(err) }, 'lease round failed');
        if (!this.isLeader()) this.setLeader(false);
      }
      return this.isLeader();
    }
  }

  private setLeader(value: boolean): void {
    if (value === this.leader) return;
    this.leader = value;
    this.emit(value ? 'started-leading' : 'stopped-leading');
  }
}

function micro(ms: number): V1MicroTime {
  return new V1MicroTime(ms);
}

function toRecord(lease: V1Lease): LeaseRecord {
  const renew = lease.spec?.renewTime as unknown;
  return {
    holderIdentity: lease.spec?.holderIdentity || null,
    leaseDurationSeconds: lease.spec?.leaseDurationSeconds ?? 15,
    renewTime: renew instanceof Date ? renew.toISOString() : ((renew as string | undefined) ?? null),
    leaseTransitions: lease.spec?.leaseTransitions ?? 0,
  };
}

export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}
