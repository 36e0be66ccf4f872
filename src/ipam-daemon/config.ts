// Every environment variable the daemon accepts: one catalogue (DAEMON_ENV_VARS) that documents
// and parses them, and loadConfig(env), a pure function from an env object to a typed config.
// Warm-pool and SNAT knobs keep the AWS VPC CNI's names so users switch without relearning.
//
// To add a variable: append a spec to DAEMON_ENV_VARS (name, default, accepted, description,
// group, parse) and read it in loadConfig via `get(...)`. The Helm chart is tested against this
// catalogue, so every entry here must be settable from values.yaml.

import {
  absPath,
  bool,
  ConfigError,
  type ConfigIssue,
  cidrList,
  type Env,
  type EnvVarSpec,
  int,
  LOG_LEVELS,
  type LogLevel,
  list,
  oneOf,
  seconds,
  text,
  url,
} from '../lib/env-catalogue.ts';
import type { LogTarget } from '../lib/log.ts';
import { HOST_VETH_PREFIX, validateVethPrefix } from '../netutils/names.ts';
import { DEFAULT_SOCKET_PATH } from './api-types.ts';
import {
  DEFAULT_INTROSPECTION_ADDRESS,
  type IntrospectionAddress,
  parseIntrospectionAddress,
} from './introspection.ts';
import { KUBERNETES_ENV_VARS } from './k8s/env.ts';

// The catalogue's building blocks live in lib/env-catalogue.ts; re-exported for the daemon's users.
export type { ConfigIssue, Env, EnvGroup, EnvVarSpec, LogLevel } from '../lib/env-catalogue.ts';
export { ConfigError, parseIpv4Cidr } from '../lib/env-catalogue.ts';

const CLOUDS = ['aws', 'azure'] as const;
const RANDOMIZE_SNAT = ['none', 'hashrandom', 'prng'] as const;
export type RandomizeSnat = (typeof RANDOMIZE_SNAT)[number];

const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const HOST = /^[A-Za-z0-9.:[\]-]{1,253}$/;

/**
 * On Azure an "interface" is a NIC holding 256 IPs: the inherited WARM_ENI_TARGET=1 keeps 255 idle
 * IPs per node. Unless told otherwise, Azure nodes keep this many free IPs instead (Azure CNS's
 * batch size).
 */
export const AZURE_DEFAULT_WARM_IP_TARGET = 16;

/** VPC_IPAM_MIN_GROW_STEP when unset. */
export const DEFAULT_MIN_GROW_STEP = 4;

/**
 * VPC_IPAM_MIN_GROW_STEP when unset on Azure: every grow is one ARM PUT against a
 * subscription-wide write budget (about 1,000 per 5 minutes for Microsoft.Network), so grow in
 * Azure CNS's batch size rather than 4 at a time.
 */
export const AZURE_DEFAULT_MIN_GROW_STEP = 16;

