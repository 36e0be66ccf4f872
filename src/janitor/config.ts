// Every environment variable the janitor accepts (JANITOR_ENV_VARS; the Helm chart is tested
// against it) and loadJanitorConfig(env), a pure parse that names the bad variable and what it accepts.
import { DAEMON_ENV_VARS } from '../ipam-daemon/config.ts';
import { bool, ConfigError, type Env, type EnvVarSpec, seconds, text } from '../lib/env-catalogue.ts';

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * A variable the daemon reads too takes the daemon's entry (same parse and accepted values: the
 * janitor must accept every cluster name the daemons tag with), with the janitor's own wording.
 */
function daemonVar(name: string, own: Partial<EnvVarSpec> = {}): EnvVarSpec {
  const spec = DAEMON_ENV_VARS.find((s) => s.name === name);
  if (!spec) throw new Error(`janitor config bug: ${name} is not in DAEMON_ENV_VARS`);
  return { ...spec, ...own };
}

export const JANITOR_ENV_VARS: readonly EnvVarSpec[] = [
  daemonVar('CLOUD_PROVIDER', { description: 'Which cloud holds the interfaces.' }),
  daemonVar('CLUSTER_NAME', {
    default: null,
    accepted: 'the cluster name the daemons tag interfaces with (required)',
    description: 'Only interfaces tagged with this cluster name are considered.',
  }),
  daemonVar('AWS_REGION', {
    accepted: 'an AWS region such as us-east-1 (required on AWS)',
    description: 'AWS region of the cluster.',
  }),
  daemonVar('VPC_IPAM_EC2_ENDPOINT'),
  {
    name: 'JANITOR_GRACE_PERIOD',
    default: '3600',
    accepted: 'seconds >= 60',
    description: 'An unattached interface must be at least this old before it is deleted.',
    group: 'daemon',
    parse: seconds(60, 30 * 86400),
  },
  {
    name: 'JANITOR_INTERVAL',
    default: '300',
    accepted: 'seconds >= 1',
    description: 'Time between two sweeps.',
    group: 'daemon',
    parse: seconds(1, 86400),
  },
  {
    name: 'JANITOR_DRY_RUN',
    default: 'false',
    accepted: 'true | false',
    description: 'true: log what would be deleted, delete nothing.',
    group: 'daemon',
    parse: bool,
  },
  {
    name: 'LEASE_NAME',
    default: 'vpc-ipam-janitor',
    accepted: 'a DNS-1123 name',
    description: 'The coordination.k8s.io Lease that elects the one active janitor.',
    group: 'kubernetes',
    parse: text(NAME, 'a DNS-1123 name'),
  },
  {
    name: 'POD_NAMESPACE',
    default: 'kube-system',
    accepted: 'a namespace name (downward API metadata.namespace)',
    description: 'Namespace of the Lease.',
    group: 'kubernetes',
    parse: text(NAME, 'a namespace name'),
  },
  {
    name: 'POD_NAME',
    default: null,
    accepted: 'this pod name (downward API metadata.name; default: the host name)',
    description: 'Identity written into the Lease.',
    group: 'kubernetes',
    parse: text(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/, 'a pod name'),
  },
  {
    name: 'LEASE_DURATION',
    default: '30',
    accepted: 'seconds >= 2',
    description: 'How long followers wait after the last renewal before taking over.',
    group: 'kubernetes',
    parse: seconds(2, 3600),
  },
  {
    name: 'LEASE_RENEW_DEADLINE',
    default: '20',
    accepted: 'seconds >= 1, below LEASE_DURATION',
    description: 'A leader that could not renew for this long stops deleting.',
    group: 'kubernetes',
    parse: seconds(1, 3600),
  },
  {
    name: 'LEASE_RETRY_PERIOD',
    default: '5',
    accepted: 'seconds > 0, below LEASE_RENEW_DEADLINE',
    description: 'Time between two lease attempts.',
    group: 'kubernetes',
    parse: seconds(0.01, 3600),
  },
  daemonVar('LOG_LEVEL'),
];

