// Seeds LocalStack's EC2 with a realistic cluster VPC and prints its ids as JSON.
//
//   npx node localstack/seed.ts --cluster NAME [--endpoint URL] [--region R] [--cidr 10.x.0.0/16]
//   npx node localstack/seed.ts --cluster NAME --delete
//
// What it builds, all tagged vpc-ipam/cluster-name=NAME (plus kubernetes.io/cluster/NAME=owned):
//   - a /16 VPC (default: a free /16 inside 10.64.0.0/10 chosen from a hash of the name, so
//     clusters seeded side by side do not overlap) and a secondary CIDR in 100.64.0.0/10, as
//     custom-networking setups have;
//   - a /20 node subnet in each of two AZs, and a deliberately tiny /27 in the first AZ (27 usable
//     addresses) to exercise subnet exhaustion;
//   - a security group;
//   - one m5.large (3 ENIs x 10 IPs) in the first AZ and one m5.4xlarge (8 x 30) in the second;
//     RunInstances gives each its primary ENI.
// Seeding is idempotent: a cluster whose seed completed is read back, not created again.
// Importable: seedCluster(), readSeed(), deleteCluster(), localEc2Client().

import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import {
  AssociateVpcCidrBlockCommand,
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateTagsCommand,
  CreateVpcCommand,
  DeleteNetworkInterfaceCommand,
  DeleteSecurityGroupCommand,
  DeleteSubnetCommand,
  DeleteVpcCommand,
  DescribeAvailabilityZonesCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  DetachNetworkInterfaceCommand,
  EC2Client,
  type Instance,
  RunInstancesCommand,
  type Tag,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { normalizeMac } from '../src/providers/aws/mac.ts';

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:4566';
export const DEFAULT_REGION = 'us-east-1';
const CLUSTER_TAG = 'vpc-ipam/cluster-name';
const ROLE_TAG = 'vpc-ipam/seed-role';
const COMPLETE_TAG = 'vpc-ipam/seed-complete';
const CLUSTER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export interface SeedOptions {
  clusterName: string;
  endpoint?: string;
  region?: string;
  /** The VPC's /16; default derived from the cluster name. */
  cidr?: string;
}

export interface SeedSubnet {
  id: string;
  az: string;
  cidr: string;
  /** 'node' subnets hold the instances; 'tiny' is the /27 for exhaustion tests. */
  role: 'node' | 'tiny';
}

export interface SeedInstance {
  id: string;
  type: string;
  az: string;
  subnetId: string;
  primaryEniId: string;
  mac: string;
  privateIp: string;
}

export interface SeedResult {
  clusterName: string;
  region: string;
  endpoint: string;
  vpcId: string;
  cidr: string;
  secondaryCidrs: string[];
  subnets: SeedSubnet[];
  sgId: string;
  instances: SeedInstance[];
}

export function localEc2Client(endpoint = DEFAULT_ENDPOINT, region = DEFAULT_REGION): EC2Client {
  return new EC2Client({
    region,
    endpoint,
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
    },
    maxAttempts: 2,
  });
}

function validateClusterName(name: string): void {
  if (!CLUSTER_NAME_RE.test(name)) {
    throw new Error(
      `invalid cluster name ${JSON.stringify(name)}: use 1-100 of [A-Za-z0-9._-], starting alphanumeric`,
    );
  }
}

/** The /16 inside 10.64.0.0/10 that the name hashes to, then the next ones not yet used. */
export function candidateCidrs(clusterName: string): string[] {
  const start = createHash('sha256').update(clusterName).digest().readUInt8(0) % 64;
  return Array.from({ length: 64 }, (_, i) => `10.${64 + ((start + i) % 64)}.0.0/16`);
}

function tags(clusterName: string, role: string, name: string): Tag[] {
  return [
    { Key: CLUSTER_TAG, Value: clusterName },
    { Key: ROLE_TAG, Value: role },
    { Key: `kubernetes.io/cluster/${clusterName}`, Value: 'owned' },
    { Key: 'Name', Value: name },
  ];
}