/** The catalogue. Order is the documentation order. */
export const DAEMON_ENV_VARS: readonly EnvVarSpec[] = [
  // --- cloud ---
  {
    name: 'CLOUD_PROVIDER',
    default: 'aws',
    accepted: 'aws | azure',
    description: 'Which cloud the node runs on.',
    group: 'cloud',
    parse: oneOf(CLOUDS),
  },
  {
    name: 'CLUSTER_NAME',
    default: 'kubernetes',
    accepted: 'a DNS-1123 label-ish name: letters, digits, "-", "_", "." (1-128 chars)',
    description: 'Cluster name written on every interface we create, so leaked ones can be attributed.',
    group: 'cloud',
    parse: text(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'a valid cluster name'),
  },
  {
    name: 'AWS_REGION',
    aliases: ['AWS_DEFAULT_REGION'],
    default: null,
    accepted: 'an AWS region such as us-east-1 (default: from instance metadata)',
    description: 'AWS region for EC2 calls.',
    group: 'cloud',
    parse: text(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region'),
  },
  {
    name: 'VPC_IPAM_EC2_ENDPOINT',
    aliases: ['AWS_EC2_ENDPOINT'],
    default: null,
    accepted: 'an http(s) URL (default: the regional EC2 endpoint)',
    description: 'EC2 API endpoint override (LocalStack, VPC endpoints).',
    group: 'cloud',
    parse: url,
  },
  {
    name: 'VPC_IPAM_IMDS_ENDPOINT',
    default: null,
    accepted: 'an http(s) URL (default: http://169.254.169.254)',
    description: 'Instance metadata service endpoint override.',
    group: 'cloud',
    parse: url,
  },
  {
    name: 'VPC_IPAM_IMDS_TIMEOUT',
    default: '2',
    accepted: 'seconds > 0 (decimals allowed)',
    description:
      'Per-request timeout of instance metadata reads (each is tried 3 times); raise it where IMDS or the node is slow to answer.',
    group: 'cloud',
    parse: seconds(0.1, 60),
  },
  {
    name: 'VPC_IPAM_ARM_ENDPOINT',
    default: null,
    accepted: 'an https URL (default: https://management.azure.com)',
    description:
      'Azure Resource Manager endpoint override (sovereign clouds, test fakes). CLOUD_PROVIDER=azure only.',
    group: 'cloud',
    parse: url,
  },
  {
    name: 'AZURE_SUBSCRIPTION_ID',
    default: null,
    accepted: "a subscription GUID (default: the VM's own, from instance metadata)",
    description: 'Subscription holding the node NICs. CLOUD_PROVIDER=azure only.',
    group: 'cloud',
    parse: text(
      /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/,
      'a subscription GUID',
    ),
  },
  {
    name: 'AZURE_RESOURCE_GROUP',
    default: null,
    accepted: "a resource group name (default: the VM's own, from instance metadata)",
    description:
      'Resource group holding the node NICs (e.g. the AKS node resource group MC_*). CLOUD_PROVIDER=azure only.',
    group: 'cloud',
    parse: text(/^[-\w._()]{1,90}$/, 'a resource group name'),
  },
  {
    name: 'VPC_IPAM_AWS_PICK_ADDRESSES',
    default: 'false',
    accepted: 'true | false',
    description:
      'Choose free subnet addresses ourselves and assign them by address (needed on LocalStack, which picks random, possibly duplicate addresses); leave false on EC2.',
    group: 'cloud',
    parse: bool,
  },
  {
    name: 'POD_SUBNET_IDS',
    default: null,
    accepted: 'comma-separated subnet ids, in order of preference (default: the primary interface subnet)',
    description: 'Subnets pod interfaces are created in; the next one is used when one is full.',
    group: 'cloud',
    parse: list(/^[A-Za-z0-9][A-Za-z0-9_./-]{0,511}$/, 'a subnet id'),
  },
  {
    name: 'ENABLE_SUBNET_DISCOVERY',
    default: 'true',
    accepted: 'true | false',
    description:
      "When POD_SUBNET_IDS is unset and custom networking is off: pod interfaces go to the subnet with the most free addresses among the node's subnet and the subnets of its VPC and zone tagged kubernetes.io/role/cni (a value of 0 excludes a subnet, the node's own included; kubernetes.io/cluster/* tags for another cluster exclude it). false: the node's subnet only. AWS only.",
    group: 'cloud',
    parse: bool,
  },
  {
    name: 'ADDITIONAL_ENI_TAGS',
    default: '{}',
    accepted:
      'a JSON object of tag keys (1-128 chars, not starting with aws: or vpc-ipam/, without k8s.amazonaws.com) to string values (up to 256 chars)',
    description: 'Extra tags written on every interface the daemon creates, besides its own ownership tags.',
    group: 'cloud',
    parse: parseEniTags,
  },
  {
    name: 'POD_SECURITY_GROUP_IDS',
    default: null,
    accepted: 'comma-separated security group ids (default: those of the primary interface)',
    description: 'Security groups put on interfaces created for pods.',
    group: 'cloud',
    parse: list(/^[A-Za-z0-9][A-Za-z0-9_./-]{0,511}$/, 'a security group id'),
  },
  // --- warm pool (AWS VPC CNI names) ---
  {
    name: 'WARM_ENI_TARGET',
    default: '1',
    accepted: 'a whole number >= 0',
    description:
      'Whole free interfaces (with all their IPs) to keep ready. Ignored when WARM_IP_TARGET or MINIMUM_IP_TARGET is set; on CLOUD_PROVIDER=azure used only when one of them is set to 0 (else WARM_IP_TARGET defaults to 16).',
    group: 'warm-pool',
    parse: int(0, 64),
  },
  {
    name: 'WARM_IP_TARGET',
    default: null,
    accepted: `a whole number >= 0 (unset: use WARM_ENI_TARGET; on CLOUD_PROVIDER=azure, ${AZURE_DEFAULT_WARM_IP_TARGET} when MINIMUM_IP_TARGET is unset too)`,
    description:
      'Free IPs to keep ready. Takes precedence over WARM_ENI_TARGET. Azure NICs hold 256 IPs, so there the default is IP mode.',
    group: 'warm-pool',
    parse: int(0, 100000),
  },
  {
    name: 'MINIMUM_IP_TARGET',
    default: null,
    accepted: 'a whole number >= 0 (unset: no floor)',
    description: 'Floor on the total IPs held by the node. Takes precedence over WARM_ENI_TARGET.',
    group: 'warm-pool',
    parse: int(0, 100000),
  },
  {
    name: 'MAX_ENI',
    default: null,
    accepted: 'a whole number >= 1 (unset: the instance type limit)',
    description: 'Cap on interfaces (the primary included), below the instance type limit.',
    group: 'warm-pool',
    parse: int(1, 1024),
  },
  {
    name: 'IP_COOLDOWN_PERIOD',
    default: '30',
    accepted: 'whole seconds >= 0',
    description:
      'A released IP waits this long before it is handed out again or returned to the cloud, and in any case until the host veth a DEL left for it is gone (docs/cni.md, "DEL leaves the veth"); with 0 the DEL deletes that veth itself.',
    group: 'warm-pool',
    parse: int(0, 86400),
  },
  {
    name: 'MAX_PODS',
    default: null,
    accepted: "a whole number >= 1 (the kubelet's --max-pods; unset: the instance formula)",
    description: 'Never hold more pod IPs than this (the lower of it and ENIs x (IPs per ENI - 1) + 2).',
    group: 'warm-pool',
    parse: int(1, 100000),
  },
  {
    name: 'VPC_IPAM_MIN_GROW_STEP',
    default: null,
    accepted: `a whole number >= 1 (unset: ${DEFAULT_MIN_GROW_STEP}; on CLOUD_PROVIDER=azure, ${AZURE_DEFAULT_MIN_GROW_STEP})`,
    description:
      'In IP-target mode, grow by at least this many IPs per cloud call, so churn with a small WARM_IP_TARGET does not cost one API call per pod. On Azure every grow is one ARM write against a subscription-wide budget, hence the larger default there.',
    group: 'warm-pool',
    parse: int(1, 1024),
  },
  {
    name: 'VPC_IPAM_SHRINK_DELAY',
    default: '60',
    accepted: 'seconds >= 0 (decimals allowed)',
    description: 'The pool must exceed its target this long before IPs or interfaces are given back.',
    group: 'warm-pool',
    parse: seconds(0, 86400),
  },
  {
    name: 'VPC_IPAM_BURST_WINDOW',
    default: '10',
    accepted: 'seconds >= 0 (decimals allowed; 0 turns it off)',
    description:
      'Arrival-rate window: while a burst of pods is under way (at least 4 allocations within it) and requests wait for an IP, the pool grows ahead by as many IPs as arrived within it, so new interfaces are attaching before the pods that need them ask (in IP mode, WARM_IP_TARGET/MINIMUM_IP_TARGET, it fills the interfaces the node has or has on the way and creates one only for requests waiting); after the burst the surplus goes after VPC_IPAM_SHRINK_DELAY.',
    group: 'warm-pool',
    parse: seconds(0, 3600),
  },
  {
    name: 'VPC_IPAM_RECONCILE_INTERVAL',
    default: '10',
    accepted: 'seconds > 0 (decimals allowed)',
    description: 'How often the pool is re-planned when nothing else triggers it.',
    group: 'warm-pool',
    parse: seconds(0.01, 3600),
  },
  {
    name: 'VPC_IPAM_ALLOCATE_WAIT',
    default: '5',
    accepted: 'seconds >= 0 (decimals allowed)',
    description:
      'How long an allocation on an empty pool waits for the pool to grow before "try again later".',
    group: 'warm-pool',
    parse: seconds(0, 300),
  },
  {
    name: 'VPC_IPAM_SUBNET_BACKOFF',
    default: '300',
    accepted: 'seconds >= 0 (decimals allowed)',
    description: 'How long a subnet that reported itself full is skipped.',
    group: 'warm-pool',
    parse: seconds(0, 86400),
  },
  {
    name: 'VPC_IPAM_RESYNC_INTERVAL',
    default: '60',
    accepted: 'seconds >= 0 (decimals allowed; 0 turns the resync off)',
    description:
      "How often the node's interfaces are re-listed to repair drift (IPs or interfaces added or removed behind the daemon's back): from instance metadata, which costs no API budget; without it, from the API every 10th time.",
    group: 'warm-pool',
    parse: seconds(0, 86400),
  },
  {
    name: 'DISABLE_NETWORK_RESOURCE_PROVISIONING',
    default: 'false',
    accepted: 'true | false',
    description:
      'true: hand out only the secondary IPs already on the attached interfaces (all of them, whatever their subnet or owner, except those tagged node.k8s.amazonaws.com/no_manage=true); never create, attach, assign, unassign or delete anything in the cloud (the provider refuses every mutating call). IPs added out of band are picked up by the drift resync.',
    group: 'warm-pool',
    parse: bool,
  },
  {
    name: 'AWS_MANAGE_ENIS_NON_SCHEDULABLE',
    default: 'false',
    accepted: 'true | false',
    description:
      'On a node marked unschedulable (cordoned, draining): false attaches no new interface and gives nothing back while its pods leave; true manages interfaces as on any node. Needs NODE_NAME (the Node is read every 10 s).',
    group: 'warm-pool',
    parse: bool,
  },
  // --- daemon ---
  {
    name: 'VPC_IPAM_SOCKET',
    default: DEFAULT_SOCKET_PATH,
    accepted: 'an absolute path; its directory is created with mode 0700',
    description: 'Unix socket the CNI plugin and the CLI talk to.',
    group: 'daemon',
    parse: absPath,
  },
  {
    name: 'VPC_IPAM_CHECKPOINT',
    default: '/var/lib/vpc-ipam/checkpoint.json',
    accepted: 'an absolute path on a persistent host directory',
    description:
      'Allocation checkpoint: a snapshot plus the journal beside it (<path>.journal-<hex>); every change is on disk before it is answered.',
    group: 'daemon',
    parse: absPath,
  },
  {
    name: 'VPC_IPAM_CNI_CONFLIST',
    default: '',
    accepted: 'empty, or an absolute path (the conflist in the daemon container)',
    description:
      'CNI conflist the daemon installs at VPC_IPAM_CNI_CONFLIST_TARGET once it is ready (socket answering, pool rebuilt, node set up), as the AWS VPC CNI does: until then the node has no CNI config, so kubelet keeps it NotReady and no pod sandbox is attempted. Empty: the daemon writes none.',
    group: 'daemon',
    parse: (raw) => (raw.trim() === '' ? '' : absPath(raw)),
  },
  {
    name: 'VPC_IPAM_CNI_CONFLIST_TARGET',
    default: '/host/etc/cni/net.d/10-vpc-ipam.conflist',
    accepted: 'an absolute path ending in .conflist (in the host CNI config directory, as mounted)',
    description: 'Where VPC_IPAM_CNI_CONFLIST is installed (atomically: temp file, fsync, rename).',
    group: 'daemon',
    parse: (raw) => {
      const p = absPath(raw);
      if (!p.endsWith('.conflist')) throw new Error('not a path ending in .conflist');
      return p;
    },
  },
  {
    name: 'VPC_IPAM_AWS_CNI_TAKEOVER',
    default: 'true',
    accepted: 'true | false',
    description:
      'Take a node over from the AWS VPC CNI (aws-node) without draining it: adopt the ENIs aws-node created for this instance and cluster, its running pods (from VPC_IPAM_AWS_CNI_CHECKPOINT and their host routes) and replace its SNAT and connmark rules with ours. CLOUD_PROVIDER=aws only; a no-op on nodes aws-node never ran.',
    group: 'daemon',
    parse: bool,
  },
  {
    name: 'VPC_IPAM_AWS_CNI_CHECKPOINT',
    default: '/var/run/aws-node/ipam.json',
    accepted: 'an absolute path',
    description:
      "aws-node's allocation checkpoint (its AWS_VPC_K8S_CNI_BACKING_STORE), read once on the first start of vpc-ipamd on a node, when vpc-ipamd has no checkpoint of its own yet.",
    group: 'daemon',
    parse: absPath,
  },
  {
    name: 'VPC_IPAM_AWS_CNI_VETH_PREFIX',
    default: 'eni',
    accepted: '1-4 lowercase letters or digits, not eth, vlan or lo',
    description:
      "Host veth prefix aws-node used (its AWS_VPC_K8S_CNI_VETHPREFIX): routes to <prefix><11 hex> veths are the adopted pods', and our SNAT/connmark rules cover those veths too.",
    group: 'daemon',
    parse: awsVethPrefix,
  },
  {
    name: 'VPC_IPAM_GC_GRACE',
    default: '60',
    accepted: 'seconds >= 0 (decimals allowed)',
    description:
      'CNI GC leaves allocations younger than this alone (an ADD may still be in flight when the runtime lists its attachments).',
    group: 'daemon',
    parse: seconds(0, 86400),
  },
  {
    name: 'VPC_IPAM_CNI_APPLY_TIMEOUT',
    default: '20',
    accepted: 'seconds > 0 (decimals allowed)',
    description:
      "How long a veth ADD waits for the CNI shim's report that it applied the wiring, then rolls back (a veth DEL: then cleans up with ip itself). A DEL or a new ADD of the same attachment ends the wait at once (the waiting command then touches nothing more); lowered only by tests.",
    group: 'daemon',
    parse: seconds(0.01, 600),
  },
  {
    name: 'VPC_IPAM_SHUTDOWN_TIMEOUT',
    default: '10',
    accepted: 'seconds >= 0 (decimals allowed)',
    description: 'On SIGTERM, how long in-flight requests may take to finish.',
    group: 'daemon',
    parse: seconds(0, 600),
  },
  {
    name: 'AWS_VPC_ENI_MTU',
    default: '9001',
    accepted: 'a whole number 576-9001',
    description:
      "MTU set on every ENI's link on the node, the primary's included (node setup). CLOUD_PROVIDER=aws only; on Azure the NICs' MTU is left alone. The pods' MTU is the conflist's (chart cni.mtu, default: this value).",
    group: 'daemon',
    parse: int(576, 9001),
  },
  {
    name: 'AWS_EXTERNAL_SERVICE_CIDRS',
    default: '',
    accepted: 'comma-separated IPv4 CIDRs',
    description:
      "Destinations that pods on secondary ENIs reach through the main routing table (the primary interface), e.g. services outside the VPC that only answer the node: one `to <cidr> lookup main` rule each at priority 1535, before the pods' ENI tables.",
    group: 'snat',
    parse: cidrList,
  },
  {
    name: 'AWS_VPC_K8S_CNI_VETHPREFIX',
    default: HOST_VETH_PREFIX,
    accepted: '1-4 letters or digits, not eth, vlan or lo',
    description:
      "Prefix of the pods' host-side veth names (<prefix> + 11 hex). The chart writes it into the CNI conflist too; node setup's SNAT/connmark rules and the daemon's route recovery match it. The AWS VPC CNI's default is eni; vpc-ipam's is vpc, so its veths are told apart from aws-node's.",
    group: 'daemon',
    parse: (raw) => validateVethPrefix(raw.trim()),
  },
  {
    name: 'VPC_IPAM_NODE_SETUP',
    default: 'true',
    accepted: 'true | false',
    description:
      'Configure node networking (secondary interfaces, route tables, rules, SNAT). false only for tests or when another agent does it.',
    group: 'daemon',
    parse: bool,
  },
  // --- observability ---
  {
    name: 'LOG_LEVEL',
    aliases: ['AWS_VPC_K8S_CNI_LOGLEVEL'],
    default: 'info',
    accepted: LOG_LEVELS.join(' | '),
    description: 'pino log level (JSON logs on stdout).',
    group: 'observability',
    parse: oneOf(LOG_LEVELS),
  },
  {
    name: 'AWS_VPC_K8S_CNI_LOG_FILE',
    default: 'stdout',
    accepted: 'stdout | stderr | an absolute file path',
    description:
      "Where the daemon's JSON logs go (the AWS VPC CNI's ipamd log setting). A file is appended to and its directory created; the chart mounts that directory from the node. The AWS plugin's default is /host/var/log/aws-routed-eni/ipamd.log; vpc-ipam's is stdout (kubectl logs).",
    group: 'observability',
    parse: parseLogTarget,
  },
  {
    name: 'METRICS_ADDRESS',
    default: '127.0.0.1',
    accepted: 'an IP address or host name to bind',
    description: 'Prometheus /metrics listen address (localhost by default).',
    group: 'observability',
    parse: text(HOST, 'an address'),
  },
  {
    name: 'VPC_IPAM_AWSCNI_METRICS',
    default: 'false',
    accepted: 'true | false',
    description:
      "true: /metrics also serves the AWS VPC CNI's awscni_* names that existing aws-node dashboards use, each computed at scrape time from a vpc_ipam_* metric (docs/migrating-from-aws-vpc-cni.md lists the mapping), so nothing is counted twice.",
    group: 'observability',
    parse: bool,
  },
  {
    name: 'INTROSPECTION_BIND_ADDRESS',
    default: DEFAULT_INTROSPECTION_ADDRESS,
    accepted: 'host:port, [ipv6]:port or unix:/absolute/socket/path',
    description:
      "Read-only introspection endpoint shaped like the AWS VPC CNI's (/v1/enis, /v1/eni-configs, /v1/ipamd-env-settings, /v1/networkutils-env-settings), for tools that scrape aws-node's.",
    group: 'observability',
    parse: parseIntrospectionAddress,
  },
  {
    name: 'DISABLE_INTROSPECTION',
    default: 'false',
    accepted: 'true | false',
    description: 'true: no introspection endpoint.',
    group: 'observability',
    parse: bool,
  },
  {
    name: 'METRICS_PORT',
    default: '61678',
    accepted: 'a port 0-65535 (0 disables metrics)',
    description: 'Prometheus /metrics listen port.',
    group: 'observability',
    parse: int(0, 65535),
  },
  // --- SNAT (consumed by node-setup) ---
  {
    name: 'AWS_VPC_K8S_CNI_EXTERNALSNAT',
    aliases: ['EXTERNAL_SNAT'],
    default: 'false',
    accepted: 'true | false',
    description: 'true: an external NAT (NAT gateway) handles egress, so the node installs no SNAT rules.',
    group: 'snat',
    parse: bool,
  },
  {
    name: 'AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS',
    default: '',
    accepted: 'comma-separated IPv4 CIDRs',
    description: 'Destinations outside the VPC that keep the pod source IP (not SNATed).',
    group: 'snat',
    parse: cidrList,
  },
  {
    name: 'AWS_VPC_K8S_CNI_RANDOMIZESNAT',
    default: 'prng',
    accepted: RANDOMIZE_SNAT.join(' | '),
    description: 'SNAT port selection: prng = --random-fully, hashrandom = --random, none = neither.',
    group: 'snat',
    parse: oneOf(RANDOMIZE_SNAT),
  },
  // --- kubernetes ---
  {
    name: 'NODE_NAME',
    default: null,
    accepted: 'the Kubernetes node name (downward API spec.nodeName)',
    description: 'This node in the Kubernetes API; enables the Kubernetes features when set.',
    group: 'kubernetes',
    parse: text(DNS_SUBDOMAIN, 'a DNS-1123 subdomain'),
  },
  {
    name: 'ENABLE_POD_WATCH',
    default: 'true',
    accepted: 'true | false',
    description: 'Watch pods on this node and release allocations of pods that are gone (needs NODE_NAME).',
    group: 'kubernetes',
    parse: bool,
  },
  // Parsed by k8s/env.ts (loadKubernetesSettings), listed here so the catalogue is complete.
  ...KUBERNETES_ENV_VARS,
];

export type CloudChoice = (typeof CLOUDS)[number];

export interface WarmPoolConfig {
  warmEniTarget: number;
  warmIpTarget: number | null;
  minimumIpTarget: number | null;
  maxEni: number | null;
  cooldownMs: number;
  maxPods: number | null;
  minGrowStep: number;
  shrinkDelayMs: number;
  /** VPC_IPAM_BURST_WINDOW: arrival-rate window for growing ahead of a burst; 0: off. */
  burstWindowMs?: number;
  reconcileIntervalMs: number;
  allocateWaitMs: number;
  subnetBackoffMs: number;
  /** Drift resync interval (VPC_IPAM_RESYNC_INTERVAL); 0 or absent: off. */
  resyncIntervalMs?: number;
  /** AWS_MANAGE_ENIS_NON_SCHEDULABLE: attach and shrink interfaces on a cordoned node too. */
  manageEnisNonSchedulable?: boolean;
  /**
   * DISABLE_NETWORK_RESOURCE_PROVISIONING: hand out only the IPs already on the node's interfaces
   * (any attached interface, any subnet); never create, attach, assign, unassign or delete.
   */
  noProvisioning?: boolean;
}

export interface SnatConfig {
  externalSnat: boolean;
  excludeCidrs: string[];
  randomize: RandomizeSnat;
}

export interface DaemonConfig {
  cloud: CloudChoice;
  clusterName: string;
  aws: {
    region: string | null;
    ec2Endpoint: string | null;
    imdsEndpoint: string | null;
    /** VPC_IPAM_IMDS_TIMEOUT: per-request IMDS timeout. */
    imdsTimeoutMs: number;
    pickAddresses: boolean;
  };
  podSubnetIds: string[] | null;
  podSecurityGroupIds: string[] | null;
  /** ENABLE_SUBNET_DISCOVERY: used only when podSubnetIds is null and custom networking is off. */
  subnetDiscovery: boolean;
  /** ADDITIONAL_ENI_TAGS. */
  extraInterfaceTags: Record<string, string>;
  pool: WarmPoolConfig;
  socketPath: string;
  checkpointPath: string;
  /** VPC_IPAM_CNI_CONFLIST(_TARGET): the conflist written once the daemon is ready, if any. */
  cniConflist: { source: string; target: string } | null;
  shutdownTimeoutMs: number;
  /** VPC_IPAM_GC_GRACE: CNI GC skips allocations younger than this. */
  gcGraceMs: number;
  /** VPC_IPAM_CNI_APPLY_TIMEOUT: a veth ADD's wait for the shim's wiring report. */
  cniApplyTimeoutMs: number;
  nodeSetup: boolean;
  /** Taking nodes over from the AWS VPC CNI (takeover/); only used with cloud aws. */
  takeover: { enabled: boolean; awsCheckpointPath: string; awsVethPrefix: string };
  /** AWS_VPC_K8S_CNI_VETHPREFIX: the host veth prefix the plugin uses. */
  vethPrefix: string;
  /** AWS_VPC_ENI_MTU on AWS; null (leave alone) on Azure. */
  eniMtu: number | null;
  /** AWS_EXTERNAL_SERVICE_CIDRS. */
  externalServiceCidrs: string[];
  logLevel: LogLevel;
  /** AWS_VPC_K8S_CNI_LOG_FILE. */
  logFile: LogTarget;
  metrics: { address: string; port: number } | null;
  /** VPC_IPAM_AWSCNI_METRICS: also serve the awscni_* names. */
  awsCniMetrics: boolean;
  /** The introspection endpoint; null with DISABLE_INTROSPECTION=true. */
  introspection: IntrospectionAddress | null;
  snat: SnatConfig;
  kubernetes: { nodeName: string | null; enablePodWatch: boolean };
  /** Defaults derived from other variables (e.g. the Azure warm-pool default), for the start-up log. */
  derivedDefaults?: string[];
  /** CLOUD_PROVIDER=azure settings (the IMDS endpoint is shared: aws.imdsEndpoint). */
  azure?: { armEndpoint: string | null; subscriptionId: string | null; resourceGroup: string | null };
}

/** Parse and validate the whole environment. Throws ConfigError listing every bad variable. */
export function loadConfig(env: Env): DaemonConfig {
  const issues: ConfigIssue[] = [];
  const specs = new Map(DAEMON_ENV_VARS.map((s) => [s.name, s]));

  function get<T>(name: string): T | null {
    const spec = specs.get(name);
    if (!spec) throw new Error(`config.ts bug: ${name} is not in DAEMON_ENV_VARS`);
    let source = name;
    let raw = env[name];
    for (const alias of spec.aliases ?? []) {
      if (raw !== undefined) break;
      raw = env[alias];
      source = alias;
    }
    // An empty string means unset for optional values, as Helm often renders "".
    if (raw === undefined || (raw.trim() === '' && spec.default === null)) {
      raw = spec.default ?? undefined;
      source = name;
      if (raw === undefined) return null;
    }
    try {
      return spec.parse(raw) as T;
    } catch (err) {
      issues.push({ variable: source, value: raw, accepted: spec.accepted, reason: (err as Error).message });
      return null;
    }
  }

  const metricsPort = get<number>('METRICS_PORT');
  const minGrowStep = get<number>('VPC_IPAM_MIN_GROW_STEP');
  const metricsAddress = get<string>('METRICS_ADDRESS');
  // Validated even when disabled, so a typo is caught before someone turns it on.
  const introspectionAt =
    get<IntrospectionAddress>('INTROSPECTION_BIND_ADDRESS') ??
    parseIntrospectionAddress(DEFAULT_INTROSPECTION_ADDRESS);
  const introspectionOff = get<boolean>('DISABLE_INTROSPECTION') ?? false;
  const config: DaemonConfig = {
    cloud: get<CloudChoice>('CLOUD_PROVIDER') ?? 'aws',
    clusterName: get<string>('CLUSTER_NAME') ?? 'kubernetes',
    aws: {
      region: get<string>('AWS_REGION'),
      ec2Endpoint: get<string>('VPC_IPAM_EC2_ENDPOINT'),
      imdsEndpoint: get<string>('VPC_IPAM_IMDS_ENDPOINT'),
      imdsTimeoutMs: Math.round((get<number>('VPC_IPAM_IMDS_TIMEOUT') ?? 2) * 1000),
      pickAddresses: get<boolean>('VPC_IPAM_AWS_PICK_ADDRESSES') ?? false,
    },
    podSubnetIds: emptyToNull(get<string[]>('POD_SUBNET_IDS')),
    podSecurityGroupIds: emptyToNull(get<string[]>('POD_SECURITY_GROUP_IDS')),
    subnetDiscovery: get<boolean>('ENABLE_SUBNET_DISCOVERY') ?? true,
    extraInterfaceTags: get<Record<string, string>>('ADDITIONAL_ENI_TAGS') ?? {},
    pool: {
      warmEniTarget: get<number>('WARM_ENI_TARGET') ?? 1,
      warmIpTarget: get<number>('WARM_IP_TARGET'),
      minimumIpTarget: get<number>('MINIMUM_IP_TARGET'),
      maxEni: get<number>('MAX_ENI'),
      cooldownMs: (get<number>('IP_COOLDOWN_PERIOD') ?? 30) * 1000,
      maxPods: get<number>('MAX_PODS'),
      minGrowStep: minGrowStep ?? DEFAULT_MIN_GROW_STEP,
      shrinkDelayMs: Math.round((get<number>('VPC_IPAM_SHRINK_DELAY') ?? 60) * 1000),
      burstWindowMs: Math.round((get<number>('VPC_IPAM_BURST_WINDOW') ?? 10) * 1000),
      reconcileIntervalMs: Math.round((get<number>('VPC_IPAM_RECONCILE_INTERVAL') ?? 10) * 1000),
      allocateWaitMs: Math.round((get<number>('VPC_IPAM_ALLOCATE_WAIT') ?? 5) * 1000),
      subnetBackoffMs: Math.round((get<number>('VPC_IPAM_SUBNET_BACKOFF') ?? 300) * 1000),
      resyncIntervalMs: Math.round((get<number>('VPC_IPAM_RESYNC_INTERVAL') ?? 60) * 1000),
      manageEnisNonSchedulable: get<boolean>('AWS_MANAGE_ENIS_NON_SCHEDULABLE') ?? false,
      noProvisioning: get<boolean>('DISABLE_NETWORK_RESOURCE_PROVISIONING') ?? false,
    },
    socketPath: get<string>('VPC_IPAM_SOCKET') ?? DEFAULT_SOCKET_PATH,
    checkpointPath: get<string>('VPC_IPAM_CHECKPOINT') ?? '/var/lib/vpc-ipam/checkpoint.json',
    cniConflist: get<string>('VPC_IPAM_CNI_CONFLIST')
      ? {
          source: get<string>('VPC_IPAM_CNI_CONFLIST')!,
          target: get<string>('VPC_IPAM_CNI_CONFLIST_TARGET') ?? '/host/etc/cni/net.d/10-vpc-ipam.conflist',
        }
      : null,
    shutdownTimeoutMs: Math.round((get<number>('VPC_IPAM_SHUTDOWN_TIMEOUT') ?? 10) * 1000),
    gcGraceMs: Math.round((get<number>('VPC_IPAM_GC_GRACE') ?? 60) * 1000),
    cniApplyTimeoutMs: Math.round((get<number>('VPC_IPAM_CNI_APPLY_TIMEOUT') ?? 20) * 1000),
    nodeSetup: get<boolean>('VPC_IPAM_NODE_SETUP') ?? true,
    takeover: {
      enabled: get<boolean>('VPC_IPAM_AWS_CNI_TAKEOVER') ?? true,
      awsCheckpointPath: get<string>('VPC_IPAM_AWS_CNI_CHECKPOINT') ?? '/var/run/aws-node/ipam.json',
      awsVethPrefix: get<string>('VPC_IPAM_AWS_CNI_VETH_PREFIX') ?? 'eni',
    },
    vethPrefix: get<string>('AWS_VPC_K8S_CNI_VETHPREFIX') ?? HOST_VETH_PREFIX,
    eniMtu: get<number>('AWS_VPC_ENI_MTU') ?? 9001,
    externalServiceCidrs: get<string[]>('AWS_EXTERNAL_SERVICE_CIDRS') ?? [],
    logLevel: get<LogLevel>('LOG_LEVEL') ?? 'info',
    logFile: get<LogTarget>('AWS_VPC_K8S_CNI_LOG_FILE') ?? 'stdout',
    metrics: metricsPort ? { address: metricsAddress ?? '127.0.0.1', port: metricsPort } : null,
    awsCniMetrics: get<boolean>('VPC_IPAM_AWSCNI_METRICS') ?? false,
    introspection: introspectionOff ? null : introspectionAt,
    snat: {
      externalSnat: get<boolean>('AWS_VPC_K8S_CNI_EXTERNALSNAT') ?? false,
      excludeCidrs: get<string[]>('AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS') ?? [],
      randomize: get<RandomizeSnat>('AWS_VPC_K8S_CNI_RANDOMIZESNAT') ?? 'prng',
    },
    azure: {
      armEndpoint: get<string>('VPC_IPAM_ARM_ENDPOINT'),
      subscriptionId: get<string>('AZURE_SUBSCRIPTION_ID'),
      resourceGroup: get<string>('AZURE_RESOURCE_GROUP'),
    },
    kubernetes: {
      nodeName: get<string>('NODE_NAME'),
      enablePodWatch: get<boolean>('ENABLE_POD_WATCH') ?? true,
    },
  };
  if (issues.length > 0) throw new ConfigError(issues);
  const derived = applyCloudDefaults(config, { minGrowStepSet: minGrowStep !== null });
  if (derived.length > 0) config.derivedDefaults = derived;
  return config;
}

/**
 * Azure: IP mode unless the user chose a mode. "Chose" = WARM_IP_TARGET or MINIMUM_IP_TARGET is
 * set, to 0 as well (0 counts as unset in the engine, so WARM_IP_TARGET=0 means ENI mode with
 * WARM_ENI_TARGET). WARM_ENI_TARGET alone does not count: the chart always renders it, and a
 * 255-IP NIC is rarely what anyone wants warm. Independently, an unset VPC_IPAM_MIN_GROW_STEP
 * becomes 16 there (one ARM write per 16 IPs instead of per 4).
 */
function applyCloudDefaults(config: DaemonConfig, set: { minGrowStepSet: boolean }): string[] {
  if (config.cloud !== 'azure') return [];
  config.eniMtu = null; // AWS_VPC_ENI_MTU is about ENIs: Azure NICs keep their own
  const pool = config.pool;
  const derived: string[] = [];
  if (pool.warmIpTarget === null && pool.minimumIpTarget === null) {
    pool.warmIpTarget = AZURE_DEFAULT_WARM_IP_TARGET;
    derived.push(
      `CLOUD_PROVIDER=azure with neither WARM_IP_TARGET nor MINIMUM_IP_TARGET set: IP mode with WARM_IP_TARGET=${AZURE_DEFAULT_WARM_IP_TARGET} (a NIC holds 256 IPs: ENI mode grows and keeps them 255 at a time). set WARM_IP_TARGET and/or MINIMUM_IP_TARGET to choose (WARM_IP_TARGET=0: ENI mode with WARM_ENI_TARGET)`,
    );
  }
  if (!set.minGrowStepSet) {
    pool.minGrowStep = AZURE_DEFAULT_MIN_GROW_STEP;
    derived.push(
      `CLOUD_PROVIDER=azure with VPC_IPAM_MIN_GROW_STEP unset: VPC_IPAM_MIN_GROW_STEP=${AZURE_DEFAULT_MIN_GROW_STEP} (every grow is one ARM PUT against a subscription-wide write budget of about 1,000 per 5 minutes, so IP-mode grows bring at least ${AZURE_DEFAULT_MIN_GROW_STEP} IPs). set VPC_IPAM_MIN_GROW_STEP to choose`,
    );
  }
  return derived;
}

/**
 * ADDITIONAL_ENI_TAGS: a JSON object of string values. EC2 reserves the aws: prefix; vpc-ipam/ and
 * k8s.amazonaws.com keys would fake ownership tags (the AWS VPC CNI ignores the latter: here they
 * are an error, so a typo cannot pass unnoticed).
 */
function parseEniTags(raw: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.trim() === '' ? '{}' : raw);
  } catch {
    throw new Error('not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new Error('not a JSON object');
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (key.length < 1 || key.length > 128)
      throw new Error(`tag key ${JSON.stringify(key)} is not 1-128 characters`);
    if (/^aws:/i.test(key) || key.startsWith('vpc-ipam/') || key.includes('k8s.amazonaws.com')) {
      throw new Error(`tag key ${JSON.stringify(key)} is reserved`);
    }
    if (typeof value !== 'string') throw new Error(`tag ${JSON.stringify(key)} has a non-string value`);
    if (value.length > 256) throw new Error(`tag ${JSON.stringify(key)} has a value over 256 characters`);
    out[key] = value;
  }
  return out;
}

function awsVethPrefix(raw: string): string {
  const t = raw.trim();
  if (!/^[a-z0-9]{1,4}$/.test(t)) throw new Error('not 1-4 lowercase letters or digits');
  if (['eth', 'vlan', 'lo'].includes(t)) throw new Error(`${t} is reserved for other interfaces`);
  return t;
}

function parseLogTarget(raw: string): LogTarget {
  const t = raw.trim();
  if (t === 'stdout' || t === 'stderr') return t;
  return absPath(t) as LogTarget;
}

function emptyToNull(v: string[] | null): string[] | null {
  return v && v.length > 0 ? v : null;
}

/** Names the daemon reads (primary names and aliases), e.g. for the Helm chart test. */
export function daemonEnvVarNames(includeAliases = false): string[] {
  return DAEMON_ENV_VARS.flatMap((s) => (includeAliases ? [s.name, ...(s.aliases ?? [])] : [s.name]));
}
