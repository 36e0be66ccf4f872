// The AWS implementation of CloudProvider: EC2 (ENIs and their secondary IPs) + IMDSv2.
//
// Every EC2 call goes through createRateLimitedCaller with buckets shaped like EC2's own (see
// DEFAULT_EC2_BUCKETS); the SDK's own retries are off so our attempt bound is the real one.
// Limits (ENIs per instance, IPs per ENI, device index, subnet capacity) are checked here before
// calling EC2, because emulators accept anything. Mutations run one at a time per provider so two
// concurrent requests cannot both take the last device index or the last IP slot.
//
// Unknown outcomes: a mutation that timed out, lost its connection or got a 5xx may still have
// been applied. Before any retry (and after the last attempt) the caller's `recover` re-reads the
// ENI and, when the change is there, takes it as the result instead of sending it again.
// CreateNetworkInterface also carries a ClientToken (EC2's own idempotency) and the same token as
// a tag, by which the re-read finds an ENI whose creation answer was lost (LocalStack ignores
// ClientToken). A create whose attach or DeleteOnTermination step fails is rolled back (detach if
// attached, delete); if the rollback fails too, the error says so and names the ENI.

import { randomUUID } from 'node:crypto';
import {
  type _InstanceType,
  AssignPrivateIpAddressesCommand,
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  DeleteNetworkInterfaceCommand,
  DescribeInstancesCommand,
  DescribeInstanceTypesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSubnetsCommand,
  type DescribeSubnetsCommandInput,
  DescribeVpcsCommand,
  DetachNetworkInterfaceCommand,
  EC2Client,
  type Filter,
  ModifyNetworkInterfaceAttributeCommand,
  type NetworkInterface,
  type Subnet,
  UnassignPrivateIpAddressesCommand,
} from '@aws-sdk/client-ec2';
import {
  InterfaceInUseError,
  isProviderError,
  NotFoundError,
  OtherProviderError,
  SubnetExhaustedError,
} from '../errors.ts';
import { type BucketConfig, createRateLimitedCaller, type RetryPolicy } from '../rate-limit.ts';
import {
  type ApiCallObserver,
  type AssignRequest,
  type CloudProvider,
  type CreateInterfaceRequest,
  type DeleteInterfaceOptions,
  type InterfaceInfo,
  type LeakedInterface,
  type LeakQuery,
  type MetadataInterface,
  type NodeInfo,
  OWNER_TAGS,
  type SubnetInfo,
} from '../types.ts';
import { AWS_VPC_CNI_TAGS, awsVpcCniOwner } from './aws-vpc-cni-owner.ts';
import { classifyEc2Error, toProviderError } from './error-mapping.ts';
import { DEFAULT_IMDS_ENDPOINT, readImdsIdentity, readImdsInterfaces } from './imds.ts';
import { cidrContains, isIpv4, isReservedInSubnet, pickFreeAddresses } from './ipv4.ts';
import {
  checkInterfaceLimit,
  checkIpLimit,
  chooseDeviceIndex,
  type InstanceLimits,
  limitsFromNetworkInfo,
} from './limits.ts';
import { normalizeMac } from './mac.ts';
import { rankPodSubnets } from './subnet-discovery.ts';

export type Ec2Bucket = 'mutate' | 'attach' | 'describe';

/** EC2's published token buckets for these APIs (per account and region). */
export const DEFAULT_EC2_BUCKETS: Record<Ec2Bucket, BucketConfig> = {
  mutate: { burst: 100, refillPerSecond: 5 },
  attach: { burst: 50, refillPerSecond: 5 },
  describe: { burst: 100, refillPerSecond: 20 },
};

export interface AwsProviderOptions {
  region: string;
  /** EC2 endpoint, e.g. http://127.0.0.1:4566 for LocalStack; default: the region's real endpoint. */
  ec2Endpoint?: string;
  /** IMDS endpoint; default http://169.254.169.254. */
  imdsEndpoint?: string;
  /** Per-request IMDS timeout (ms); default 2000. */
  imdsTimeoutMs?: number;
  clusterName: string;
  /** Static credentials; default: the SDK's credential chain (env, web identity, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  limiter?: { buckets?: Partial<Record<Ec2Bucket, BucketConfig>>; retry?: Partial<RetryPolicy> };
  observer?: ApiCallObserver;
  /**
   * Pick free subnet addresses ourselves and assign them by address, instead of letting EC2 pick
   * by count. Needed on LocalStack, which picks random addresses without checking the rest of the
   * subnet (duplicates, reserved addresses); on EC2 leave it off.
   */
  pickAddresses?: boolean;
  /**
   * Tags written on every interface created (ADDITIONAL_ENI_TAGS), under the ownership tags, which
   * always win.
   */
  extraTags?: Record<string, string>;
  /** How long deleteInterface waits for a detach to complete (default 30 s). */
  detachTimeoutMs?: number;
  /**
   * Per-request timeout of EC2 calls (default 20 s): a request whose answer never comes fails
   * with TimeoutError and goes through the unknown-outcome path instead of hanging the pool loop.
   */
  requestTimeoutMs?: number;
  /** Wall clock (ms since epoch), for creation tags and leak age. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Tag carrying CreateNetworkInterface's ClientToken, so a create whose answer was lost is found. */
export const CREATE_TOKEN_TAG = 'vpc-ipam/create-token';

const ENI_ID = /^eni-[0-9a-f]{8,17}$/;
const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const SG_ID = /^sg-[0-9a-f]{8,17}$/;
const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
/** Ids per DescribeInstances call: EC2 accepts up to 200 values in one filter. */
const INSTANCE_BATCH = 100;
/** States after which an instance never comes back: its interfaces are orphans. */
const GONE_STATES = new Set(['shutting-down', 'terminated']);

function validateId(kind: string, re: RegExp, id: string): void {
  if (typeof id !== 'string' || !re.test(id)) {
    throw new OtherProviderError(`invalid ${kind} id ${JSON.stringify(id)}`, {
      cloudCode: 'InvalidParameterValue',
    });
  }
}

function tagsOf(eni: NetworkInterface): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of eni.TagSet ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? '';
  return out;
}

