// The node's interfaces as the pool sees them: which are ours, which lend IPs to the pool, which may
// be deleted, and node setup (an interface's IPs are handed out only once setup has run for it).

import type { ForeignOwner, InterfaceInfo } from '../../providers/types.ts';
import { OWNER_TAGS } from '../../providers/types.ts';
import type { InterfaceRecord } from '../datastore.ts';
import { type DaemonCore, errText } from './core.ts';

/** The AWS VPC CNI's opt-out tag: an interface carrying it (value "true") is never managed. */
export const NO_MANAGE_TAG = 'node.k8s.amazonaws.com/no_manage';

export class NodeInterfaces {
  private readonly core: DaemonCore;
  private readonly tags = new Map<string, Record<string, string>>();
  /** Interfaces whose IPs wait for node setup to succeed. */
  readonly setupPending = new Set<string>();
  setupError: string | null = null;

  constructor(core: DaemonCore) {
    this.core = core;
  }

  tagsOf(id: string): Record<string, string> {
    return this.tags.get(id) ?? {};
  }

  /**
   * Created by vpc-ipam for this cluster (and, when tagged with one, for this instance), or by
   * aws-node for this instance and cluster when taking the node over. Only such interfaces lend IPs
   * to the pool besides the primary, and only they are ever deleted: another cluster's interface
   * that carries our tags is left alone.
   */
  isOurs(i: { tags: Record<string, string>; foreignOwner?: ForeignOwner }): boolean {
    const t = i.tags;
    const instance = t[OWNER_TAGS.instanceId];
    return (
      (t[OWNER_TAGS.managedBy] === 'vpc-ipam' &&
        t[OWNER_TAGS.clusterName] === this.core.opts.clusterName &&
        (instance === undefined || instance === this.core.node?.instanceId)) ||
      this.adopts(i.foreignOwner)
    );
  }

  /** An ENI aws-node created for this very instance and cluster, taken over with the node. */
  private adopts(owner: ForeignOwner | undefined): boolean {
    return (
      this.core.opts.takeover?.adoptInterfaces === true &&
      owner?.tool === 'aws-vpc-cni' &&
      owner.instanceId === this.core.node?.instanceId &&
      owner.clusterName === this.core.opts.clusterName
    );
  }

  /**
   * The pool tracks this interface's secondary IPs (the primary, or ours), whatever its subnet.
   * Without provisioning (DISABLE_NETWORK_RESOURCE_PROVISIONING) every attached interface counts,
   * as in the AWS VPC CNI, unless tagged node.k8s.amazonaws.com/no_manage=true.
   */
  tracksIps(i: { deviceIndex: number; tags: Record<string, string>; foreignOwner?: ForeignOwner }): boolean {
    if (this.core.opts.pool.noProvisioning) return i.tags[NO_MANAGE_TAG] !== 'true';
    return i.deviceIndex === 0 || this.isOurs(i);
  }

  /** A pod subnet; without provisioning, any subnet (nothing is created anywhere). */
  private inPodSubnet(subnetId: string): boolean {
    return this.core.opts.pool.noProvisioning === true || this.core.parts.subnets.has(subnetId);
  }

  /** The pool hands out this interface's secondary IPs: a pod subnet, and ours or the primary. */
  lendsIps(i: {
    deviceIndex: number;
    subnetId: string;
    tags: Record<string, string>;
    foreignOwner?: ForeignOwner;
  }): boolean {
    return this.tracksIps(i) && this.inPodSubnet(i.subnetId);
  }

  needsSetup(deviceIndex: number): boolean {
    return this.core.opts.nodeSetup !== undefined && deviceIndex !== 0;
  }

  /** Record an interface; `initial` ones were attached before we started (setup runs once for all). */
  add(i: InterfaceInfo, initial: boolean): void {
    const ds = this.core.mustDs();
    const podSubnet = this.inPodSubnet(i.subnetId);
    const managed = this.tracksIps(i);
    const needsSetup = this.needsSetup(i.deviceIndex);
    // Ours but no longer in a pod subnet: its pods keep their IPs (tracked, so the checkpoint and
    // the host routes can hold them); it drains and is deleted once the last one is gone.
    const retired = managed && !podSubnet;
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
      ...(retired ? { retired: true } : {}),
    };
    ds.upsertInterface(rec);
    this.tags.set(i.id, i.tags);
    // Interfaces we do not manage take a slot but lend no IPs to the pool.
    if (managed) this.addIps(i.id, i.secondaryIps);
    if (retired && i.secondaryIps.length > 0) {
      this.core.log.warn(
        { interfaceId: i.id, subnetId: i.subnetId, ips: i.secondaryIps.length },
        'interface is outside the pod subnets: draining (its pods keep their IPs, no new pod gets one; deleted once the last is gone)',
      );
    }
    if (needsSetup && managed && podSubnet) this.setupPending.add(i.id);
    if (!initial)
      this.core.log.info(
        { interfaceId: i.id, deviceIndex: i.deviceIndex, subnetId: i.subnetId },
        'interface added',
      );
  }

  /** New IPs on an interface (a grow, a new interface); routed ones are held for their pod. */
  addIps(interfaceId: string, ips: string[]): void {
    const { moved, skipped } = this.core.mustDs().addIps(interfaceId, ips);
    this.core.parts.routes.holdRouted(ips);
    if (moved.length > 0) {
      this.core.log.warn(
        { interfaceId, ips: moved },
        'the cloud moved these IPs to this interface (drift); moved in the pool',
      );
    }
    if (skipped.length > 0) {
      this.core.log.error(
        { interfaceId, ips: skipped },
        'the cloud put IPs on this interface that are still held on another one (drift): pods holding them lost their address; not handed out until they are released',
      );
    }
  }

  /** Drop an interface from the pool (deleted by us, or gone with no pod on it). */
  forget(id: string): void {
    this.core.mustDs().removeInterface(id);
    this.tags.delete(id);
    this.setupPending.delete(id);
  }

  /** Run node setup; on success the interfaces waiting for it become usable. */
  async runNodeSetup(): Promise<boolean> {
    const { core } = this;
    const hook = core.opts.nodeSetup;
    if (!hook || !core.node) return true;
    try {
      await hook.reconcile(core.node, this.infos());
    } catch (err) {
      this.setupError = errText(err);
      core.log.error(
        { err: this.setupError },
        'node setup failed; IPs of new interfaces stay unused until it succeeds',
      );
      return false;
    }
    this.setupError = null;
    const ds = core.mustDs();
    for (const id of this.setupPending) {
      const rec = ds.interfaces.get(id);
      if (rec) ds.upsertInterface({ ...rec, usable: true });
    }
    this.setupPending.clear();
    return true;
  }

  /** The interfaces as the provider shapes them, with the IPs the pool holds. */
  infos(): InterfaceInfo[] {
    const ds = this.core.mustDs();
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
        tags: this.tagsOf(r.id),
      }));
  }
}
