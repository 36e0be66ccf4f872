// Is the instance that created an interface still around? Two sources, combined conservatively:
// the cloud (when the provider can tell) and the Kubernetes Nodes (spec.providerID names the
// instance). An instance counts as gone only when every available source says so.
import type { CoreV1Api } from '@kubernetes/client-node';

export interface InstanceLiveness {
  /** instance id -> alive; ids missing from the map are "unknown" (and so never deleted). */
  check(instanceIds: string[]): Promise<Map<string, boolean>>;
}

/** What the cloud side must offer; the providers implement it as CloudProvider.instancesExist. */
export interface CloudInstanceLookup {
  instancesExist(instanceIds: string[]): Promise<Map<string, boolean>>;
}

export class CloudLiveness implements InstanceLiveness {
  private readonly cloud: CloudInstanceLookup;
  constructor(cloud: CloudInstanceLookup) {
    this.cloud = cloud;
  }
  check(instanceIds: string[]): Promise<Map<string, boolean>> {
    return this.cloud.instancesExist(instanceIds);
  }
}

/** Alive when a Node's providerID ends with the instance id (aws:///zone/i-..., azure:///.../name). */
export class KubernetesNodeLiveness implements InstanceLiveness {
  private readonly core: CoreV1Api;
  constructor(core: CoreV1Api) {
    this.core = core;
  }
  async check(instanceIds: string[]): Promise<Map<string, boolean>> {
    const nodes = await this.core.listNode();
    const providerIds = nodes.items.map((n) => n.spec?.providerID ?? '').filter((p) => p.length > 0);
    const out = new Map<string, boolean>();
    for (const id of instanceIds) {
      out.set(
        id,
        providerIds.some((p) => p === id || p.endsWith(`/${id}`)),
      );
    }
    return out;
  }
}

/** Alive if any source says alive; gone only if every source answered "gone". */
export class CombinedLiveness implements InstanceLiveness {
  private readonly sources: InstanceLiveness[];
  constructor(sources: InstanceLiveness[]) {
    this.sources = sources;
  }
  async check(instanceIds: string[]): Promise<Map<string, boolean>> {
    const answers = await Promise.all(this.sources.map((s) => s.check(instanceIds)));
    const out = new Map<string, boolean>();
    for (const id of instanceIds) {
      const votes = answers.map((a) => a.get(id));
      if (votes.some((v) => v === true)) out.set(id, true);
      else if (votes.length > 0 && votes.every((v) => v === false)) out.set(id, false);
    }
    return out;
  }
}
