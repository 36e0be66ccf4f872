#!/usr/bin/env node
// Translates an aws-vpc-cni (aws-node) Helm values file into a vpc-ipam values file.
//
//   node scripts/translate-aws-values.ts aws-node-values.yaml [--cluster-name NAME] [--region R]
//        [-o vpc-ipam-values.yaml] [--allow-lossy]
//
// Reads `env:`, `init.env:`, `extraEnv:` (name/value pairs), `serviceAccount.annotations` (IRSA),
// `eniConfig.subnets` (-> podNetworkConfigs) and the scheduling fields; writes only what differs
// from helm/vpc-ipam/values.yaml. Every AWS variable has a rule below (AWS_README_VARIABLES lists
// the 50 of the AWS VPC CNI README; docs/migrating-from-aws-vpc-cni.md gives the same reasons).
// Notes go to stderr; exit 2 when a setting would silently change behaviour (lossy) unless
// --allow-lossy, 1 on bad input.

import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { dumpYaml, loadYaml } from '@kubernetes/client-node';
import { daemonEnvVarNames } from '../src/ipam-daemon/config.ts';

/** The variables of the AWS VPC CNI README ("CNI Configuration Variables", v1.23). */
export const AWS_README_VARIABLES = [
  'AWS_MANAGE_ENIS_NON_SCHEDULABLE',
  'AWS_VPC_CNI_NODE_PORT_SUPPORT',
  'AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG',
  'ENI_CONFIG_ANNOTATION_DEF',
  'ENI_CONFIG_LABEL_DEF',
  'HOST_CNI_BIN_PATH',
  'HOST_CNI_CONFDIR_PATH',
  'AWS_VPC_ENI_MTU',
  'AWS_VPC_K8S_CNI_EXTERNALSNAT',
  'AWS_VPC_K8S_CNI_RANDOMIZESNAT',
  'AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS',
  'POD_MTU',
  'WARM_ENI_TARGET',
  'WARM_IP_TARGET',
  'MINIMUM_IP_TARGET',
  'MAX_ENI',
  'AWS_VPC_K8S_CNI_LOGLEVEL',
  'AWS_VPC_K8S_CNI_LOG_FILE',
  'AWS_VPC_K8S_PLUGIN_LOG_FILE',
  'AWS_VPC_K8S_PLUGIN_LOG_LEVEL',
  'INTROSPECTION_BIND_ADDRESS',
  'DISABLE_INTROSPECTION',
  'DISABLE_METRICS',
  'AWS_VPC_K8S_CNI_VETHPREFIX',
  'ADDITIONAL_ENI_TAGS',
  'AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER',
  'CLUSTER_NAME',
  'CLUSTER_ENDPOINT',
  'ENABLE_POD_ENI',
  'POD_SECURITY_GROUP_ENFORCING_MODE',
  'DISABLE_TCP_EARLY_DEMUX',
  'ENABLE_SUBNET_DISCOVERY',
  'ENABLE_PREFIX_DELEGATION',
  'WARM_PREFIX_TARGET',
  'DISABLE_NETWORK_RESOURCE_PROVISIONING',
  'ENABLE_BANDWIDTH_PLUGIN',
  'ANNOTATE_POD_IP',
  'ENABLE_IPv4',
  'ENABLE_IPv6',
  'ENABLE_NFTABLES',
  'AWS_EXTERNAL_SERVICE_CIDRS',
  'AWS_EC2_ENDPOINT',
  'DISABLE_LEAKED_ENI_CLEANUP',
  'ENABLE_V6_EGRESS',
  'ENABLE_V4_EGRESS',
  'IP_COOLDOWN_PERIOD',
  'DISABLE_POD_V6',
  'NETWORK_POLICY_ENFORCING_MODE',
  'ENABLE_IMDS_ONLY_MODE',
  'ENABLE_MULTI_NIC',
] as const;

export interface Note {
  variable: string;
  message: string;
  /** The setting changed behaviour there and cannot here: refuse without --allow-lossy. */
  lossy: boolean;
}

type Values = Record<string, unknown>;

/** What the translation writes into, before defaults are dropped. */
interface Out {
  clusterName?: string;
  daemonEnv: Record<string, string>;
  janitorEnv: Record<string, string>;
  janitorEnabled?: boolean;
  cni: Record<string, string | number | boolean>;
  daemon: Values;
  serviceAccountAnnotations?: Record<string, string>;
  podNetworkConfigs: Values[];
}

