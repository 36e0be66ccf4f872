// The Azure implementation of CloudProvider, on @azure/arm-network.
//
// Model mapping: an "interface" is a NIC attached to this VM; the pool grows by appending
// ipConfigurations to a NIC (one createOrUpdate long-running operation per batch) and shrinks by
// removing them. Secondary NICs cannot be hot-attached to a running VM, so createInterface always
// fails with LimitExceeded and maxInterfaces is the number of NICs the VM booted with.
// Every NIC write carries If-Match with the etag it was planned from; on 412 the NIC is re-read and
// the change re-planned (bounded). Writes to one NIC are serialised in-process so the daemon does
// not race itself. The primary ipConfiguration is never modified.
// Unknown outcomes: a PUT whose long-running operation ends Failed or Canceled, or that still
// failed with a 5xx / timeout / reset after the retries, may or may not have changed the NIC. The
// NIC is re-read and the change re-planned: the configurations a request writes carry its token in
// their names, so what is already there is recognised and not written twice, and what is missing
// is written again. A resend inside the retries is safe too: its If-Match etag is stale once the
// first PUT applied, so ARM answers 412 and we re-plan. 409 AnotherOperationInProgress (an earlier
// operation on the NIC still running) waits until the NIC's provisioning state settles, then
// re-plans.
import { randomBytes } from 'node:crypto';
import {
  type NetworkInterface,
  type NetworkInterfaceIPConfiguration,
  NetworkManagementClient,
  type Subnet,
} from '@azure/arm-network';
import type { TokenCredential } from '@azure/identity';
import {
  InterfaceInUseError,
  isProviderError,
  LimitExceededError,
  NotFoundError,
  OtherProviderError,
  type ProviderError,
  SubnetExhaustedError,
} from '../errors.ts';
import { createRateLimitedCaller, type RateLimitedCaller, type RetryPolicy } from '../rate-limit.ts';
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
import {
  type ArmBucket,
  type AzureLimiterConfig,
  createBucket,
  DEFAULT_AZURE_LIMITS,
} from './arm-budgets.ts';
import {
  classifyArmError,
  EtagConflictError,
  isOperationInProgress,
  isUnknownOutcome,
  toProviderError,
} from './arm-errors.ts';
import { normalizeMac, parseNicId, parseSubnetId, sameId, vnetIdOfSubnet } from './arm-ids.ts';
import { createAzureCredential } from './credential.ts';
import { type AzureVmMetadata, fetchInstanceMetadata } from './imds.ts';
import { type IpConfigView, MAX_IP_CONFIGS_PER_NIC, planAdd, planRemove } from './ip-config-plan.ts';

export const DEFAULT_ARM_ENDPOINT = 'https://management.azure.com';

export interface AzureProviderOptions {
  /** Default: createAzureCredential() (workload identity, else managed identity); a static token in tests. */
  credential?: TokenCredential;
  /** ARM base URL (default https://management.azure.com). */
  armEndpoint?: string;
  /** Azure IMDS base URL (default http://169.254.169.254). */
  imdsEndpoint?: string;
  /** Default: the VM's own subscription, from IMDS. */
  subscriptionId?: string;
  /** Resource group holding the node's NICs. Default: the VM's own resource group, from IMDS. */
  resourceGroup?: string;
  /** Written into the ownership tags. */
  clusterName?: string;
  limits?: Partial<AzureLimiterConfig>;
  retry?: Partial<RetryPolicy>;
  observer?: ApiCallObserver;
  /** Poll interval of long-running operations when ARM sends no Retry-After (default 1000 ms). */
  lroPollIntervalMs?: number;
  /**
   * Re-reads and re-plans of a NIC write before giving up (default 5): after 412 Precondition
   * Failed, an operation that ended Failed/Canceled or with an unknown outcome, or 409
   * AnotherOperationInProgress.
   */
  maxEtagAttempts?: number;
  /** How long a 409 AnotherOperationInProgress waits for the NIC to settle (default 120 s). */
  operationWaitMs?: number;
  /** Wall clock in ms (for leak ages). */
  now?: () => number;
}