export interface JanitorConfig {
  cloud: 'aws' | 'azure';
  clusterName: string;
  awsRegion: string | null;
  ec2Endpoint: string | null;
  graceMs: number;
  intervalMs: number;
  dryRun: boolean;
  lease: {
    name: string;
    namespace: string;
    identity: string;
    durationSeconds: number;
    renewDeadlineMs: number;
    retryPeriodMs: number;
  };
  logLevel: string;
}

/** A ConfigError for one variable, under its own name. */
export class JanitorConfigError extends ConfigError {
  constructor(variable: string, value: string | undefined, accepted: string, reason: string) {
    super([{ variable, value: value ?? '', accepted, reason }]);
    this.name = 'JanitorConfigError';
  }
}

export function loadJanitorConfig(env: Env, hostname: string): JanitorConfig {
  const get = <T>(name: string): T | null => {
    const spec = JANITOR_ENV_VARS.find((s) => s.name === name)!;
    let raw = env[name];
    let source = name;
    for (const alias of spec.aliases ?? []) {
      if (raw !== undefined && raw !== '') break;
      raw = env[alias];
      source = alias;
    }
    if (raw === undefined || raw.trim() === '') {
      if (spec.default === null) return null;
      raw = spec.default;
      source = name;
    }
    try {
      return spec.parse(raw) as T;
    } catch (err) {
      throw new JanitorConfigError(source, raw, spec.accepted, (err as Error).message);
    }
  };
  const required = <T>(name: string): T => {
    const v = get<T>(name);
    if (v === null) {
      const spec = JANITOR_ENV_VARS.find((s) => s.name === name)!;
      throw new JanitorConfigError(name, undefined, spec.accepted, 'required');
    }
    return v;
  };
  const cloud = required<'aws' | 'azure'>('CLOUD_PROVIDER');
  const config: JanitorConfig = {
    cloud,
    clusterName: required<string>('CLUSTER_NAME'),
    awsRegion: cloud === 'aws' ? required<string>('AWS_REGION') : get<string>('AWS_REGION'),
    ec2Endpoint: get<string>('VPC_IPAM_EC2_ENDPOINT'),
    graceMs: required<number>('JANITOR_GRACE_PERIOD') * 1000,
    intervalMs: required<number>('JANITOR_INTERVAL') * 1000,
    dryRun: required<boolean>('JANITOR_DRY_RUN'),
    lease: {
      name: required<string>('LEASE_NAME'),
      namespace: required<string>('POD_NAMESPACE'),
      identity: get<string>('POD_NAME') ?? hostname,
      durationSeconds: Math.ceil(required<number>('LEASE_DURATION')),
      renewDeadlineMs: required<number>('LEASE_RENEW_DEADLINE') * 1000,
      retryPeriodMs: required<number>('LEASE_RETRY_PERIOD') * 1000,
    },
    logLevel: required<string>('LOG_LEVEL'),
  };
  const spec = (n: string) => JANITOR_ENV_VARS.find((s) => s.name === n)!.accepted;
  if (config.lease.renewDeadlineMs >= config.lease.durationSeconds * 1000) {
    throw new JanitorConfigError(
      'LEASE_RENEW_DEADLINE',
      env.LEASE_RENEW_DEADLINE,
      spec('LEASE_RENEW_DEADLINE'),
      'not below LEASE_DURATION',
    );
  }
  if (config.lease.retryPeriodMs >= config.lease.renewDeadlineMs) {
    throw new JanitorConfigError(
      'LEASE_RETRY_PERIOD',
      env.LEASE_RETRY_PERIOD,
      spec('LEASE_RETRY_PERIOD'),
      'not below LEASE_RENEW_DEADLINE',
    );
  }
  return config;
}