type Ctx = { env: Record<string, string>; out: Out; note: (message: string, lossy?: boolean) => void };
type Rule = (value: string, ctx: Ctx) => void;

const truthy = (v: string) => ['true', '1', 'yes'].includes(v.trim().toLowerCase());
const same: Rule = () => {}; // marker: copied under its own name (see translate())
const alias =
  (ours: string): Rule =>
  (v, { out }) => {
    out.daemonEnv[ours] = v;
  };
/** Fine when false/unset; true asks for something vpc-ipam does not do. */
const unsupportedWhenTrue =
  (why: string): Rule =>
  (v, { note }) => {
    if (truthy(v)) note(`not supported: ${why}`, true);
  };
const dropped =
  (why: string): Rule =>
  (_v, { note }) =>
    note(`dropped: ${why}`);
/** AWS treats 0 or less as unset; vpc-ipam rejects it. */
const positiveOrUnset =
  (name: string): Rule =>
  (v, { out, note }) => {
    const n = Number(v.trim());
    if (v.trim() !== '' && Number.isInteger(n) && n <= 0) {
      note(`${v} means unset in the AWS plugin: left unset`);
      return;
    }
    out.daemonEnv[name] = v;
  };
const hostPath =
  (key: 'binDir' | 'confDir'): Rule =>
  (v, { out, note }) => {
    const path = v.replace(/^\/host(?=\/)/, '');
    out.cni[key] = path;
    note(`cni.${key}: ${path} (the host path; vpc-ipam mounts it itself)`);
  };

