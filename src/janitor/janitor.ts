// The leaked-interface janitor: while it holds the Lease, it periodically asks the cloud for
// interfaces tagged for this cluster that nothing is attached to, judges them (leak-policy.ts)
// and deletes those that are old enough and whose instance is gone. Each deletion is preceded by
// a fresh look at that interface and a leadership check, so an interface attached meanwhile, or a
// lease lost mid-sweep, stops it. The delete itself never detaches (onlyIfDetached): an interface
// attached between the re-check and the delete is refused by the cloud and skipped.
import type { Logger } from '../lib/log.ts';
import { isProviderError } from '../providers/errors.ts';
import type { DeleteInterfaceOptions, LeakedInterface, LeakQuery } from '../providers/types.ts';
import type { InstanceLiveness } from './instance-liveness.ts';
import { judgeLeak, judgeLeaks, type LeakVerdict } from './leak-policy.ts';

/** The part of CloudProvider the janitor uses. */
export interface JanitorCloud {
  findLeakedInterfaces(query: LeakQuery): Promise<LeakedInterface[]>;
  deleteInterface(interfaceId: string, options?: DeleteInterfaceOptions): Promise<void>;
}

export interface JanitorOptions {
  cloud: JanitorCloud;
  liveness: InstanceLiveness;
  leadership: { isLeader(): boolean };
  clusterName: string;
  graceMs: number;
  dryRun: boolean;
  logger: Logger;
  now?: () => number;
}

export interface SweepReport {
  skipped: string | null;
  deleted: string[];
  kept: { id: string; reason: string }[];
  failed: { id: string; error: string }[];
}

export class Janitor {
  private readonly opts: JanitorOptions;
  private readonly now: () => number;

  constructor(opts: JanitorOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  async sweep(): Promise<SweepReport> {
    const { cloud, liveness, leadership, clusterName, graceMs, logger } = this.opts;
    const report: SweepReport = { skipped: null, deleted: [], kept: [], failed: [] };
    if (!leadership.isLeader()) {
      report.skipped = 'not the lease holder';
      return report;
    }
    const query: LeakQuery = { clusterName, olderThanMs: graceMs };
    const candidates = await cloud.findLeakedInterfaces(query);
    const ids = [...new Set(candidates.map((c) => c.instanceId).filter((i): i is string => !!i))];
    const instanceAlive = ids.length > 0 ? await liveness.check(ids) : new Map<string, boolean>();
    const verdicts = judgeLeaks({ clusterName, now: this.now(), graceMs, candidates, instanceAlive });
    for (const v of verdicts.filter((x) => !x.delete)) report.kept.push({ id: v.iface.id, reason: v.reason });
    for (const v of verdicts.filter((x) => x.delete)) {
      if (!leadership.isLeader()) {
        report.skipped = 'lost the lease during the sweep';
        break;
      }
      const fresh = await this.recheck(v, instanceAlive);
      if (!fresh.delete) {
        report.kept.push({ id: v.iface.id, reason: `re-check: ${fresh.reason}` });
        continue;
      }
      if (this.opts.dryRun) {
        logger.info({ interfaceId: v.iface.id, reason: v.reason }, 'dry run: would delete leaked interface');
        report.kept.push({ id: v.iface.id, reason: 'dry run' });
        continue;
      }
      try {
        await cloud.deleteInterface(v.iface.id, { onlyIfDetached: true });
        report.deleted.push(v.iface.id);
        logger.info({ interfaceId: v.iface.id, reason: v.reason }, 'deleted leaked interface');
      } catch (err) {
        if (isProviderError(err) && err.code === 'IN_USE') {
          // Attached after the re-check: it is in use now, not leaked. Nothing was changed.
          report.kept.push({ id: v.iface.id, reason: `in use at delete time: ${err.message}` });
          logger.info({ interfaceId: v.iface.id }, 'leaked interface was attached meanwhile; skipped');
          continue;
        }
        report.failed.push({ id: v.iface.id, error: String(err) });
        logger.warn({ interfaceId: v.iface.id, err: String(err) }, 'could not delete leaked interface');
      }
    }
    return report;
  }

  /** Look again right before deleting: it must still be listed, and still judged deletable. */
  private async recheck(v: LeakVerdict, instanceAlive: ReadonlyMap<string, boolean>): Promise<LeakVerdict> {
    const { cloud, clusterName, graceMs } = this.opts;
    const again = (await cloud.findLeakedInterfaces({ clusterName, olderThanMs: graceMs })).find(
      (c) => c.id === v.iface.id,
    );
    if (!again) return { iface: v.iface, delete: false, reason: 'no longer listed as leaked' };
    return judgeLeak(again, { clusterName, now: this.now(), graceMs, instanceAlive });
  }
}