function tagValue(t: Tag[] | undefined, key: string): string | undefined {
  return t?.find((x) => x.Key === key)?.Value;
}

function octet2(cidr: string): number {
  const m = /^10\.(\d+)\.0\.0\/16$/.exec(cidr);
  if (!m) throw new Error(`seed CIDR must be a 10.x.0.0/16, got ${cidr}`);
  return Number(m[1]);
}

async function findVpc(ec2: EC2Client, clusterName: string) {
  const out = await ec2.send(
    new DescribeVpcsCommand({ Filters: [{ Name: `tag:${CLUSTER_TAG}`, Values: [clusterName] }] }),
  );
  return out.Vpcs ?? [];
}

/** Reads a seeded cluster back from EC2; undefined when no completed seed exists. */
export async function readSeed(options: SeedOptions): Promise<SeedResult | undefined> {
  validateClusterName(options.clusterName);
  const endpoint = options.endpoint ?? DEFAULT_ENDPOINT;
  const region = options.region ?? DEFAULT_REGION;
  const ec2 = localEc2Client(endpoint, region);
  try {
    const vpc = (await findVpc(ec2, options.clusterName)).find(
      (v) => tagValue(v.Tags, COMPLETE_TAG) === 'true',
    );
    if (!vpc?.VpcId || !vpc.CidrBlock) return undefined;
    const byVpc = [{ Name: 'vpc-id', Values: [vpc.VpcId] }];
    const [subnets, sgs, reservations, enis] = await Promise.all([
      ec2.send(new DescribeSubnetsCommand({ Filters: byVpc })),
      ec2.send(
        new DescribeSecurityGroupsCommand({
          Filters: [...byVpc, { Name: `tag:${CLUSTER_TAG}`, Values: [options.clusterName] }],
        }),
      ),
      ec2.send(
        new DescribeInstancesCommand({
          Filters: [
            ...byVpc,
            { Name: `tag:${CLUSTER_TAG}`, Values: [options.clusterName] },
            { Name: 'instance-state-name', Values: ['pending', 'running'] },
          ],
        }),
      ),
      // MACs come from here: DescribeInstances in LocalStack shows one constant MAC for all.
      ec2.send(new DescribeNetworkInterfacesCommand({ Filters: byVpc })),
    ]);
    const instances: Instance[] = (reservations.Reservations ?? []).flatMap((r) => r.Instances ?? []);
    return {
      clusterName: options.clusterName,
      region,
      endpoint,
      vpcId: vpc.VpcId,
      cidr: vpc.CidrBlock,
      secondaryCidrs: (vpc.CidrBlockAssociationSet ?? [])
        .filter(
          (a) => a.CidrBlock && a.CidrBlock !== vpc.CidrBlock && a.CidrBlockState?.State !== 'disassociated',
        )
        .map((a) => a.CidrBlock!),
      subnets: (subnets.Subnets ?? [])
        .map((s) => ({
          id: s.SubnetId!,
          az: s.AvailabilityZone!,
          cidr: s.CidrBlock!,
          role: tagValue(s.Tags, ROLE_TAG) === 'tiny' ? ('tiny' as const) : ('node' as const),
        }))
        .sort((a, b) => a.role.localeCompare(b.role) || a.az.localeCompare(b.az)),
      sgId: sgs.SecurityGroups?.[0]?.GroupId ?? '',
      instances: instances
        .map((i) => {
          const eniId = i.NetworkInterfaces?.find((n) => n.Attachment?.DeviceIndex === 0)?.NetworkInterfaceId;
          const eni = enis.NetworkInterfaces?.find((n) => n.NetworkInterfaceId === eniId);
          return {
            id: i.InstanceId!,
            type: i.InstanceType!,
            az: i.Placement?.AvailabilityZone ?? '',
            subnetId: i.SubnetId ?? '',
            primaryEniId: eni?.NetworkInterfaceId ?? '',
            mac: eniId ? normalizeMac(eni?.MacAddress, eniId) : '',
            privateIp: i.PrivateIpAddress ?? '',
          };
        })
        .sort((a, b) => a.type.localeCompare(b.type)),
    };
  } finally {
    ec2.destroy();
  }
}