/** One rule per AWS variable; anything not here and not a vpc-ipam variable is reported and dropped. */
export const RULES: Record<string, Rule> = {
  AWS_MANAGE_ENIS_NON_SCHEDULABLE: same,
  AWS_VPC_CNI_NODE_PORT_SUPPORT: (v, { note }) => {
    if (!truthy(v))
      note('not supported as false: NodePort replies through the primary interface are always set up', true);
  },
  AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: (v, ctx) => {
    ctx.out.daemonEnv.VPC_IPAM_CUSTOM_NETWORKING = v;
    // The AWS plugin selects by the label k8s.amazonaws.com/eniConfig unless told otherwise.
    if (truthy(v) && ctx.env.ENI_CONFIG_LABEL_DEF === undefined) {
      ctx.out.daemonEnv.VPC_IPAM_NETWORK_CONFIG_LABEL = 'k8s.amazonaws.com/eniConfig';
    }
  },
  ENI_CONFIG_ANNOTATION_DEF: same,
  ENI_CONFIG_LABEL_DEF: alias('VPC_IPAM_NETWORK_CONFIG_LABEL'),
  HOST_CNI_BIN_PATH: hostPath('binDir'),
  HOST_CNI_CONFDIR_PATH: hostPath('confDir'),
  AWS_VPC_ENI_MTU: same,
  AWS_VPC_K8S_CNI_EXTERNALSNAT: same,
  AWS_VPC_K8S_CNI_RANDOMIZESNAT: same,
  AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: same,
  POD_MTU: (v, { out }) => {
    out.cni.mtu = Number(v);
  },
  WARM_ENI_TARGET: same,
  WARM_IP_TARGET: positiveOrUnset('WARM_IP_TARGET'),
  MINIMUM_IP_TARGET: positiveOrUnset('MINIMUM_IP_TARGET'),
  MAX_ENI: positiveOrUnset('MAX_ENI'),
  AWS_VPC_K8S_CNI_LOGLEVEL: (v, { out }) => {
    out.daemonEnv.LOG_LEVEL = v.trim().toLowerCase();
  },
  AWS_VPC_K8S_CNI_LOG_FILE: (v, { out, note }) => {
    if (v === '/host/var/log/aws-routed-eni/ipamd.log') {
      note('the AWS default file: vpc-ipam logs JSON to stdout (kubectl logs) unless a file is named');
    } else out.daemonEnv.AWS_VPC_K8S_CNI_LOG_FILE = v;
  },
  AWS_VPC_K8S_PLUGIN_LOG_FILE: (v, { out, note }) => {
    if (v === '/var/log/aws-routed-eni/plugin.log')
      return note('the AWS default: vpc-ipam keeps its own cni.logFile');
    if (!v.startsWith('/'))
      return note(`${JSON.stringify(v)}: the plugin logs to a file only; cni.logFile kept`, true);
    out.cni.logFile = v;
  },
  AWS_VPC_K8S_PLUGIN_LOG_LEVEL: (v, { out, note }) => {
    const level = v.trim().toLowerCase();
    out.cni.logLevel = level === 'fatal' ? 'error' : level;
    if (level === 'fatal') note('FATAL becomes error (the plugin has debug, info, warn, error)');
  },
  INTROSPECTION_BIND_ADDRESS: same,
  DISABLE_INTROSPECTION: same,
  DISABLE_METRICS: (v, { out }) => {
    if (truthy(v)) out.daemonEnv.METRICS_PORT = '0';
  },
  AWS_VPC_K8S_CNI_VETHPREFIX: (v, { out, note }) => {
    // aws-node's veths keep their names: the takeover must know them. vpc-ipam's own stay `vpc`.
    out.daemonEnv.VPC_IPAM_AWS_CNI_VETH_PREFIX = v;
    if (v !== 'eni')
      note(
        `aws-node's ${v}… veths are adopted under VPC_IPAM_AWS_CNI_VETH_PREFIX; vpc-ipam names its own vpc…`,
      );
  },
  ADDITIONAL_ENI_TAGS: same,
  AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER: dropped(
    'a no-op in the AWS plugin since v1.12.1; cni.setSysctls sets loose rp_filter',
  ),
  CLUSTER_NAME: (v, { out }) => {
    out.clusterName = v;
  },
  CLUSTER_ENDPOINT: dropped('the daemon uses the in-cluster configuration'),
  ENABLE_POD_ENI: unsupportedWhenTrue(
    'security groups for pods (trunk/branch ENIs); use POD_SECURITY_GROUP_IDS or a PodNetworkConfig per node',
  ),
  POD_SECURITY_GROUP_ENFORCING_MODE: dropped('only meaningful with ENABLE_POD_ENI'),
  DISABLE_TCP_EARLY_DEMUX: unsupportedWhenTrue('only needed for branch-ENI pods (ENABLE_POD_ENI)'),
  ENABLE_SUBNET_DISCOVERY: same,
  ENABLE_PREFIX_DELEGATION: unsupportedWhenTrue(
    'prefix delegation; vpc-ipam assigns secondary IPs (see WARM_PREFIX_TARGET)',
  ),
  WARM_PREFIX_TARGET: (v, ctx) => {
    if (!truthy(ctx.env.ENABLE_PREFIX_DELEGATION ?? 'false')) return; // ignored there too
    const n = Number(v);
    if (ctx.env.WARM_IP_TARGET === undefined && Number.isInteger(n) && n > 0) {
      ctx.out.daemonEnv.WARM_IP_TARGET = String(16 * n);
      ctx.note(`${n} prefix(es) of 16 IPs become WARM_IP_TARGET=${16 * n}`);
    }
  },
  DISABLE_NETWORK_RESOURCE_PROVISIONING: same,
  ENABLE_BANDWIDTH_PLUGIN: (v, { out }) => {
    if (truthy(v)) out.cni.bandwidth = true;
  },
  ANNOTATE_POD_IP: same,
  ENABLE_IPv4: (v, { note }) => {
    if (!truthy(v)) note('vpc-ipam is IPv4 only', true);
  },
  ENABLE_IPv6: unsupportedWhenTrue('vpc-ipam is IPv4 only'),
  ENABLE_NFTABLES: dropped('deprecated in the AWS plugin; vpc-ipam uses the image iptables (nft backend)'),
  AWS_EXTERNAL_SERVICE_CIDRS: same,
  AWS_EC2_ENDPOINT: (v, { out }) => {
    out.daemonEnv.VPC_IPAM_EC2_ENDPOINT = v;
    out.janitorEnv.VPC_IPAM_EC2_ENDPOINT = v;
  },
  DISABLE_LEAKED_ENI_CLEANUP: (v, { out, note }) => {
    if (!truthy(v)) return;
    out.janitorEnabled = false;
    note('leaked ENIs are cleaned by the janitor Deployment: janitor.enabled=false');
  },
  ENABLE_V6_EGRESS: unsupportedWhenTrue('vpc-ipam is IPv4 only'),
  // Only meaningful in an IPv6 cluster (which vpc-ipam is not): nothing to carry.
  ENABLE_V4_EGRESS: () => {},
  IP_COOLDOWN_PERIOD: same,
  DISABLE_POD_V6: (v, { out }) => {
    if (truthy(v)) out.cni.disablePodIPv6 = true;
  },
  NETWORK_POLICY_ENFORCING_MODE: (v, { note }) => {
    note('vpc-ipam ships no network policy agent; run a policy engine alongside', v.trim() === 'strict');
  },
  ENABLE_IMDS_ONLY_MODE: (v, { out, note }) => {
    if (!truthy(v)) return;
    out.daemonEnv.DISABLE_NETWORK_RESOURCE_PROVISIONING = 'true';
    out.janitorEnabled = false;
    note(
      'becomes DISABLE_NETWORK_RESOURCE_PROVISIONING=true and no janitor, but vpc-ipam still makes EC2 Describe calls',
      true,
    );
  },
  ENABLE_MULTI_NIC: unsupportedWhenTrue('vpc-ipam manages network card 0 only'),
  // Not in the README's list, common in aws-node values.
  AWS_REGION: (v, { out }) => {
    out.daemonEnv.AWS_REGION = v;
    out.janitorEnv.AWS_REGION = v;
  },
  VPC_CNI_VERSION: dropped('the aws-node image version'),
};