/** A create answer that names the MAC, the subnet and every address asked for. */
function answerComplete(eni: NetworkInterface, secondary: number): boolean {
  const { primary, secondary: got } = ipsOf(eni);
  return Boolean(eni.MacAddress && eni.SubnetId && primary) && got.length === secondary;
}

function ipsOf(eni: NetworkInterface): { primary: string; secondary: string[] } {
  const all = eni.PrivateIpAddresses ?? [];
  return {
    primary: eni.PrivateIpAddress ?? all.find((p) => p.Primary)?.PrivateIpAddress ?? '',
    secondary: all.filter((p) => !p.Primary && p.PrivateIpAddress).map((p) => p.PrivateIpAddress!),
  };
}

export function createAwsProvider(options: AwsProviderOptions): CloudProvider & { close(): Promise<void> } {
  if (!options.region) throw new Error('AWS provider: region is required');
  if (!options.clusterName) throw new Error('AWS provider: clusterName is required');
  const now = options.now ?? Date.now;
  const imdsOptions = {
    endpoint: options.imdsEndpoint ?? DEFAULT_IMDS_ENDPOINT,
    ...(options.imdsTimeoutMs ? { timeoutMs: options.imdsTimeoutMs } : {}),
  };
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const ec2 = new EC2Client({
    region: options.region,
    ...(options.ec2Endpoint ? { endpoint: options.ec2Endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    maxAttempts: 1, // our limiter does the retrying, within its bound
    requestHandler: {
      requestTimeout: options.requestTimeoutMs ?? 20_000,
      connectionTimeout: 5_000,
      throwOnRequestTimeout: true,
    },
  });
  const caller = createRateLimitedCaller<Ec2Bucket>({
    cloud: 'aws',
    buckets: { ...DEFAULT_EC2_BUCKETS, ...options.limiter?.buckets },
    retry: options.limiter?.retry,
    classify: classifyEc2Error,
    toProviderError,
    observer: options.observer,
  });
  const describe = <T>(api: string, fn: () => Promise<T>) => caller.call(api, 'describe', fn);
  const mutate = <T>(api: string, fn: () => Promise<T>, recover?: () => Promise<{ value: T } | undefined>) =>
    caller.call(api, 'mutate', fn, recover ? { recover } : undefined);

  // One mutation at a time: limit checks and the call that relies on them must not interleave.
  let mutex: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = mutex.then(fn, fn);
    mutex = run.catch(() => {});
    return run;
  };

  let nodePromise: Promise<NodeInfo> | undefined;
  const limitsCache = new Map<string, InstanceLimits>();
  const subnetCidrCache = new Map<string, string>();
  /**
   * Subnets as last described, kept current with this provider's own takes and returns: a create
   * or assign right after a describe (subnet discovery ranks the subnets before every grow) checks
   * the subnet's zone and free addresses without describing it again. Only a pre-check: EC2 itself
   * refuses an address the subnet does not have (InsufficientFreeAddressesInSubnet).
   */
  const subnetSeen = new Map<string, { info: SubnetInfo; at: number }>();
  // Longer than the daemon's subnet ranking reuse (RANK_FRESH_MS, 10 s): one read serves a burst.
  const SUBNET_FRESH_MS = 15_000;
  const recentSubnet = (id: string): SubnetInfo | undefined => {
    const e = subnetSeen.get(id);
    return e && now() - e.at <= SUBNET_FRESH_MS ? e.info : undefined;
  };
  /** This provider took (n > 0) or gave back (n < 0) addresses of a subnet. */
  const subnetUsed = (id: string, n: number): void => {
    const e = subnetSeen.get(id);
    if (e) e.info = { ...e.info, availableIps: Math.max(0, e.info.availableIps - n) };
  };

  async function instanceLimits(instanceType: string): Promise<InstanceLimits> {
    const cached = limitsCache.get(instanceType);
    if (cached) return cached;
    const out = await describe('DescribeInstanceTypes', () =>
      ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: [instanceType as _InstanceType] })));
    const limits = limitsFromNetworkInfo(out.InstanceTypes?.[0]?.NetworkInfo);
    if (!limits) throw new NotFoundError(`DescribeInstanceTypes has no network limits for ${instanceType}`);
    limitsCache.set(instanceType, limits);
    return limits;
  }

  async function discover(): Promise<NodeInfo> {
    const id = await readImdsIdentity(imdsOptions);
    const [limits, vpcs] = await Promise.all([
      instanceLimits(id.instanceType),
      describe('DescribeVpcs', () => ec2.send(new DescribeVpcsCommand({ VpcIds: [id.vpcId] }))),
    ]);
    const vpc = vpcs.Vpcs?.[0];
    const cidrs = new Set(id.vpcCidrs);
    if (vpc?.CidrBlock) cidrs.add(vpc.CidrBlock);
    for (const a of vpc?.CidrBlockAssociationSet ?? []) {
      if (a.CidrBlock && a.CidrBlockState?.State === 'associated') cidrs.add(a.CidrBlock);
    }
    subnetCidrCache.set(id.subnetId, id.subnetCidr);
    return {
      cloud: 'aws',
      instanceId: id.instanceId,
      instanceType: id.instanceType,
      region: id.region,
      availabilityZone: id.availabilityZone,
      vpcId: id.vpcId,
      vpcCidrs: [...cidrs],
      primarySubnetId: id.subnetId,
      primaryIp: id.primaryIp,
      primaryMac: id.primaryMac,
      securityGroupIds: id.securityGroupIds,
      maxInterfaces: limits.maxInterfaces,
      ipsPerInterface: limits.ipsPerInterface,
    };
  }

  function describeNode(): Promise<NodeInfo> {
    if (!nodePromise) {
      nodePromise = discover();
      nodePromise.catch(() => {
        nodePromise = undefined; // retry discovery on the next call
      });
    }
    return nodePromise;
  }

  async function describeEnis(filters: Filter[], ids?: string[]): Promise<NetworkInterface[]> {
    const out: NetworkInterface[] = [];
    let token: string | undefined;
    do {
      const page = await describe('DescribeNetworkInterfaces', () =>
        ec2.send(
          new DescribeNetworkInterfacesCommand({
            ...(ids ? { NetworkInterfaceIds: ids } : { Filters: filters, MaxResults: 1000 }),
            NextToken: token,
          }),
        ));
      out.push(...(page.NetworkInterfaces ?? []));
      token = page.NextToken;
    } while (token);
    return out;
  }

  async function getEni(id: string): Promise<NetworkInterface> {
    validateId('network interface', ENI_ID, id);
    const [eni] = await describeEnis([], [id]);
    if (!eni)
      throw new NotFoundError(`network interface ${id} not found`, {
        cloudCode: 'InvalidNetworkInterfaceID.NotFound',
      });
    return eni;
  }

  async function describeSubnets(subnetIds: string[]): Promise<SubnetInfo[]> {
    if (subnetIds.length === 0) return [];
    for (const id of subnetIds) validateId('subnet', SUBNET_ID, id);
    return querySubnets({ SubnetIds: [...new Set(subnetIds)] });
  }

  /** Usable pod subnets of the node's VPC and zone, most free addresses first (subnet-discovery.ts). */
  async function discoverPodSubnets(): Promise<SubnetInfo[]> {
    const node = await describeNode();
    const subnets = await querySubnets({
      Filters: [
        { Name: 'vpc-id', Values: [node.vpcId] },
        { Name: 'availability-zone', Values: [node.availabilityZone] },
      ],
    });
    return rankPodSubnets(subnets, node.primarySubnetId, options.clusterName)
      .filter((d) => d.usable)
      .map((d) => d.subnet);
  }

  async function querySubnets(input: DescribeSubnetsCommandInput): Promise<SubnetInfo[]> {
    const out: Subnet[] = [];
    let token: string | undefined;
    do {
      const page = await describe('DescribeSubnets', () =>
        ec2.send(new DescribeSubnetsCommand({ ...input, NextToken: token })));
      out.push(...(page.Subnets ?? []));
      token = page.NextToken;
    } while (token);
    const at = now();
    return out.map((s) => {
      if (s.SubnetId && s.CidrBlock) subnetCidrCache.set(s.SubnetId, s.CidrBlock);
      const tags: Record<string, string> = {};
      for (const t of s.Tags ?? []) if (t.Key !== undefined) tags[t.Key] = t.Value ?? '';
      const info = {
        id: s.SubnetId ?? '',
        cidr: s.CidrBlock ?? '',
        availabilityZone: s.AvailabilityZone ?? '',
        availableIps: s.AvailableIpAddressCount ?? 0,
        tags,
      };
      if (info.id) subnetSeen.set(info.id, { info, at });
      return info;
    });
  }

  /** Reads of one subnet in flight: parallel creates in one subnet share one DescribeSubnets. */
  const subnetReads = new Map<string, Promise<SubnetInfo>>();
  function subnet(id: string): Promise<SubnetInfo> {
    const inFlight = subnetReads.get(id);
    if (inFlight) return inFlight;
    const read = (async () => {
      const [s] = await describeSubnets([id]);
      if (!s) throw new NotFoundError(`subnet ${id} not found`, { cloudCode: 'InvalidSubnetID.NotFound' });
      return s;
    })().finally(() => subnetReads.delete(id));
    subnetReads.set(id, read);
    return read;
  }

  async function subnetCidrs(ids: string[]): Promise<Map<string, string>> {
    const missing = [...new Set(ids)].filter((id) => !subnetCidrCache.has(id));
    if (missing.length > 0) await describeSubnets(missing);
    return subnetCidrCache; // subnet CIDRs never change, so the cache is the truth
  }

  function toInterfaceInfo(eni: NetworkInterface, cidrs: Map<string, string>): InterfaceInfo {
    const { primary, secondary } = ipsOf(eni);
    const tags = tagsOf(eni);
    const foreign = awsVpcCniOwner(eni.Description, tags);
    return {
      id: eni.NetworkInterfaceId ?? '',
      mac: normalizeMac(eni.MacAddress, eni.NetworkInterfaceId ?? ''),
      deviceIndex: eni.Attachment?.DeviceIndex ?? -1,
      subnetId: eni.SubnetId ?? '',
      subnetCidr: cidrs.get(eni.SubnetId ?? '') ?? '',
      primaryIp: primary,
      secondaryIps: secondary,
      tags,
      ...(foreign ? { foreignOwner: foreign } : {}),
    };
  }

  async function listInterfaces(): Promise<InterfaceInfo[]> {
    const node = await describeNode();
    const enis = (await describeEnis([{ Name: 'attachment.instance-id', Values: [node.instanceId] }])).filter(
      (e) => e.Attachment?.InstanceId === node.instanceId,
    );
    const cidrs = await subnetCidrs(enis.map((e) => e.SubnetId ?? '').filter((s) => s));
    return enis.map((e) => toInterfaceInfo(e, cidrs)).sort((a, b) => a.deviceIndex - b.deviceIndex);
  }

  /** From IMDS: no EC2 call, so no Describe budget (the drift resync runs this every minute). */
  async function listInterfacesFromMetadata(): Promise<MetadataInterface[]> {
    const ifs = await readImdsInterfaces(imdsOptions);
    return ifs.map((i) => ({ id: i.interfaceId, mac: i.mac, deviceIndex: i.deviceIndex, ips: i.ips }));
  }

  /** Every address in use in the subnet, by any interface (for pickAddresses). */
  async function takenInSubnet(subnetId: string): Promise<Set<string>> {
    const enis = await describeEnis([{ Name: 'subnet-id', Values: [subnetId] }]);
    return new Set(enis.flatMap((e) => (e.PrivateIpAddresses ?? []).map((p) => p.PrivateIpAddress ?? '')));
  }

  /** Throws SubnetExhausted when the subnet cannot supply `count` more addresses. */
  async function ensureSubnetCapacity(s: SubnetInfo, count: number): Promise<string[] | undefined> {
    if (options.pickAddresses) {
      const free = pickFreeAddresses(s.cidr, await takenInSubnet(s.id), count);
      if (free.length < count) {
        throw new SubnetExhaustedError(
          `subnet ${s.id} (${s.cidr}) has ${free.length} free addresses, ${count} needed`,
          {
            subnetId: s.id,
            cloudCode: 'InsufficientFreeAddressesInSubnet',
          },
        );
      }
      return free;
    }
    if (s.availableIps < count) {
      throw new SubnetExhaustedError(
        `subnet ${s.id} (${s.cidr}) has ${s.availableIps} free addresses, ${count} needed`,
        {
          subnetId: s.id,
          cloudCode: 'InsufficientFreeAddressesInSubnet',
        },
      );
    }
    return undefined;
  }

  /**
   * Device indexes attached to the node as last listed, plus the ones this provider has taken since
   * (a batch of creates lists the node once, not once per interface). Dropped after a failed create
   * and after any detach; re-listed when older than ATTACHED_VIEW_TTL_MS or when it says the node
   * is full. A stale view cannot overrun a limit: EC2 itself refuses an attach beyond the
   * instance's limit or onto a taken index (the create is then rolled back).
   */
  let attachedView: { indexes: Set<number>; at: number } | null = null;
  const ATTACHED_VIEW_TTL_MS = 10_000;

  async function listAttachedIndexes(): Promise<Set<number>> {
    const attached = await listInterfaces();
    attachedView = { indexes: new Set(attached.map((i) => i.deviceIndex)), at: now() };
    return attachedView.indexes;
  }

  /** Check the limits and take a free device index; the caller holds the mutation lock. */
  async function reserveDeviceIndex(node: NodeInfo, secondary: number): Promise<number> {
    const limits = { maxInterfaces: node.maxInterfaces, ipsPerInterface: node.ipsPerInterface };
    const cached = attachedView && now() - attachedView.at <= ATTACHED_VIEW_TTL_MS ? attachedView : null;
    let indexes = cached ? cached.indexes : await listAttachedIndexes();
    // Full by a cached view: make sure with a fresh listing before refusing.
    if (cached && indexes.size >= node.maxInterfaces) indexes = await listAttachedIndexes();
    checkInterfaceLimit(indexes.size, limits, node.instanceType);
    checkIpLimit(0, 1 + secondary, limits, 'a new interface', node.instanceType);
    const deviceIndex = chooseDeviceIndex([...indexes], node.maxInterfaces);
    indexes.add(deviceIndex);
    return deviceIndex;
  }

  /**
   * Create an ENI with its secondary IPs in one call, attach it, mark it DeleteOnTermination. The
   * answer is built from the create and attach answers (no describe after). Against EC2 creates
   * run in parallel: only the limit check and the device index are taken under the mutation lock.
   * With pickAddresses (LocalStack) the whole create is one mutation, as picking free addresses
   * and using them must not interleave.
   */
  async function createInterface(req: CreateInterfaceRequest): Promise<InterfaceInfo> {
    validateId('subnet', SUBNET_ID, req.subnetId);
    for (const sg of req.securityGroupIds) validateId('security group', SG_ID, sg);
    const secondary = req.secondaryIpCount ?? 0;
    if (!Number.isInteger(secondary) || secondary < 0) {
      throw new OtherProviderError(`secondaryIpCount must be an integer >= 0, got ${req.secondaryIpCount}`);
    }
    const node = await describeNode();
    if (options.pickAddresses) {
      return exclusive(async () =>
        createReserved(req, node, secondary, await reserveDeviceIndex(node, secondary)),
      );
    }
    const deviceIndex = await exclusive(() => reserveDeviceIndex(node, secondary));
    return createReserved(req, node, secondary, deviceIndex);
  }

  async function createReserved(
    req: CreateInterfaceRequest,
    node: NodeInfo,
    secondary: number,
    deviceIndex: number,
  ): Promise<InterfaceInfo> {
    let picked: string[] | undefined;
    try {
      const s = (!options.pickAddresses && recentSubnet(req.subnetId)) || (await subnet(req.subnetId));
      if (s.availabilityZone !== node.availabilityZone) {
        throw new OtherProviderError(
          `subnet ${s.id} is in ${s.availabilityZone}, the instance in ${node.availabilityZone}: ENIs attach only within one AZ`,
          { cloudCode: 'InvalidParameterCombination' },
        );
      }
      picked = await ensureSubnetCapacity(s, 1 + secondary);
    } catch (err) {
      attachedView = null;
      throw err;
    }
    const createdAt = new Date(now()).toISOString();
    const token = randomUUID();
    const tags = {
      ...options.extraTags,
      ...req.tags,
      [OWNER_TAGS.instanceId]: node.instanceId,
      [OWNER_TAGS.clusterName]: options.clusterName,
      [OWNER_TAGS.createdAt]: createdAt,
      [OWNER_TAGS.managedBy]: 'vpc-ipam',
      [CREATE_TOKEN_TAG]: token,
    };
    let created: NetworkInterface;
    try {
      created = await mutate(
        'CreateNetworkInterface',
        async () => {
          const out = await ec2.send(
            new CreateNetworkInterfaceCommand({
              ClientToken: token,
              SubnetId: req.subnetId,
              Groups: req.securityGroupIds,
              Description: `vpc-ipam: pod IPs of ${node.instanceId} in cluster ${options.clusterName}`,
              ...(picked
                ? {
                    PrivateIpAddresses: picked.map((ip, i) => ({ PrivateIpAddress: ip, Primary: i === 0 })),
                  }
                : secondary > 0
                  ? { SecondaryPrivateIpAddressCount: secondary }
                  : {}),
              TagSpecifications: [
                {
                  ResourceType: 'network-interface',
                  Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
                },
              ],
            }),
          );
          if (!out.NetworkInterface?.NetworkInterfaceId) {
            throw new OtherProviderError('CreateNetworkInterface returned no interface id');
          }
          return out.NetworkInterface;
        },
        async () => {
          const [found] = await describeEnis([{ Name: `tag:${CREATE_TOKEN_TAG}`, Values: [token] }]);
          return found?.NetworkInterfaceId ? { value: found } : undefined;
        },
      );
    } catch (err) {
      attachedView = null;
      throw err;
    }
    const eniId = created.NetworkInterfaceId as string;
    subnetUsed(req.subnetId, 1 + secondary);
    try {
      const attachmentId = await caller.call(
        'AttachNetworkInterface',
        'attach',
        async () =>
          (
            await ec2.send(
              new AttachNetworkInterfaceCommand({
                NetworkInterfaceId: eniId,
                InstanceId: node.instanceId,
                DeviceIndex: deviceIndex,
              }),
            )
          ).AttachmentId,
        {
          recover: async () => {
            const a = (await getEni(eniId)).Attachment;
            const ours =
              a?.InstanceId === node.instanceId && a.Status !== 'detaching' && a.Status !== 'detached';
            return ours && a.AttachmentId ? { value: a.AttachmentId } : undefined;
          },
        },
      );
      // Delete with the instance, so a terminated node does not leak its ENIs. Idempotent: a
      // resend after an unknown outcome is harmless.
      if (attachmentId) {
        await mutate('ModifyNetworkInterfaceAttribute', () =>
          ec2.send(
            new ModifyNetworkInterfaceAttributeCommand({
              NetworkInterfaceId: eniId,
              Attachment: { AttachmentId: attachmentId, DeleteOnTermination: true },
            }),
          ),
        );
      }
      // The create answer lists the ENI's MAC, subnet, addresses and tags: describe only if it
      // does not (an unknown outcome recovered by tag carries them too).
      const eni = answerComplete(created, secondary) ? created : await getEni(eniId);
      const cidrs = await subnetCidrs([req.subnetId]);
      return { ...toInterfaceInfo(eni, cidrs), deviceIndex };
    } catch (err) {
      // An ENI we made but could not finish is a leak (or, attached, one the daemon does not
      // know): take it back before reporting the failure, and say so if that fails too.
      attachedView = null;
      return rollBack(eniId, err);
    }
  }

  /** Undo a createInterface that failed after CreateNetworkInterface; always throws. */
  async function rollBack(eniId: string, failure: unknown): Promise<never> {
    try {
      await detachAndDelete(await getEni(eniId));
    } catch (undo) {
      if (!(undo instanceof NotFoundError)) {
        const why = (e: unknown) => (e instanceof Error ? e.message : String(e));
        throw new OtherProviderError(
          `creating ${eniId} failed (${why(failure)}) and removing it failed too (${why(undo)}): it may still exist, attached or not; the daemon's drift resync adopts an attached one, the janitor deletes a detached one`,
          {
            cloudCode: isProviderError(failure) ? failure.cloudCode : undefined,
            cause: new AggregateError([failure, undo], `create rollback of ${eniId}`),
          },
        );
      }
    }
    throw failure;
  }

  /** Detach the ENI if it is attached, wait until it is available, delete it. */
  async function detachAndDelete(eni: NetworkInterface): Promise<void> {
    const interfaceId = eni.NetworkInterfaceId ?? '';
    const attachmentId = eni.Attachment?.AttachmentId;
    if (attachmentId && eni.Attachment?.Status !== 'detached') {
      attachedView = null;
      await caller.call(
        'DetachNetworkInterface',
        'attach',
        async () => {
          await ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: attachmentId }));
        },
        {
          recover: async () => {
            const a = (await getEni(interfaceId)).Attachment;
            const gone =
              !a || a.AttachmentId !== attachmentId || a.Status === 'detaching' || a.Status === 'detached';
            return gone ? { value: undefined } : undefined;
          },
        },
      );
      // Detaching takes seconds on EC2; deleting before it completes fails with InUse.
      const deadline = now() + (options.detachTimeoutMs ?? 30_000);
      for (let wait = 250; eni.Status !== 'available'; wait = Math.min(wait * 2, 2000)) {
        if (now() > deadline) {
          throw new OtherProviderError(`${interfaceId} still ${eni.Status} after detaching; not deleted`);
        }
        await sleep(wait);
        eni = await getEni(interfaceId);
      }
    }
    await mutate(
      'DeleteNetworkInterface',
      async () => {
        await ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: interfaceId }));
      },
      async () => {
        try {
          await getEni(interfaceId);
          return undefined;
        } catch (err) {
          if (err instanceof NotFoundError) return { value: undefined };
          throw err;
        }
      },
    );
    subnetUsed(eni.SubnetId ?? '', -(eni.PrivateIpAddresses?.length ?? 0));
  }

  async function assignIps(interfaceId: string, req: AssignRequest): Promise<string[]> {
    validateId('network interface', ENI_ID, interfaceId);
    const node = await describeNode();
    const limits = { maxInterfaces: node.maxInterfaces, ipsPerInterface: node.ipsPerInterface };
    return exclusive(async () => {
      // Against EC2 the caller's view of its own interface is enough: EC2 refuses an interface that
      // is gone (NotFound, then the daemon resyncs) and answers with only the new addresses. With
      // pickAddresses (LocalStack, whose answer lists every address) the interface is read first.
      let before: Set<string>;
      let subnetId: string;
      if (req.known && !options.pickAddresses) {
        before = new Set(req.known.ips);
        subnetId = req.known.subnetId;
        validateId('subnet', SUBNET_ID, subnetId);
      } else {
        const eni = await getEni(interfaceId);
        if (eni.Attachment?.InstanceId !== node.instanceId) {
          throw new NotFoundError(`network interface ${interfaceId} is not attached to ${node.instanceId}`);
        }
        before = new Set((eni.PrivateIpAddresses ?? []).map((p) => p.PrivateIpAddress ?? ''));
        subnetId = eni.SubnetId ?? '';
      }
      const s = (!options.pickAddresses && recentSubnet(subnetId)) || (await subnet(subnetId));
      let wanted: string[] | undefined;
      if ('ips' in req) {
        for (const ip of req.ips) {
          if (!isIpv4(ip) || !cidrContains(s.cidr, ip) || isReservedInSubnet(s.cidr, ip)) {
            throw new OtherProviderError(
              `${JSON.stringify(ip)} is not a usable address of subnet ${s.id} (${s.cidr})`,
              {
                cloudCode: 'InvalidParameterValue',
              },
            );
          }
        }
        wanted = [...new Set(req.ips)].filter((ip) => !before.has(ip));
        if (wanted.length === 0) return [];
        checkIpLimit(before.size, wanted.length, limits, interfaceId, node.instanceType);
      } else {
        if (!Number.isInteger(req.count) || req.count < 1) {
          throw new OtherProviderError(`count must be an integer >= 1, got ${req.count}`);
        }
        checkIpLimit(before.size, req.count, limits, interfaceId, node.instanceType);
        wanted = await ensureSubnetCapacity(s, req.count);
      }
      const fresh = (list: (string | undefined)[]) =>
        list.filter((ip): ip is string => !!ip && !before.has(ip));
      const assigned = await mutate(
        'AssignPrivateIpAddresses',
        async () => {
          const out = await ec2.send(
            new AssignPrivateIpAddressesCommand({
              NetworkInterfaceId: interfaceId,
              ...(wanted
                ? { PrivateIpAddresses: wanted }
                : { SecondaryPrivateIpAddressCount: (req as { count: number }).count }),
            }),
          );
          // EC2 lists only the new addresses; LocalStack lists all of them. The difference is right for both.
          return fresh((out.AssignedPrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress));
        },
        // EC2 assigns all or nothing: any new address on the ENI is this call's (we are the only
        // writer of our ENIs, one mutation at a time).
        async () => {
          const added = fresh(
            ((await getEni(interfaceId)).PrivateIpAddresses ?? []).map((p) => p.PrivateIpAddress),
          );
          return added.length > 0 ? { value: added } : undefined;
        },
      );
      subnetUsed(s.id, assigned.length);
      return assigned;
    });
  }

  async function unassignIps(interfaceId: string, ips: string[]): Promise<void> {
    validateId('network interface', ENI_ID, interfaceId);
    for (const ip of ips) {
      if (!isIpv4(ip)) throw new OtherProviderError(`not an IPv4 address: ${JSON.stringify(ip)}`);
    }
    return exclusive(async () => {
      const eni = await getEni(interfaceId);
      const { primary, secondary } = ipsOf(eni);
      if (ips.includes(primary)) {
        throw new OtherProviderError(
          `refusing to unassign ${primary}: it is the primary IP of ${interfaceId}`,
        );
      }
      // Already gone is fine: the caller's intent holds (EC2 itself would refuse the whole call).
      let present = [...new Set(ips)].filter((ip) => secondary.includes(ip));
      if (present.length === 0) return;
      const giving = present.length;
      await mutate(
        'UnassignPrivateIpAddresses',
        async () => {
          await ec2.send(
            new UnassignPrivateIpAddressesCommand({
              NetworkInterfaceId: interfaceId,
              PrivateIpAddresses: present,
            }),
          );
        },
        async () => {
          const still = new Set(ipsOf(await getEni(interfaceId)).secondary);
          present = present.filter((ip) => still.has(ip)); // a resend names only what is left
          return present.length === 0 ? { value: undefined } : undefined;
        },
      );
      subnetUsed(eni.SubnetId ?? '', -giving);
    });
  }

  async function deleteInterface(interfaceId: string, opts: DeleteInterfaceOptions = {}): Promise<void> {
    validateId('network interface', ENI_ID, interfaceId);
    return exclusive(async () => {
      const eni = await getEni(interfaceId);
      if (eni.Attachment?.DeviceIndex === 0) {
        throw new OtherProviderError(
          `refusing to delete ${interfaceId}: it is an instance's primary interface`,
        );
      }
      const attached = Boolean(eni.Attachment?.AttachmentId && eni.Attachment.Status !== 'detached');
      if (opts.onlyIfDetached && (attached || eni.Status !== 'available')) {
        // EC2's DeleteNetworkInterface refuses an attached ENI itself, atomically
        // (InvalidNetworkInterface.InUse, mapped to InterfaceInUseError); LocalStack deletes it
        // anyway, so look right before as well.
        throw new InterfaceInUseError(
          `${interfaceId} is ${eni.Status ?? 'unknown'}${eni.Attachment?.InstanceId ? ` (attached to ${eni.Attachment.InstanceId})` : ''}; not deleted`,
          { cloudCode: 'InvalidNetworkInterface.InUse' },
        );
      }
      await detachAndDelete(eni);
    });
  }

  async function findLeakedInterfaces(query: LeakQuery): Promise<LeakedInterface[]> {
    const cutoff = query.olderThanMs === undefined ? undefined : now() - query.olderThanMs;
    // Without a creation time we cannot prove it is old enough: leave it for a human.
    const oldEnough = (createdAt: Date | undefined) =>
      cutoff === undefined || (createdAt !== undefined && createdAt.getTime() <= cutoff);
    const unattached = (eni: NetworkInterface) => eni.Status === 'available' && !eni.Attachment?.AttachmentId;
    const out: LeakedInterface[] = [];
    const ours = await describeEnis([
      { Name: `tag:${OWNER_TAGS.clusterName}`, Values: [query.clusterName] },
      { Name: 'status', Values: ['available'] },
    ]);
    for (const eni of ours) {
      const tags = tagsOf(eni);
      // Filters again client-side: the tag is ours only if the value matches exactly.
      if (tags[OWNER_TAGS.clusterName] !== query.clusterName || !unattached(eni)) continue;
      const created = tags[OWNER_TAGS.createdAt] ? new Date(tags[OWNER_TAGS.createdAt]!) : undefined;
      const createdAt = created && !Number.isNaN(created.getTime()) ? created : undefined;
      if (!oldEnough(createdAt)) continue;
      out.push({
        id: eni.NetworkInterfaceId ?? '',
        subnetId: eni.SubnetId ?? '',
        createdAt,
        instanceId: tags[OWNER_TAGS.instanceId],
        clusterName: tags[OWNER_TAGS.clusterName],
        status: eni.Status ?? '',
        createdBy: 'vpc-ipam',
      });
    }
    // ENIs aws-node left behind (a node switched to vpc-ipam, or aws-node crashed between create
    // and attach): the same rules, judged on its tags.
    const theirs = await describeEnis([
      { Name: `tag:${AWS_VPC_CNI_TAGS.clusterName}`, Values: [query.clusterName] },
      { Name: 'status', Values: ['available'] },
    ]);
    for (const eni of theirs) {
      const owner = awsVpcCniOwner(eni.Description, tagsOf(eni));
      if (!owner || owner.clusterName !== query.clusterName || !unattached(eni)) continue;
      if (!oldEnough(owner.createdAt)) continue;
      out.push({
        id: eni.NetworkInterfaceId ?? '',
        subnetId: eni.SubnetId ?? '',
        createdAt: owner.createdAt,
        instanceId: owner.instanceId,
        clusterName: owner.clusterName,
        status: eni.Status ?? '',
        createdBy: owner.tool,
      });
    }
    return out;
  }

  /**
   * For the janitor: true while the instance exists (pending, running, stopping, stopped), false
   * once it is shutting down, terminated or unknown to EC2. Asks with an `instance-id` filter
   * rather than InstanceIds, because EC2 fails a whole InstanceIds request when one id is unknown
   * (InvalidInstanceID.NotFound); a filter just leaves the unknown ones out. Never deletes on
   * doubt: if a call fails, every id of this request is reported as existing. Malformed ids are
   * left out of the answer (unknown: the janitor keeps their interfaces).
   */
  async function instancesExist(instanceIds: string[]): Promise<Map<string, boolean>> {
    const ids = [...new Set(instanceIds)].filter((id) => typeof id === 'string' && INSTANCE_ID.test(id));
    const out = new Map<string, boolean>();
    try {
      const seen = new Map<string, boolean>();
      for (let i = 0; i < ids.length; i += INSTANCE_BATCH) {
        const batch = ids.slice(i, i + INSTANCE_BATCH);
        let token: string | undefined;
        do {
          const page = await describe('DescribeInstances', () =>
            ec2.send(
              new DescribeInstancesCommand({
                Filters: [{ Name: 'instance-id', Values: batch }],
                MaxResults: 1000,
                NextToken: token,
              }),
            ));
          for (const inst of (page.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
            if (!inst.InstanceId) continue;
            // No state name is a doubt too: count it as existing.
            const alive = !GONE_STATES.has(inst.State?.Name ?? '');
            seen.set(inst.InstanceId, (seen.get(inst.InstanceId) ?? false) || alive);
          }
          token = page.NextToken;
        } while (token);
      }
      for (const id of ids) out.set(id, seen.get(id) ?? false);
    } catch {
      for (const id of ids) out.set(id, true);
    }
    return out;
  }

  return {
    cloud: 'aws',
    describeNode,
    listInterfaces,
    listInterfacesFromMetadata,
    describeSubnets,
    discoverPodSubnets,
    createInterface,
    assignIps,
    unassignIps,
    deleteInterface,
    findLeakedInterfaces,
    instancesExist,
    async close() {
      await caller.stop();
      ec2.destroy();
    },
  };
}