interface Discovery {
  vm: AzureVmMetadata;
  subscriptionId: string;
  resourceGroup: string;
  /** NIC resource ids in device order. */
  nicIds: string[];
  /** Their MACs (normalized), same order. */
  nicMacs: string[];
}

const token = () => randomBytes(4).toString('hex');

export class AzureProvider implements CloudProvider {
  readonly cloud = 'azure' as const;
  private readonly opts: AzureProviderOptions;
  private readonly caller: RateLimitedCaller<ArmBucket>;
  private readonly networkWrites;
  private readonly nicLocks = new Map<string, Promise<unknown>>();
  private client: NetworkManagementClient | undefined;
  private discovery: Promise<Discovery> | undefined;
  private node: NodeInfo | undefined;

  constructor(opts: AzureProviderOptions) {
    this.opts = opts;
    const limits = { ...DEFAULT_AZURE_LIMITS, ...opts.limits };
    this.caller = createRateLimitedCaller<ArmBucket>({
      cloud: 'azure',
      buckets: { armRead: limits.armRead, armWrite: limits.armWrite },
      ...(opts.retry ? { retry: opts.retry } : {}),
      classify: classifyArmError,
      toProviderError: (err) => toProviderError(err),
      ...(opts.observer ? { observer: opts.observer } : {}),
    });
    this.networkWrites = createBucket(limits.networkWrite);
  }

  async stop(): Promise<void> {
    await this.caller.stop();
    await this.networkWrites.stop({ dropWaitingJobs: true });
  }

  // ---- discovery ----

  private discover(): Promise<Discovery> {
    this.discovery ??= this.runDiscovery().catch((err) => {
      this.discovery = undefined; // let the next call try again
      throw err;
    });
    return this.discovery;
  }

  private async runDiscovery(): Promise<Discovery> {
    const vm = await fetchInstanceMetadata({
      ...(this.opts.imdsEndpoint ? { endpoint: this.opts.imdsEndpoint } : {}),
    });
    const subscriptionId = this.opts.subscriptionId ?? vm.subscriptionId;
    const resourceGroup = this.opts.resourceGroup ?? vm.resourceGroup;
    this.client = new NetworkManagementClient(
      this.opts.credential ?? createAzureCredential(),
      subscriptionId,
      {
        endpoint: this.opts.armEndpoint ?? DEFAULT_ARM_ENDPOINT,
        // Retries are ours (bounded, observed, rate-limited); the pipeline must not add its own.
        retryOptions: { maxRetries: 0 },
      },
    );
    const client = this.client;
    const all = await this.caller.call('NetworkInterfaces.list', 'armRead', async () => {
      const out: NetworkInterface[] = [];
      for await (const nic of client.networkInterfaces.list(resourceGroup)) out.push(nic);
      return out;
    });
    const macs = vm.interfaces.map((i) => i.mac);
    const mine = all.filter(
      (n) =>
        sameId(n.virtualMachine?.id, vm.resourceId) ||
        (n.macAddress && macs.includes(normalizeMac(n.macAddress))),
    );
    if (mine.length === 0) {
      const hint = vm.vmScaleSetName
        ? ` This VM belongs to scale set ${vm.vmScaleSetName}: scale-set instance NICs are managed through the scale set model and are not supported; use availability-set or standalone VMs.`
        : '';
      throw new NotFoundError(
        `no network interface of VM ${vm.resourceId} found in resource group ${resourceGroup} (set AZURE_RESOURCE_GROUP if the NICs live elsewhere).${hint}`,
      );
    }
    const order = (n: NetworkInterface) => {
      const i = n.macAddress ? macs.indexOf(normalizeMac(n.macAddress)) : -1;
      return i === -1 ? macs.length + (n.primary ? -0.5 : 0) : i;
    };
    mine.sort((a, b) => order(a) - order(b) || (a.name ?? '').localeCompare(b.name ?? ''));
    return {
      vm,
      subscriptionId,
      resourceGroup,
      nicIds: mine.map((n) => n.id!),
      nicMacs: mine.map((n) => (n.macAddress ? normalizeMac(n.macAddress) : '')),
    };
  }

