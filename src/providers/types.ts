// The cloud-neutral provider interface. Cloud SDK types never leave src/providers/<cloud>/:
// everything the daemon, the pool engine and the plugin see is expressed in these shapes.

export type CloudName = 'aws' | 'azure';

/** What the daemon knows about the machine it runs on. */
export interface NodeInfo {
  cloud: CloudName;
  /** EC2 instance id, or the Azure VM id. */
  instanceId: string;
  instanceType: string;
  region: string;
  availabilityZone: string;
  /** VPC / VNet id. */
  vpcId: string;
  /** Every CIDR of the VPC / address prefix of the VNet (pod traffic to these is never SNATed). */
  vpcCidrs: string[];
  /** Subnet of the primary interface. */
  primarySubnetId: string;
  /** The node's primary private IP (SNAT target). */
  primaryIp: string;
  primaryMac: string;
  securityGroupIds: string[];
  /** Interfaces the instance type can hold (ENIs on AWS, NICs on Azure). */
  maxInterfaces: number;
  /** Private IPs per interface, the interface's own primary IP included. */
  ipsPerInterface: number;
}

/** An interface (ENI / NIC) attached to the node. */
export interface InterfaceInfo {
  id: string;
  mac: string;
  /** 0 is the primary interface. */
  deviceIndex: number;
  subnetId: string;
  /** The subnet's CIDR, e.g. 10.0.1.0/24; the gateway is its first host address. */
  subnetCidr: string;
  /** The interface's own primary IP: never handed to a pod. */
  primaryIp: string;
  /** Secondary IPs: what the pool hands to pods. */
  secondaryIps: string[];
  tags: Record<string, string>;
  /**
   * Set when another IPAM created this interface for pods and marked it so (AWS: the AWS VPC CNI's
   * description and tags); vpc-ipamd adopts such interfaces of its own instance and cluster when
   * it takes a node over.
   */
  foreignOwner?: ForeignOwner;
}

/** Another pod IPAM's ownership marks on an interface (see providers/aws/aws-vpc-cni-owner.ts). */
export interface ForeignOwner {
  tool: 'aws-vpc-cni';
  instanceId: string;
  clusterName: string;
  createdAt?: Date;
}

/**
 * An interface as the instance metadata service lists it (free to read, no API budget): enough to
 * notice IPs and interfaces added or removed out of band, not enough to judge an unknown one
 * (no subnet, no tags: those come from listInterfaces()).
 */
export interface MetadataInterface {
  /** The interface id as listInterfaces() spells it; '' when metadata cannot name it. */
  id: string;
  mac: string;
  deviceIndex: number;
  /** Every private IPv4 on the interface, its primary first. */
  ips: string[];
}

export interface SubnetInfo {
  id: string;
  cidr: string;
  availabilityZone: string;
  /** Free addresses as the cloud reports them. */
  availableIps: number;
  tags: Record<string, string>;
}

export interface CreateInterfaceRequest {
  subnetId: string;
  securityGroupIds: string[];
  /** Secondary IPs to assign at creation (besides the primary). */
  secondaryIpCount?: number;
  /** Extra tags; the provider always adds its ownership tags. */
  tags?: Record<string, string>;
}

/** Either a count of IPs the cloud picks, or exact addresses (re-claiming known ones). */
/**
 * `known`: what the caller knows of the interface, its subnet and every address on it (the primary
 * included). A provider may then skip reading the interface first (the AWS one does against EC2,
 * whose answer lists only the new addresses); an address it did not know of is still never lost.
 */
export type AssignRequest = ({ count: number } | { ips: string[] }) & {
  known?: { subnetId: string; ips: string[] };
};

export interface DeleteInterfaceOptions {
  /**
   * Never detach: delete only an interface that is not attached, else reject with
   * InterfaceInUseError and change nothing. For cleanup of leaks (the janitor), where detaching a
   * live node's interface would cut its pods off. The cloud's own delete refuses an attached
   * interface atomically (EC2 InvalidNetworkInterface.InUse, ARM NicInUse); providers also look
   * right before, because emulators (LocalStack) do not refuse.
   */
  onlyIfDetached?: boolean;
}

