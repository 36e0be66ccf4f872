// The daemon's Kubernetes-side environment variables. They are appended to DAEMON_ENV_VARS (so the
// chart test and the docs see one catalogue) and parsed here, next to the code that uses them.
import { bool, ConfigError, type Env, type EnvVarSpec, seconds } from '../../lib/env-catalogue.ts';

const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

function labelKey(raw: string): string {
  const t = raw.trim();
  if (!LABEL_KEY.test(t) || t.length > 317) throw new Error('not a Kubernetes label key');
  return t;
}

/** The AWS VPC CNI's node annotation (and label) naming the ENIConfig. */
export const ENI_CONFIG_ANNOTATION = 'k8s.amazonaws.com/eniConfig';

export const KUBERNETES_ENV_VARS: readonly EnvVarSpec[] = [
  {
    name: 'VPC_IPAM_POD_GC_GRACE',
    default: '60',
    accepted: 'seconds >= 1 (decimals allowed)',
    description:
      'An allocation whose pod is gone from the API is released after this long (the runtime normally releases it first through CNI DEL).',
    group: 'kubernetes',
    parse: seconds(1, 86400),
  },
  {
    name: 'VPC_IPAM_STATUS_INTERVAL',
    default: '10',
    accepted: 'seconds >= 1 (decimals allowed)',
    description: 'Minimum time between two writes of the NodeIPAMStatus object (changes are coalesced).',
    group: 'kubernetes',
    parse: seconds(1, 3600),
  },
  {
    name: 'VPC_IPAM_CUSTOM_NETWORKING',
    aliases: ['AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG'],
    default: 'false',
    accepted: 'true | false',
    description:
      'true: pod interfaces use the subnets and security groups of the PodNetworkConfig selected for this node (by label, else by zone).',
    group: 'kubernetes',
    parse: bool,
  },
  {
    name: 'VPC_IPAM_NETWORK_CONFIG_LABEL',
    aliases: ['ENI_CONFIG_LABEL_DEF'],
    default: 'vpc-ipam.io/network-config',
    accepted: 'a Kubernetes label key',
    description:
      'Node label whose value names the PodNetworkConfig for the node; nodes without it select by availability zone.',
    group: 'kubernetes',
    parse: labelKey,
  },
  {
    name: 'ANNOTATE_POD_IP',
    default: 'false',
    accepted: 'true | false',
    description:
      "true: annotate each pod with its IP (vpc.amazonaws.com/pod-ips, the AWS VPC CNI's) as soon as it is handed out, for policy engines that must not wait for status.podIP. Needs patch on pods: the chart grants it only when this is true.",
    group: 'kubernetes',
    parse: bool,
  },
  {
    name: 'ENI_CONFIG_ANNOTATION_DEF',
    default: ENI_CONFIG_ANNOTATION,
    accepted: 'a Kubernetes annotation key',
    description:
      "Node annotation whose value names the PodNetworkConfig for the node; it wins over the label (the AWS VPC CNI's key and default, so nodes annotated for aws-node's ENIConfig select the PodNetworkConfig of the same name).",
    group: 'kubernetes',
    parse: labelKey,
  },
];

export interface KubernetesSettings {
  nodeName: string;
  enablePodWatch: boolean;
  podGcGraceMs: number;
  statusIntervalMs: number;
  customNetworking: boolean;
  networkConfigLabel: string;
  /** ENI_CONFIG_ANNOTATION_DEF: wins over the label. */
  networkConfigAnnotation: string;
  /** ANNOTATE_POD_IP. */
  annotatePodIp?: boolean;
}

/** A ConfigError for one variable, under its own name (the daemon logs it at start-up). */
export class KubernetesEnvError extends ConfigError {
  constructor(variable: string, value: string, accepted: string, reason: string) {
    super([{ variable, value, accepted, reason }]);
    this.name = 'KubernetesEnvError';
  }
}

/** Parse this module's variables; NODE_NAME and ENABLE_POD_WATCH come from the daemon config. */
export function loadKubernetesSettings(
  env: Env,
  base: { nodeName: string; enablePodWatch: boolean },
): KubernetesSettings {
  const get = <T>(name: string): T => {
    const spec = KUBERNETES_ENV_VARS.find((s) => s.name === name)!;
    // The name first, then its aliases (the AWS VPC CNI's names), as loadConfig reads them.
    const source = [name, ...(spec.aliases ?? [])].find((n) => env[n] !== undefined && env[n] !== '');
    const raw = source === undefined ? spec.default! : env[source]!;
    try {
      return spec.parse(raw) as T;
    } catch (err) {
      throw new KubernetesEnvError(source ?? name, raw, spec.accepted, (err as Error).message);
    }
  };
  return {
    ...base,
    podGcGraceMs: Math.round(get<number>('VPC_IPAM_POD_GC_GRACE') * 1000),
    statusIntervalMs: Math.round(get<number>('VPC_IPAM_STATUS_INTERVAL') * 1000),
    customNetworking: get<boolean>('VPC_IPAM_CUSTOM_NETWORKING'),
    networkConfigLabel: get<string>('VPC_IPAM_NETWORK_CONFIG_LABEL'),
    networkConfigAnnotation: get<string>('ENI_CONFIG_ANNOTATION_DEF'),
    annotatePodIp: get<boolean>('ANNOTATE_POD_IP'),
  };
}