  private arm(): NetworkManagementClient {
    if (!this.client) throw new Error('Azure provider used before discovery');
    return this.client;
  }

  async describeNode(): Promise<NodeInfo> {
    if (this.node) return this.node;
    const d = await this.discover();
    const interfaces = await this.listInterfaces();
    const primary = interfaces[0]!;
    const subnet = parseSubnetId(primary.subnetId);
    const vnet = await this.caller.call('VirtualNetworks.get', 'armRead', () =>
      this.arm().virtualNetworks.get(subnet.resourceGroup, subnet.virtualNetwork),
    );
    const primaryNic = await this.getNic(d.nicIds[0]!);
    this.node = {
      cloud: 'azure',
      instanceId: d.vm.vmId,
      instanceType: d.vm.vmSize,
      region: d.vm.location,
      // AKS labels zonal nodes topology.kubernetes.io/zone=<region>-<zone>.
      availabilityZone: d.vm.zone ? `${d.vm.location}-${d.vm.zone}` : d.vm.location,
      vpcId: vnet.id ?? vnetIdOfSubnet(primary.subnetId),
      vpcCidrs: vnet.addressSpace?.addressPrefixes ?? [],
      primarySubnetId: primary.subnetId,
      primaryIp: primary.primaryIp,
      primaryMac: primary.mac,
      securityGroupIds: primaryNic.networkSecurityGroup?.id ? [primaryNic.networkSecurityGroup.id] : [],
      maxInterfaces: d.nicIds.length,
      ipsPerInterface: MAX_IP_CONFIGS_PER_NIC,
    };
    return this.node;
  }

  async listInterfaces(): Promise<InterfaceInfo[]> {
    const d = await this.discover();
    const nics = await Promise.all(d.nicIds.map((id) => this.getNic(id)));
    const subnetCidrs = new Map<string, string>();
    const out: InterfaceInfo[] = [];
    for (const [deviceIndex, nic] of nics.entries()) {
      const primary = primaryConfig(nic);
      const subnetId = primary.subnet?.id;
      if (!subnetId || !primary.privateIPAddress || !nic.macAddress) {
        throw new OtherProviderError(
          `NIC ${nic.id} has no primary address, subnet or MAC yet (provisioning ${nic.provisioningState})`,
        );
      }
      let cidr = subnetCidrs.get(subnetId.toLowerCase());
      if (!cidr) {
        cidr = subnetPrefix(await this.getSubnet(subnetId));
        subnetCidrs.set(subnetId.toLowerCase(), cidr);
      }
      out.push({
        id: nic.id!,
        mac: normalizeMac(nic.macAddress),
        deviceIndex,
        subnetId,
        subnetCidr: cidr,
        primaryIp: primary.privateIPAddress,
        secondaryIps: (nic.ipConfigurations ?? [])
          .filter((c) => !c.primary && c.privateIPAddress)
          .map((c) => c.privateIPAddress!),
        tags: { ...nic.tags },
      });
    }
    return out;
  }

  /**
   * From Azure IMDS (network.interface[], in the VM's NIC order, each with its ipConfigurations'
   * addresses, the primary first): one IMDS GET, no ARM read. NIC ids come from discovery, by MAC.
   */
  async listInterfacesFromMetadata(): Promise<MetadataInterface[]> {
    const d = await this.discover();
    const vm = await fetchInstanceMetadata({
      ...(this.opts.imdsEndpoint ? { endpoint: this.opts.imdsEndpoint } : {}),
    });
    return vm.interfaces.map((i, deviceIndex) => {
      const at = d.nicMacs.indexOf(i.mac);
      return { id: at === -1 ? '' : (d.nicIds[at] ?? ''), mac: i.mac, deviceIndex, ips: [...i.ips] };
    });
  }

