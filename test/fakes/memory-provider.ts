// An in-memory CloudProvider for fast tests of the daemon's orchestration. It behaves like the real
// providers where the daemon can tell: it enforces the instance's interface and per-interface IP
// limits, hands out distinct addresses from each subnet's CIDR, refuses when a subnet is full,
// tags what it creates, and can be told to fail (throttle, error) or to be slow.

import {
  InterfaceInUseError,
  LimitExceededError,
  NotFoundError,
  OtherProviderError,
  SubnetExhaustedError,
  ThrottledError,
} from '../../src/providers/errors.ts';
import {
  type AssignRequest,
  type CloudProvider,
  type CreateInterfaceRequest,
  type DeleteInterfaceOptions,
  type InterfaceInfo,
  type LeakedInterface,
  type MetadataInterface,
  type NodeInfo,
  OWNER_TAGS,
  type SubnetInfo,
} from '../../src/providers/types.ts';

export interface MemorySubnet {
  id: string;
  cidr: string;
}

export interface MemoryProviderOptions {
  instanceType?: string;
  maxInterfaces?: number;
  ipsPerInterface?: number;
  /** Secondary IPs already on the primary interface at start. */
  primarySecondaryIps?: number;
  subnets?: MemorySubnet[];
  /** Milliseconds each mutating call takes. */
  latencyMs?: number;
}