async function pickCidr(ec2: EC2Client, clusterName: string): Promise<string> {
  const used = new Set(((await ec2.send(new DescribeVpcsCommand({}))).Vpcs ?? []).map((v) => v.CidrBlock));
  const candidates = candidateCidrs(clusterName);
  // EC2 allows overlapping VPCs, so when all 64 are taken we overlap rather than fail.
  return candidates.find((c) => !used.has(c)) ?? candidates[0]!;
}

/** Creates (or reads back) the cluster's VPC, subnets, security group and instances. */
export async function seedCluster(options: SeedOptions): Promise<SeedResult> {
  const existing = await readSeed(options);
  if (existing) return existing;
  const { clusterName } = options;
  const ec2 = localEc2Client(options.endpoint, options.region);
  try {
    const cidr = options.cidr ?? (await pickCidr(ec2, clusterName));
    const b = octet2(cidr);
    const vpc = await ec2.send(
      new CreateVpcCommand({
        CidrBlock: cidr,
        TagSpecifications: [{ ResourceType: 'vpc', Tags: tags(clusterName, 'vpc', `${clusterName}-vpc`) }],
      }),
    );
    const vpcId = vpc.Vpc!.VpcId!;
    await ec2.send(new AssociateVpcCidrBlockCommand({ VpcId: vpcId, CidrBlock: `100.${b}.0.0/16` }));

    const azs = (
      await ec2.send(
        new DescribeAvailabilityZonesCommand({ Filters: [{ Name: 'state', Values: ['available'] }] }),
      )
    )
      .AvailabilityZones!.map((z) => z.ZoneName!)
      .sort()
      .slice(0, 2);
    if (azs.length < 2) throw new Error(`region ${options.region ?? DEFAULT_REGION} has fewer than two AZs`);
    const [azA, azB] = azs as [string, string];

    const subnet = async (az: string, subnetCidr: string, role: string) =>
      (
        await ec2.send(
          new CreateSubnetCommand({
            VpcId: vpcId,
            AvailabilityZone: az,
            CidrBlock: subnetCidr,
            TagSpecifications: [
              { ResourceType: 'subnet', Tags: tags(clusterName, role, `${clusterName}-${role}-${az}`) },
            ],
          }),
        )
      ).Subnet!.SubnetId!;
    const nodeA = await subnet(azA, `10.${b}.0.0/20`, 'node');
    const nodeB = await subnet(azB, `10.${b}.16.0/20`, 'node');
    await subnet(azA, `10.${b}.32.0/27`, 'tiny');

    const sg = await ec2.send(
      new CreateSecurityGroupCommand({
        VpcId: vpcId,
        GroupName: `${clusterName}-nodes`,
        Description: `vpc-ipam seed: nodes of cluster ${clusterName}`,
        TagSpecifications: [
          { ResourceType: 'security-group', Tags: tags(clusterName, 'nodes', `${clusterName}-nodes`) },
        ],
      }),
    );
    const sgId = sg.GroupId!;

    const images = await ec2.send(
      new DescribeImagesCommand({ Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }),
    );
    const imageId = images.Images?.find((i) => i.ImageId)?.ImageId;
    if (!imageId) throw new Error('LocalStack lists no x86_64 image to launch instances from');

    const run = async (type: string, subnetId: string) =>
      ec2.send(
        new RunInstancesCommand({
          ImageId: imageId,
          InstanceType: type as 'm5.large',
          MinCount: 1,
          MaxCount: 1,
          SubnetId: subnetId,
          SecurityGroupIds: [sgId],
          TagSpecifications: [
            { ResourceType: 'instance', Tags: tags(clusterName, 'node', `${clusterName}-${type}`) },
          ],
        }),
      );
    await run('m5.large', nodeA);
    await run('m5.4xlarge', nodeB);

    // Marks the seed usable; a crash before this leaves an incomplete VPC that is never read back.
    await ec2.send(
      new CreateTagsCommand({ Resources: [vpcId], Tags: [{ Key: COMPLETE_TAG, Value: 'true' }] }),
    );
  } finally {
    ec2.destroy();
  }
  const result = await readSeed(options);
  if (!result) throw new Error(`seed of ${clusterName} completed but could not be read back`);
  return result;
}