  async describeSubnets(subnetIds: string[]): Promise<SubnetInfo[]> {
    const node = await this.describeNode().catch(() => undefined);
    const out: SubnetInfo[] = [];
    for (const id of subnetIds) {
      const s = await this.getSubnet(id);
      const cidr = subnetPrefix(s);
      const size = 2 ** (32 - Number(cidr.split('/')[1]));
      // Azure keeps 5 addresses of every subnet; each ipConfiguration in it holds one more.
      const available = Math.max(0, size - 5 - (s.ipConfigurations?.length ?? 0));
      out.push({
        id: s.id ?? id,
        cidr,
        // Azure subnets are regional: they serve every zone, the node's included.
        availabilityZone: node?.availabilityZone ?? '',
        availableIps: available,
        tags: {},
      });
    }
    return out;
  }

  async createInterface(req: CreateInterfaceRequest): Promise<InterfaceInfo> {
    throw new LimitExceededError(
      `cannot add a NIC in ${req.subnetId}: Azure cannot attach a network interface to a running VM ` +
        '(NICs are fixed when the VM is created or stopped/deallocated); the pool grows only by adding ' +
        `IP configurations to the VM's existing NICs, up to ${MAX_IP_CONFIGS_PER_NIC} each`,
      { cloudCode: 'NicHotAttachUnsupported' },
    );
  }

  async assignIps(interfaceId: string, req: AssignRequest): Promise<string[]> {
    const t = token();
    let subnetId: string | undefined;
    try {
      return await this.mutateNic(interfaceId, (nic) => {
        const primary = primaryConfig(nic);
        subnetId = primary.subnet?.id;
        const plan = planAdd(views(nic), req, t);
        const added: NetworkInterfaceIPConfiguration[] = plan.add.map((c) => ({
          name: c.name,
          primary: false,
          privateIPAddressVersion: 'IPv4',
          privateIPAllocationMethod: c.privateIPAddress ? 'Static' : 'Dynamic',
          ...(c.privateIPAddress ? { privateIPAddress: c.privateIPAddress } : {}),
          subnet: { id: subnetId },
        }));
        return {
          configs: added.length > 0 ? [...(nic.ipConfigurations ?? []), ...added] : undefined,
          result: (after: NetworkInterface) => {
            const configs = after.ipConfigurations ?? [];
            if ('ips' in req) {
              const held = new Set(configs.map((c) => c.privateIPAddress));
              return [...new Set(req.ips)].filter((ip) => held.has(ip));
            }
            const names = new Set(plan.names);
            return configs
              .filter((c) => c.name && names.has(c.name) && c.privateIPAddress)
              .map((c) => c.privateIPAddress!);
          },
        };
      });
    } catch (err) {
      if (err instanceof SubnetExhaustedError && !err.subnetId && subnetId) {
        throw new SubnetExhaustedError(err.message, {
          subnetId,
          cloudCode: err.cloudCode ?? 'SubnetIsFull',
          cause: err,
        });
      }
      if (err instanceof RangeError || err instanceof TypeError)
        throw new OtherProviderError(err.message, { cause: err });
      throw err;
    }
  }

  async unassignIps(interfaceId: string, ips: string[]): Promise<void> {
    if (ips.length === 0) return;
    try {
      await this.mutateNic(interfaceId, (nic) => {
        const plan = planRemove(views(nic), ips);
        const drop = new Set(plan.remove);
        return {
          configs:
            drop.size > 0
              ? (nic.ipConfigurations ?? []).filter((c) => !(c.name && drop.has(c.name)))
              : undefined,
          result: () => undefined,
        };
      });
    } catch (err) {
      if (err instanceof RangeError) throw new OtherProviderError(err.message, { cause: err });
      throw err;
    }
  }