export type FailureKind = 'throttle' | 'error' | 'subnet-full';

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}
function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export class MemoryProvider implements CloudProvider {
  readonly cloud = 'aws' as const;
  readonly node: NodeInfo;
  readonly subnets: MemorySubnet[];
  readonly interfaces: InterfaceInfo[] = [];
  /** Calls made, by API name. */
  readonly calls: Record<string, number> = {};
  /** Failures to inject on the next calls of an API (FIFO). */
  readonly failNext: Record<string, FailureKind[]> = {};
  latencyMs: number;
  /** A stale copy of the interfaces served as instance metadata (IMDS lags the API), or null: live. */
  private metadataSnapshot: InterfaceInfo[] | null = null;
  /** Make listInterfacesFromMetadata fail (unreadable metadata). */
  metadataFails = false;
  private readonly used = new Set<string>();
  private seq = 0;

  constructor(opts: MemoryProviderOptions = {}) {
    this.subnets = opts.subnets ?? [{ id: 'subnet-aaaa0001', cidr: '10.1.0.0/24' }];
    const first = this.subnets[0] as MemorySubnet;
    this.latencyMs = opts.latencyMs ?? 0;
    const primaryIp = this.allocateIp(first.id);
    this.node = {
      cloud: 'aws',
      instanceId: 'i-0123456789abcdef0',
      instanceType: opts.instanceType ?? 'm5.large',
      region: 'us-east-1',
      availabilityZone: 'us-east-1a',
      vpcId: 'vpc-1',
      vpcCidrs: ['10.1.0.0/16'],
      primarySubnetId: first.id,
      primaryIp,
      primaryMac: '02:00:00:00:00:00',
      securityGroupIds: ['sg-1'],
      maxInterfaces: opts.maxInterfaces ?? 3,
      ipsPerInterface: opts.ipsPerInterface ?? 10,
    };
    const secondary = Array.from({ length: opts.primarySecondaryIps ?? 0 }, () => this.allocateIp(first.id));
    this.interfaces.push({
      id: 'eni-00000000',
      mac: '02:00:00:00:00:00',
      deviceIndex: 0,
      subnetId: first.id,
      subnetCidr: first.cidr,
      primaryIp,
      secondaryIps: secondary,
      tags: {},
    });
  }

  private subnet(id: string): MemorySubnet {
    const s = this.subnets.find((x) => x.id === id);
    if (!s) throw new NotFoundError(`subnet ${id} not found`);
    return s;
  }

  private freeInSubnet(id: string): number {
    const s = this.subnet(id);
    const [, bits] = s.cidr.split('/');
    const size = 2 ** (32 - Number(bits));
    const base = ipToInt(s.cidr.split('/')[0] as string);
    let used = 0;
    for (const ip of this.used) {
      const n = ipToInt(ip);
      if (n >= base && n < base + size) used++;
    }
    return size - 5 - used; // AWS reserves 5 per subnet
  }

  private allocateIp(subnetId: string): string {
    const s = this.subnet(subnetId);
    const [addr, bits] = s.cidr.split('/');
    const base = ipToInt(addr as string);
    const size = 2 ** (32 - Number(bits));
    for (let n = base + 4; n < base + size - 1; n++) {
      const ip = intToIp(n);
      if (!this.used.has(ip)) {
        this.used.add(ip);
        return ip;
      }
    }
    throw new SubnetExhaustedError(`subnet ${subnetId} has no free addresses`, {
      subnetId,
      cloudCode: 'InsufficientFreeAddressesInSubnet',
    });
  }

  private async enter(api: string): Promise<void> {
    this.calls[api] = (this.calls[api] ?? 0) + 1;
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const f = this.failNext[api]?.shift();
    if (f === 'throttle')
      throw new ThrottledError(`${api}: Request limit exceeded`, { cloudCode: 'RequestLimitExceeded' });
    if (f === 'error')
      throw new OtherProviderError(`${api}: injected failure`, { cloudCode: 'InternalError' });
    if (f === 'subnet-full')
      throw new SubnetExhaustedError(`${api}: subnet full`, {
        cloudCode: 'InsufficientFreeAddressesInSubnet',
      });
  }

  private iface(id: string): InterfaceInfo {
    const i = this.interfaces.find((x) => x.id === id);
    if (!i)
      throw new NotFoundError(`interface ${id} not found`, {
        cloudCode: 'InvalidNetworkInterfaceID.NotFound',
      });
    return i;
  }

  async describeNode(): Promise<NodeInfo> {
    await this.enter('describeNode');
    return structuredClone(this.node);
  }

  async listInterfaces(): Promise<InterfaceInfo[]> {
    await this.enter('listInterfaces');
    return structuredClone([...this.interfaces].sort((a, b) => a.deviceIndex - b.deviceIndex));
  }

  /** Instance metadata: the live interfaces, or the frozen copy while freezeMetadata() holds. */
  async listInterfacesFromMetadata(): Promise<MetadataInterface[]> {
    this.calls.listInterfacesFromMetadata = (this.calls.listInterfacesFromMetadata ?? 0) + 1;
    if (this.metadataFails) throw new OtherProviderError('IMDS: connection refused', { cloudCode: 'IMDS' });
    return (this.metadataSnapshot ?? this.interfaces)
      .map((i) => ({
        id: i.id,
        mac: i.mac,
        deviceIndex: i.deviceIndex,
        ips: [i.primaryIp, ...i.secondaryIps],
      }))
      .sort((a, b) => a.deviceIndex - b.deviceIndex);
  }

  /** Metadata keeps answering what it says now (lagging the API) until thawMetadata(). */
  freezeMetadata(): void {
    this.metadataSnapshot = structuredClone(this.interfaces);
  }

  thawMetadata(): void {
    this.metadataSnapshot = null;
  }

  // ---- changes behind the daemon's back (an operator, another tool, a console click) ----

  /**
   * Unassign a secondary IP out of band. The address stays taken in the subnet (as when the other
   * tool moved it elsewhere), so assignIps never hands it back by chance; putIpBackOutOfBand does.
   */
  removeIpOutOfBand(ip: string): void {
    const i = this.interfaces.find((x) => x.secondaryIps.includes(ip));
    if (!i) throw new Error(`${ip} is not a secondary IP on any interface`);
    i.secondaryIps = i.secondaryIps.filter((x) => x !== ip);
  }

  /** Re-assign an address removed by removeIpOutOfBand to an interface. */
  putIpBackOutOfBand(interfaceId: string, ip: string): void {
    this.iface(interfaceId).secondaryIps.push(ip);
  }

  /** Assign a new secondary IP out of band; returns it. */
  addIpOutOfBand(interfaceId: string): string {
    const i = this.iface(interfaceId);
    const ip = this.allocateIp(i.subnetId);
    i.secondaryIps.push(ip);
    return ip;
  }

  /** Detach and delete an interface out of band. */
  removeInterfaceOutOfBand(interfaceId: string): InterfaceInfo {
    const i = this.iface(interfaceId);
    this.interfaces.splice(this.interfaces.indexOf(i), 1);
    for (const ip of [i.primaryIp, ...i.secondaryIps]) this.used.delete(ip);
    return i;
  }

  /** Attach an interface out of band (tags decide whether the daemon may use it). */
  addInterfaceOutOfBand(opts: {
    secondaryIps: number;
    tags?: Record<string, string>;
    subnetId?: string;
  }): InterfaceInfo {
    return this.attach(opts.subnetId ?? this.node.primarySubnetId, opts.secondaryIps, opts.tags ?? {});
  }

  /** Attach a new interface at the lowest free device index (the daemon's path and the out-of-band one). */
  private attach(subnetId: string, secondaryIps: number, tags: Record<string, string>): InterfaceInfo {
    const taken = new Set(this.interfaces.map((i) => i.deviceIndex));
    let deviceIndex = 1;
    while (taken.has(deviceIndex)) deviceIndex++;
    const n = ++this.seq;
    const info: InterfaceInfo = {
      id: `eni-${n.toString(16).padStart(8, '0')}`,
      mac: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`,
      deviceIndex,
      subnetId,
      subnetCidr: this.subnet(subnetId).cidr,
      primaryIp: this.allocateIp(subnetId),
      secondaryIps: Array.from({ length: secondaryIps }, () => this.allocateIp(subnetId)),
      tags,
    };
    this.interfaces.push(info);
    return structuredClone(info);
  }

  async describeSubnets(ids: string[]): Promise<SubnetInfo[]> {
    await this.enter('describeSubnets');
    return ids.map((id) => ({
      id,
      cidr: this.subnet(id).cidr,
      availabilityZone: 'us-east-1a',
      availableIps: this.freeInSubnet(id),
      tags: {},
    }));
  }

  async createInterface(req: CreateInterfaceRequest): Promise<InterfaceInfo> {
    await this.enter('createInterface');
    if (this.interfaces.length >= this.node.maxInterfaces) {
      throw new LimitExceededError(`${this.node.instanceType} allows ${this.node.maxInterfaces} interfaces`, {
        cloudCode: 'AttachmentLimitExceeded',
      });
    }
    const count = req.secondaryIpCount ?? 0;
    if (count > this.node.ipsPerInterface - 1) throw new LimitExceededError('too many IPs for one interface');
    if (this.freeInSubnet(req.subnetId) < count + 1) {
      throw new SubnetExhaustedError(`subnet ${req.subnetId} is full`, { subnetId: req.subnetId });
    }
    return this.attach(req.subnetId, count, {
      ...req.tags,
      [OWNER_TAGS.instanceId]: this.node.instanceId,
      [OWNER_TAGS.managedBy]: 'vpc-ipam',
    });
  }

  async assignIps(interfaceId: string, req: AssignRequest): Promise<string[]> {
    await this.enter('assignIps');
    const i = this.iface(interfaceId);
    const want = 'count' in req ? req.count : req.ips.length;
    if (i.secondaryIps.length + want > this.node.ipsPerInterface - 1) {
      throw new LimitExceededError(`${interfaceId} cannot hold ${want} more IPs`, {
        cloudCode: 'PrivateIpAddressLimitExceeded',
      });
    }
    let ips: string[];
    if ('count' in req) {
      if (this.freeInSubnet(i.subnetId) < want)
        throw new SubnetExhaustedError(`subnet ${i.subnetId} is full`);
      ips = Array.from({ length: want }, () => this.allocateIp(i.subnetId));
    } else {
      for (const ip of req.ips) if (this.used.has(ip)) throw new OtherProviderError(`${ip} is in use`);
      for (const ip of req.ips) this.used.add(ip);
      ips = [...req.ips];
    }
    i.secondaryIps.push(...ips);
    return ips;
  }

  async unassignIps(interfaceId: string, ips: string[]): Promise<void> {
    await this.enter('unassignIps');
    const i = this.iface(interfaceId);
    for (const ip of ips) {
      if (!i.secondaryIps.includes(ip)) throw new NotFoundError(`${ip} is not on ${interfaceId}`);
    }
    i.secondaryIps = i.secondaryIps.filter((ip) => !ips.includes(ip));
    for (const ip of ips) this.used.delete(ip);
  }

  async deleteInterface(interfaceId: string, options: DeleteInterfaceOptions = {}): Promise<void> {
    await this.enter('deleteInterface');
    const i = this.iface(interfaceId);
    if (i.deviceIndex === 0) throw new OtherProviderError('refusing to delete the primary interface');
    // Every interface here is attached to the node.
    if (options.onlyIfDetached) throw new InterfaceInUseError(`${interfaceId} is attached; not deleted`);
    this.interfaces.splice(this.interfaces.indexOf(i), 1);
    for (const ip of [i.primaryIp, ...i.secondaryIps]) this.used.delete(ip);
  }

  async findLeakedInterfaces(): Promise<LeakedInterface[]> {
    await this.enter('findLeakedInterfaces');
    return [];
  }

  /** Every secondary IP on the node, for leak checks. */
  allSecondaryIps(): string[] {
    return this.interfaces.flatMap((i) => i.secondaryIps);
  }
}