/** The `env`, `init.env` and `extraEnv` (name/value) maps of an aws-vpc-cni values file. */
function collectEnv(
  values: Values,
  note: (v: string, m: string, lossy?: boolean) => void,
): Record<string, string> {
  const env: Record<string, string> = {};
  const add = (name: string, value: unknown, where: string) => {
    if (value === null || value === undefined) return;
    if (typeof value === 'object') return note(name, `${where}: not a plain value; skipped`, true);
    env[name] = String(value);
  };
  const init = (values.init as Values | undefined)?.env as Values | undefined;
  for (const [k, v] of Object.entries(init ?? {})) add(k, v, 'init.env');
  for (const [k, v] of Object.entries((values.env as Values | undefined) ?? {})) add(k, v, 'env');
  for (const e of (values.extraEnv as
    | { name?: string; value?: unknown; valueFrom?: unknown }[]
    | undefined) ?? []) {
    if (!e?.name) continue;
    if (e.valueFrom !== undefined)
      note(e.name, 'extraEnv valueFrom cannot be translated; set it by hand', true);
    else add(e.name, e.value, 'extraEnv');
  }
  return env;
}

/** Pure: an aws-vpc-cni values object -> vpc-ipam values (only non-defaults) and notes. */
export function translate(
  aws: Values,
  defaults: Values,
  opts: { clusterName?: string; region?: string } = {},
): { values: Values; notes: Note[] } {
  const notes: Note[] = [];
  const addNote = (variable: string, message: string, lossy = false) =>
    notes.push({ variable, message, lossy });
  const env = collectEnv(aws, addNote);
  const out: Out = { daemonEnv: {}, janitorEnv: {}, cni: {}, daemon: {}, podNetworkConfigs: [] };
  const ours = new Set(daemonEnvVarNames());
  for (const [name, value] of Object.entries(env)) {
    const rule = RULES[name];
    const ctx: Ctx = { env, out, note: (m, lossy = false) => addNote(name, m, lossy) };
    if (rule === same || (rule === undefined && ours.has(name))) {
      if (ours.has(name)) out.daemonEnv[name] = value;
      else addNote(name, 'not supported by this vpc-ipam build; dropped', true);
    } else if (rule) rule(value, ctx);
    else addNote(name, 'not a variable vpc-ipam knows; dropped');
  }
  // Command line wins over the env map for the two values vpc-ipam requires.
  if (opts.clusterName) out.clusterName = opts.clusterName;
  if (opts.region) {
    out.daemonEnv.AWS_REGION = opts.region;
    out.janitorEnv.AWS_REGION = opts.region;
  }
  const sa = (aws.serviceAccount as Values | undefined)?.annotations as Record<string, string> | undefined;
  if (sa && Object.keys(sa).length > 0) out.serviceAccountAnnotations = sa;
  const eni = aws.eniConfig as {
    create?: boolean;
    subnets?: Record<string, { id?: string; securityGroups?: string[] }>;
  };
  if (eni?.create && eni.subnets) {
    for (const [zone, s] of Object.entries(eni.subnets)) {
      if (!s?.id) continue;
      out.podNetworkConfigs.push({
        name: zone,
        availabilityZone: zone,
        subnetIds: [s.id],
        ...(s.securityGroups?.length ? { securityGroupIds: s.securityGroups } : {}),
      });
    }
  }
  for (const key of [
    'nodeSelector',
    'tolerations',
    'affinity',
    'priorityClassName',
    'podAnnotations',
    'podLabels',
  ]) {
    const v = aws[key];
    if (v !== undefined && v !== null && !(typeof v === 'object' && Object.keys(v).length === 0))
      out.daemon[key] = v;
  }
  return { values: render(out, defaults), notes };
}

