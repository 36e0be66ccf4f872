// vpc-ipam status against the local cloud: seeds (or reuses) a cluster in LocalStack, serves IMDS
// for one of its nodes, discovers that node through the AWS provider exactly as the daemon does,
// and prints its limits, max pods, interfaces and subnets.
//
//   bash localstack/start.sh
//   npx node scripts/status.ts [--cluster NAME] [--instance-type m5.large|m5.4xlarge] [--json]
//
// Env: VPC_IPAM_EC2_ENDPOINT (default http://127.0.0.1:4566), AWS_REGION (default us-east-1).

import { parseArgs } from 'node:util';
import { checkLocalStack } from '../localstack/health.ts';
import { DEFAULT_REGION, seedCluster } from '../localstack/seed.ts';
import { createAwsProvider, maxPods } from '../src/providers/aws/index.ts';
import { subnetGateway } from '../src/providers/aws/ipv4.ts';
import type { ApiCallEvent, InterfaceInfo, NodeInfo, SubnetInfo } from '../src/providers/types.ts';
import { liveEc2Source, startImdsFake } from '../test/fakes/imds-aws.ts';

const USAGE = 'usage: node scripts/status.ts [--cluster NAME] [--instance-type m5.large|m5.4xlarge] [--json]';

interface Status {
  cluster: string;
  endpoint: string;
  node: NodeInfo;
  maxPods: number;
  interfaces: InterfaceInfo[];
  subnets: SubnetInfo[];
  apiCalls: Record<string, { calls: number; throttled: number; errors: number; totalMs: number }>;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => `  ${r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ')}`.trimEnd()).join('\n');
}

function render(s: Status): string {
  const n = s.node;
  const out: string[] = [];
  out.push(`vpc-ipam status: cluster ${s.cluster} on ${s.endpoint}`);
  out.push('');
  out.push('Node (discovered through IMDSv2 + EC2)');
  out.push(
    table([
      ['instance', `${n.instanceId}  ${n.instanceType}  ${n.availabilityZone} (${n.region})`],
      ['vpc', `${n.vpcId}  ${n.vpcCidrs.join(', ')}`],
      ['primary', `${n.primaryIp}  ${n.primaryMac}  ${n.primarySubnetId}`],
      ['security groups', n.securityGroupIds.join(', ')],
      ['limits', `${n.maxInterfaces} ENIs x ${n.ipsPerInterface} IPs per ENI`],
      ['max pods', `${s.maxPods}  (= ${n.maxInterfaces} x (${n.ipsPerInterface} - 1) + 2)`],
    ]),
  );
  out.push('');
  out.push(`Interfaces (${s.interfaces.length} of ${n.maxInterfaces})`);
  out.push(
    table([
      ['DEV', 'ENI', 'MAC', 'SUBNET', 'CIDR', 'GATEWAY', 'PRIMARY IP', 'SECONDARY IPS'],
      ...s.interfaces.map((i) => [
        String(i.deviceIndex),
        i.id,
        i.mac,
        i.subnetId,
        i.subnetCidr,
        i.subnetCidr ? subnetGateway(i.subnetCidr) : '',
        i.primaryIp,
        i.secondaryIps.length === 0 ? '-' : `${i.secondaryIps.length}: ${i.secondaryIps.join(' ')}`,
      ]),
    ]),
  );
  out.push('');
  out.push('Subnets of the VPC');
  out.push(
    table([
      ['SUBNET', 'AZ', 'CIDR', 'FREE IPS', 'ROLE'],
      ...s.subnets.map((x) => [
        x.id,
        x.availabilityZone,
        x.cidr,
        String(x.availableIps),
        x.tags['vpc-ipam/seed-role'] ?? '',
      ]),
    ]),
  );
  out.push('');
  out.push('EC2 calls made');
  out.push(
    table([
      ['API', 'CALLS', 'THROTTLED', 'ERRORS', 'AVG MS'],
      ...Object.entries(s.apiCalls).map(([api, c]) => [
        api,
        String(c.calls),
        String(c.throttled),
        String(c.errors),
        (c.totalMs / c.calls).toFixed(1),
      ]),
    ]),
  );
  return out.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cluster: { type: 'string', default: 'vpc-ipam-demo' },
      'instance-type': { type: 'string', default: 'm5.large' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const endpoint = process.env.VPC_IPAM_EC2_ENDPOINT ?? 'http://127.0.0.1:4566';
  const region = process.env.AWS_REGION ?? DEFAULT_REGION;
  await checkLocalStack(endpoint);
  const seed = await seedCluster({ clusterName: values.cluster, endpoint, region });
  const instance = seed.instances.find((i) => i.type === values['instance-type']);
  if (!instance) {
    throw new Error(
      `--instance-type must be one of ${seed.instances.map((i) => i.type).join(', ')}; got ${values['instance-type']}`,
    );
  }
  const imds = await startImdsFake({ source: liveEc2Source({ instanceId: instance.id, endpoint, region }) });
  const apiCalls: Status['apiCalls'] = {};
  const observe = (e: ApiCallEvent) => {
    const c = apiCalls[e.api] ?? { calls: 0, throttled: 0, errors: 0, totalMs: 0 };
    apiCalls[e.api] = c;
    c.calls++;
    c.totalMs += e.durationMs;
    if (e.outcome === 'throttled') c.throttled++;
    if (e.outcome === 'error') c.errors++;
  };
  const provider = createAwsProvider({
    region,
    ec2Endpoint: endpoint,
    imdsEndpoint: imds.url,
    clusterName: values.cluster,
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
    },
    observer: { onCall: observe },
    pickAddresses: true,
  });
  try {
    const node = await provider.describeNode();
    const interfaces = await provider.listInterfaces();
    const subnets = await provider.describeSubnets(seed.subnets.map((s) => s.id));
    const status: Status = {
      cluster: values.cluster,
      endpoint,
      node,
      maxPods: maxPods(node),
      interfaces,
      subnets,
      apiCalls,
    };
    process.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : `${render(status)}\n`);
  } finally {
    await provider.close();
    await imds.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`status: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
