// Custom networking: a cluster-scoped PodNetworkConfig (vpc-ipam.io/v1alpha1, in the spirit of
// AWS's ENIConfig) names the subnets and security groups for pod interfaces. A node selects one
// by label (VPC_IPAM_NETWORK_CONFIG_LABEL=<config name>), else by availability zone: the config
// named after the zone, else the one whose spec.availabilityZone is the zone.
import type { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';

export const NETWORK_CONFIG_API = {
  group: 'vpc-ipam.io',
  version: 'v1alpha1',
  plural: 'podnetworkconfigs',
} as const;
export const ZONE_LABELS = ['topology.kubernetes.io/zone', 'failure-domain.beta.kubernetes.io/zone'] as const;

export interface PodNetworkConfig {
  name: string;
  subnetIds: string[];
  securityGroupIds: string[];
  availabilityZone: string | null;
}

export type Selection =
  | { config: PodNetworkConfig; reason: string }
  | { config: null; reason: string; error: boolean };

/** Validates one object as the API returns it; null (with the reason) when it is unusable. */
export function parseNetworkConfig(obj: unknown): PodNetworkConfig | string {
  const o = obj as { metadata?: { name?: unknown }; spec?: Record<string, unknown> } | null;
  const name = o?.metadata?.name;
  if (typeof name !== 'string' || name === '') return 'a PodNetworkConfig without a name';
  const spec = o?.spec ?? {};
  const strings = (v: unknown): string[] | null =>
    Array.isArray(v) && v.every((x) => typeof x === 'string' && x.length > 0) ? (v as string[]) : null;
  const subnetIds = strings(spec.subnetIds);
  if (!subnetIds || subnetIds.length === 0)
    return `PodNetworkConfig ${name}: spec.subnetIds must list at least one subnet`;
  const sgs = spec.securityGroupIds === undefined ? [] : strings(spec.securityGroupIds);
  if (!sgs) return `PodNetworkConfig ${name}: spec.securityGroupIds must be a list of ids`;
  const az = spec.availabilityZone;
  return {
    name,
    subnetIds,
    securityGroupIds: sgs,
    availabilityZone: typeof az === 'string' && az !== '' ? az : null,
  };
}

export function selectNetworkConfig(input: {
  nodeLabels: Readonly<Record<string, string>>;
  labelKey: string;
  /** ENI_CONFIG_ANNOTATION_DEF: an annotation naming the config wins over the label. */
  nodeAnnotations?: Readonly<Record<string, string>>;
  annotationKey?: string;
  /** From the node's zone label, else the cloud's metadata. */
  zone: string | null;
  configs: PodNetworkConfig[];
}): Selection {
  const byName = new Map(input.configs.map((c) => [c.name, c]));
  const byKey: [string, string | undefined][] = [
    [
      `node annotation ${input.annotationKey}`,
      input.annotationKey && input.nodeAnnotations?.[input.annotationKey],
    ],
    [`node label ${input.labelKey}`, input.nodeLabels[input.labelKey]],
  ];
  for (const [what, wanted] of byKey) {
    if (wanted === undefined || wanted === '') continue;
    const config = byName.get(wanted);
    return config
      ? { config, reason: `${what}=${wanted}` }
      : { config: null, error: true, reason: `${what}=${wanted} names no PodNetworkConfig` };
  }
  if (!input.zone) return { config: null, error: true, reason: 'node has no config label and no zone' };
  const named = byName.get(input.zone);
  if (named) return { config: named, reason: `config named after zone ${input.zone}` };
  const inZone = input.configs
    .filter((c) => c.availabilityZone === input.zone)
    .sort((a, b) => a.name.localeCompare(b.name));
  if (inZone.length > 0) {
    const extra = inZone.length > 1 ? ` (first of ${inZone.map((c) => c.name).join(', ')} by name)` : '';
    return { config: inZone[0]!, reason: `spec.availabilityZone=${input.zone}${extra}` };
  }
  return { config: null, error: true, reason: `no PodNetworkConfig for zone ${input.zone}` };
}

export function zoneOf(labels: Readonly<Record<string, string>>): string | null {
  for (const key of ZONE_LABELS) if (labels[key]) return labels[key]!;
  return null;
}

/** Reads the node and the configs, and selects. Throws when custom networking cannot be resolved. */
export async function resolvePodNetwork(opts: {
  core: CoreV1Api;
  custom: CustomObjectsApi;
  nodeName: string;
  labelKey: string;
  annotationKey?: string;
  /** Used when the node carries no zone label (e.g. from the cloud's instance metadata). */
  fallbackZone?: string | null;
}): Promise<{ config: PodNetworkConfig; reason: string }> {
  const node = await opts.core.readNode({ name: opts.nodeName });
  const labels = node.metadata?.labels ?? {};
  const annotations = node.metadata?.annotations ?? {};
  const list = (await opts.custom.listClusterCustomObject({ ...NETWORK_CONFIG_API })) as {
    items?: unknown[];
  };
  const configs: PodNetworkConfig[] = [];
  for (const item of list.items ?? []) {
    const parsed = parseNetworkConfig(item);
    if (typeof parsed !== 'string') configs.push(parsed);
  }
  const selection = selectNetworkConfig({
    nodeLabels: labels,
    labelKey: opts.labelKey,
    nodeAnnotations: annotations,
    ...(opts.annotationKey ? { annotationKey: opts.annotationKey } : {}),
    zone: zoneOf(labels) ?? opts.fallbackZone ?? null,
    configs,
  });
  if (!selection.config) {
    throw new Error(`custom networking (VPC_IPAM_CUSTOM_NETWORKING=true): ${selection.reason}`);
  }
  return { config: selection.config, reason: selection.reason };
}