  /**
   * Azure cannot detach a NIC from a running VM, so an attached NIC is always refused
   * (InterfaceInUseError), with or without `onlyIfDetached`; ARM's own NicInUse (a VM took the NIC
   * between our GET and DELETE) maps to the same error.
   */
  async deleteInterface(interfaceId: string, _options: DeleteInterfaceOptions = {}): Promise<void> {
    const ref = parseNicId(interfaceId);
    let nic: NetworkInterface;
    try {
      nic = await this.getNic(interfaceId);
    } catch (err) {
      if (err instanceof NotFoundError) return; // already gone
      throw err;
    }
    if (nic.virtualMachine?.id) {
      throw new InterfaceInUseError(
        `refusing to delete NIC ${interfaceId}: it is attached to ${nic.virtualMachine.id}, and Azure cannot detach a NIC from a running VM`,
        { cloudCode: 'NicInUse' },
      );
    }
    const deleteNic = () =>
      this.caller.call('NetworkInterfaces.delete', 'armWrite', () =>
        this.networkWrites.schedule(async () => {
          await this.arm().networkInterfaces.delete(ref.resourceGroup, ref.name, {
            updateIntervalInMs: this.opts.lroPollIntervalMs ?? 1000,
          });
        }),
      );
    try {
      await deleteNic();
    } catch (err) {
      // A delete whose operation ended Failed/Canceled or unanswered may have happened: look.
      if (!isUnknownOutcome(err)) throw err;
      try {
        await this.getNic(interfaceId);
      } catch (gone) {
        if (gone instanceof NotFoundError) return;
      }
      throw err;
    }
  }

  async findLeakedInterfaces(query: LeakQuery): Promise<LeakedInterface[]> {
    const d = await this.discover();
    const client = this.arm();
    const all = await this.caller.call('NetworkInterfaces.list', 'armRead', async () => {
      const out: NetworkInterface[] = [];
      for await (const nic of client.networkInterfaces.list(d.resourceGroup)) out.push(nic);
      return out;
    });
    const now = (this.opts.now ?? Date.now)();
    const out: LeakedInterface[] = [];
    for (const nic of all) {
      const tags = nic.tags ?? {};
      if (tags[OWNER_TAGS.managedBy] !== 'vpc-ipam' || tags[OWNER_TAGS.clusterName] !== query.clusterName)
        continue;
      if (nic.virtualMachine?.id) continue; // attached: never a leak
      const createdTag = tags[OWNER_TAGS.createdAt];
      const created = createdTag ? new Date(createdTag) : undefined;
      const createdAt = created && !Number.isNaN(created.getTime()) ? created : undefined;
      if (query.olderThanMs !== undefined && (!createdAt || now - createdAt.getTime() < query.olderThanMs))
        continue;
      const primary = nic.ipConfigurations?.find((c) => c.primary) ?? nic.ipConfigurations?.[0];
      out.push({
        id: nic.id!,
        subnetId: primary?.subnet?.id ?? '',
        ...(createdAt ? { createdAt } : {}),
        ...(tags[OWNER_TAGS.instanceId] ? { instanceId: tags[OWNER_TAGS.instanceId] } : {}),
        clusterName: query.clusterName,
        status: 'available',
      });
    }
    return out;
  }

  // ---- helpers ----

  private async getNic(id: string): Promise<NetworkInterface> {
    const ref = parseNicId(id);
    return this.caller.call('NetworkInterfaces.get', 'armRead', () =>
      this.arm().networkInterfaces.get(ref.resourceGroup, ref.name),
    );
  }

  private async getSubnet(id: string): Promise<Subnet> {
    const ref = parseSubnetId(id);
    await this.discover();
    return this.caller.call('Subnets.get', 'armRead', () =>
      this.arm().subnets.get(ref.resourceGroup, ref.virtualNetwork, ref.subnet),
    );
  }