/** An interface that nothing is attached to and that our tags say we created. */
export interface LeakedInterface {
  id: string;
  subnetId: string;
  /** From our creation-time tag; undefined when the tag is missing or unparsable. */
  createdAt?: Date;
  /** Instance the tags say created it. */
  instanceId?: string;
  clusterName?: string;
  status: string;
  /** Who created it: us (our tags), or aws-node before a takeover (its tags). Default: us. */
  createdBy?: 'vpc-ipam' | ForeignOwner['tool'];
}

export interface LeakQuery {
  clusterName: string;
  /** Only interfaces created before now - olderThanMs. */
  olderThanMs?: number;
}

/**
 * Everything the daemon asks of a cloud. Implementations enforce the instance's limits themselves
 * (emulators do not), map every failure to a ProviderError, and rate-limit their own calls.
 */
export interface CloudProvider {
  readonly cloud: CloudName;
  /** Discover the node (IMDS + one describe call); cached after the first success. */
  describeNode(): Promise<NodeInfo>;
  /** Interfaces attached to this node, sorted by device index. */
  listInterfaces(): Promise<InterfaceInfo[]>;
  /**
   * The same, read from instance metadata (AWS IMDS, Azure IMDS): no API budget spent, but it may
   * lag the API by seconds. Optional: the daemon's drift resync falls back to listInterfaces().
   */
  listInterfacesFromMetadata?(): Promise<MetadataInterface[]>;
  describeSubnets(subnetIds: string[]): Promise<SubnetInfo[]>;
  /**
   * Subnet discovery (AWS ENABLE_SUBNET_DISCOVERY): the subnets of the node's VPC and zone that
   * pod interfaces may use, most free addresses first. Optional: without it, the node's subnet.
   */
  discoverPodSubnets?(): Promise<SubnetInfo[]>;
  /** Create an interface in the subnet and attach it at the lowest free device index. */
  createInterface(req: CreateInterfaceRequest): Promise<InterfaceInfo>;
  /** Assign secondary IPs; resolves to the addresses actually added. */
  assignIps(interfaceId: string, req: AssignRequest): Promise<string[]>;
  unassignIps(interfaceId: string, ips: string[]): Promise<void>;
  /**
   * Detach (if attached) and delete; with `onlyIfDetached`, reject an attached one instead
   * (InterfaceInUseError). Never called on the primary interface.
   */
  deleteInterface(interfaceId: string, options?: DeleteInterfaceOptions): Promise<void>;
  findLeakedInterfaces(query: LeakQuery): Promise<LeakedInterface[]>;
  /**
   * For the janitor: instance id -> true while the instance exists (running, stopped, pending...),
   * false when the cloud says it is gone (terminated, shutting down, unknown). Ids the cloud
   * cannot judge are left out. On any failure every id is reported as existing (never delete on
   * doubt). Optional: without it the janitor relies on Kubernetes Nodes alone.
   */
  instancesExist?(instanceIds: string[]): Promise<Map<string, boolean>>;
}

/** Tag keys written on every interface we create, so leaks can be found and attributed. */
export const OWNER_TAGS = {
  instanceId: 'vpc-ipam/instance-id',
  clusterName: 'vpc-ipam/cluster-name',
  createdAt: 'vpc-ipam/created-at',
  managedBy: 'vpc-ipam/managed-by',
} as const;

/** Observes every cloud API call, for metrics and tests. */
export interface ApiCallObserver {
  onCall(event: ApiCallEvent): void;
}

export interface ApiCallEvent {
  cloud: CloudName;
  api: string;
  outcome: 'ok' | 'throttled' | 'error';
  /** Wall time of this attempt. */
  durationMs: number;
  /** 1 for the first try. */
  attempt: number;
}