/**
 * Deletes everything tagged with the cluster name (and every ENI in its VPCs): for test cleanup.
 * Best effort: returns the errors it met instead of stopping at the first.
 */
export async function deleteCluster(options: SeedOptions): Promise<string[]> {
  validateClusterName(options.clusterName);
  const ec2 = localEc2Client(options.endpoint, options.region);
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      errors.push(`${what}: ${(err as Error).message}`);
    }
  };
  try {
    for (const vpc of await findVpc(ec2, options.clusterName)) {
      const byVpc = [{ Name: 'vpc-id', Values: [vpc.VpcId!] }];
      const enis =
        (await ec2.send(new DescribeNetworkInterfacesCommand({ Filters: byVpc }))).NetworkInterfaces ?? [];
      for (const eni of enis) {
        if (eni.Attachment?.DeviceIndex === 0) continue; // goes with its instance
        if (eni.Attachment?.AttachmentId) {
          await attempt(`detach ${eni.NetworkInterfaceId}`, () =>
            ec2.send(
              new DetachNetworkInterfaceCommand({ AttachmentId: eni.Attachment!.AttachmentId!, Force: true }),
            ),
          );
        }
        await attempt(`delete ${eni.NetworkInterfaceId}`, () =>
          ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: eni.NetworkInterfaceId! })),
        );
      }
      const res = await ec2.send(new DescribeInstancesCommand({ Filters: byVpc }));
      const ids = (res.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId!);
      if (ids.length > 0) {
        await attempt('terminate instances', () =>
          ec2.send(new TerminateInstancesCommand({ InstanceIds: ids })),
        );
      }
      // Terminated instances' primary ENIs linger in moto; delete whatever is left unattached.
      const left =
        (await ec2.send(new DescribeNetworkInterfacesCommand({ Filters: byVpc }))).NetworkInterfaces ?? [];
      for (const eni of left) {
        await attempt(`delete ${eni.NetworkInterfaceId}`, () =>
          ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: eni.NetworkInterfaceId! })),
        );
      }
      for (const s of (await ec2.send(new DescribeSubnetsCommand({ Filters: byVpc }))).Subnets ?? []) {
        await attempt(`delete ${s.SubnetId}`, () =>
          ec2.send(new DeleteSubnetCommand({ SubnetId: s.SubnetId! })),
        );
      }
      const sgs =
        (await ec2.send(new DescribeSecurityGroupsCommand({ Filters: byVpc }))).SecurityGroups ?? [];
      for (const g of sgs.filter((g) => g.GroupName !== 'default')) {
        await attempt(`delete ${g.GroupId}`, () =>
          ec2.send(new DeleteSecurityGroupCommand({ GroupId: g.GroupId! })),
        );
      }
      await attempt(`delete ${vpc.VpcId}`, () => ec2.send(new DeleteVpcCommand({ VpcId: vpc.VpcId! })));
    }
  } finally {
    ec2.destroy();
  }
  return errors;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cluster: { type: 'string' },
      endpoint: { type: 'string', default: process.env.VPC_IPAM_EC2_ENDPOINT ?? DEFAULT_ENDPOINT },
      region: { type: 'string', default: process.env.AWS_REGION ?? DEFAULT_REGION },
      cidr: { type: 'string' },
      delete: { type: 'boolean', default: false },
    },
  });
  if (!values.cluster) throw new Error('--cluster NAME is required');
  const options: SeedOptions = {
    clusterName: values.cluster,
    endpoint: values.endpoint,
    region: values.region,
  };
  if (values.cidr) options.cidr = values.cidr;
  if (values.delete) {
    const errors = await deleteCluster(options);
    for (const e of errors) process.stderr.write(`warning: ${e}\n`);
    return;
  }
  process.stdout.write(`${JSON.stringify(await seedCluster(options), null, 2)}\n`);
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`seed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