  /**
   * Read-plan-write a NIC under If-Match, serialised per NIC. `plan` returns the new
   * ipConfigurations (undefined: nothing to write) and how to read the result.
   */
  private async mutateNic<T>(
    interfaceId: string,
    plan: (nic: NetworkInterface) => {
      configs: NetworkInterfaceIPConfiguration[] | undefined;
      result: (after: NetworkInterface) => T;
    },
  ): Promise<T> {
    const ref = parseNicId(interfaceId);
    await this.discover();
    return this.withNicLock(interfaceId.toLowerCase(), async () => {
      const max = this.opts.maxEtagAttempts ?? 5;
      for (let attempt = 1; ; attempt++) {
        const nic = await this.getNic(interfaceId);
        const p = plan(nic);
        if (!p.configs) return p.result(nic);
        try {
          const after = await this.caller.call('NetworkInterfaces.createOrUpdate', 'armWrite', () =>
            this.networkWrites.schedule(async () =>
              this.arm().networkInterfaces.createOrUpdate(
                ref.resourceGroup,
                ref.name,
                { ...nic, ipConfigurations: p.configs },
                {
                  updateIntervalInMs: this.opts.lroPollIntervalMs ?? 1000,
                  requestOptions: nic.etag ? { headers: { 'If-Match': nic.etag } } : {},
                },
              ),
            ),
          );
          return p.result(after);
        } catch (err) {
          if (err instanceof EtagConflictError && attempt < max) continue;
          // Made or not? The next round re-reads the NIC: the plan recognises our own configurations.
          if (isUnknownOutcome(err) && attempt < max) continue;
          if (isOperationInProgress(err) && attempt < max) {
            await this.settle(interfaceId, err);
            continue;
          }
          if (err instanceof EtagConflictError) {
            throw new EtagConflictError(
              `NIC ${interfaceId} kept changing under us: gave up after ${max} attempts (${err.message})`,
              {
                cloudCode: 'PreconditionFailed',
                cause: err,
              },
            );
          }
          throw asProviderError(err);
        }
      }
    });
  }

  /** Wait until no operation runs on the NIC (provisioning state not Updating), bounded. */
  private async settle(interfaceId: string, cause: unknown): Promise<void> {
    const interval = this.opts.lroPollIntervalMs ?? 1000;
    const deadline = Date.now() + (this.opts.operationWaitMs ?? 120_000);
    for (;;) {
      const nic = await this.getNic(interfaceId);
      if (nic.provisioningState !== 'Updating') return;
      if (Date.now() > deadline) throw asProviderError(cause);
      await new Promise((r) => setTimeout(r, interval));
    }
  }

  private async withNicLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.nicLocks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.nicLocks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.nicLocks.get(key) === tail) this.nicLocks.delete(key);
    }
  }
}

function asProviderError(err: unknown): ProviderError | Error {
  if (isProviderError(err) || err instanceof RangeError || err instanceof TypeError) return err as Error;
  return toProviderError(err);
}

function primaryConfig(nic: NetworkInterface): NetworkInterfaceIPConfiguration {
  const configs = nic.ipConfigurations ?? [];
  const p = configs.find((c) => c.primary) ?? (configs.length === 1 ? configs[0] : undefined);
  if (!p) throw new OtherProviderError(`NIC ${nic.id} has no primary IP configuration`);
  return p;
}

function views(nic: NetworkInterface): IpConfigView[] {
  const primary = primaryConfig(nic);
  return (nic.ipConfigurations ?? []).map((c) => ({
    name: c.name ?? '',
    privateIPAddress: c.privateIPAddress ?? '',
    primary: c === primary,
  }));
}

function subnetPrefix(s: Subnet): string {
  const p = s.addressPrefix ?? s.addressPrefixes?.find((x) => x.includes('.'));
  if (!p) throw new OtherProviderError(`subnet ${s.id} has no IPv4 address prefix`);
  return p;
}