/** vpc-ipam values with only what differs from `defaults` (helm/vpc-ipam/values.yaml). */
function render(out: Out, defaults: Values): Values {
  const d = defaults as {
    daemon: { env: Record<string, unknown> } & Values;
    janitor: { env: Record<string, unknown> };
    cni: Values;
  };
  // "9001" and 9001 are the same setting; objects compare by content.
  const differs = (a: unknown, b: unknown) =>
    typeof a === 'object' || typeof b === 'object'
      ? JSON.stringify(a) !== JSON.stringify(b)
      : String(a) !== String(b);
  const pick = (m: Record<string, unknown>, base: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(m).filter(([k, v]) => differs(v, base[k])));
  const values: Values = {};
  if (out.clusterName) values.clusterName = out.clusterName;
  if (out.serviceAccountAnnotations) {
    values.serviceAccount = {
      daemon: { annotations: out.serviceAccountAnnotations },
      janitor: { annotations: out.serviceAccountAnnotations },
    };
  }
  const daemon: Values = { ...pick(out.daemon, d.daemon) };
  const daemonEnv = pick(out.daemonEnv, d.daemon.env);
  if (Object.keys(daemonEnv).length > 0) daemon.env = daemonEnv;
  if (Object.keys(daemon).length > 0) values.daemon = daemon;
  const cni = pick(out.cni, d.cni);
  if (Object.keys(cni).length > 0) values.cni = cni;
  const janitor: Values = {};
  if (out.janitorEnabled === false) janitor.enabled = false;
  const janitorEnv = pick(out.janitorEnv, d.janitor.env);
  if (Object.keys(janitorEnv).length > 0) janitor.env = janitorEnv;
  if (Object.keys(janitor).length > 0) values.janitor = janitor;
  if (out.podNetworkConfigs.length > 0) values.podNetworkConfigs = out.podNetworkConfigs;
  return values;
}

function main(): void {
  const { values: args, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'cluster-name': { type: 'string' },
      region: { type: 'string' },
      output: { type: 'string', short: 'o' },
      'allow-lossy': { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) {
    process.stderr.write(
      'usage: node scripts/translate-aws-values.ts AWS_VALUES.yaml [--cluster-name N] [--region R] [-o OUT] [--allow-lossy]\n',
    );
    process.exit(1);
  }
  let aws: Values;
  try {
    aws = (loadYaml(readFileSync(positionals[0]!, 'utf8')) as Values | null) ?? {};
    if (typeof aws !== 'object' || Array.isArray(aws)) throw new Error('not a YAML mapping');
  } catch (err) {
    process.stderr.write(`translate-aws-values: ${positionals[0]}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const defaults = loadYaml(
    readFileSync(resolve(import.meta.dirname, '../helm/vpc-ipam/values.yaml'), 'utf8'),
  ) as Values;
  const { values, notes } = translate(aws, defaults, {
    ...(args['cluster-name'] ? { clusterName: args['cluster-name'] } : {}),
    ...(args.region ? { region: args.region } : {}),
  });
  for (const n of notes) process.stderr.write(`${n.lossy ? 'LOSSY' : 'note'}: ${n.variable}: ${n.message}\n`);
  const missing = [!values.clusterName && 'clusterName (CLUSTER_NAME or --cluster-name)'].filter(Boolean);
  const text = `# vpc-ipam values translated from ${positionals[0]} by scripts/translate-aws-values.ts\n${dumpYaml(values, { noRefs: true })}`;
  if (args.output) writeFileSync(args.output, text);
  else process.stdout.write(text);
  if (missing.length > 0) process.stderr.write(`note: still required: ${missing.join(', ')}\n`);
  if (notes.some((n) => n.lossy) && !args['allow-lossy']) {
    process.stderr.write(
      'translate-aws-values: some settings cannot be carried over (LOSSY above); --allow-lossy to accept\n',
    );
    process.exit(2);
  }
}

if (import.meta.main) main();
