// The socket API between the CNI plugin (and the CLI) and the daemon: HTTP/1.1 + JSON over a
// root-only Unix socket (default /run/vpc-ipam/ipamd.sock), so operators can use
// `curl --unix-socket`. This file is the contract: both sides import these types.
//
//   POST /v1/allocate       AllocateRequest  -> 200 Allocation | 503 ApiError (code NO_IP, retryable)
//   POST /v1/release        ReleaseRequest   -> 200 ReleaseResponse (released: null when unknown, or not that ip)
//   GET  /v1/allocation?containerId=..&ifName=..  -> 200 Allocation | 404 ApiError
//   GET  /v1/allocations                      -> 200 { allocations: AllocationRecord[] }
//   POST /v1/gc             GcRequest        -> 200 GcResponse (releases what is not listed)
//   GET  /v1/pool                             -> 200 PoolStatus
//   GET  /healthz, /readyz                    -> 200 { ok: true } | 503 { ok: false, reason }

export const DEFAULT_SOCKET_PATH = '/run/vpc-ipam/ipamd.sock';

/** Identifies one pod attachment, as the CNI spec does: (container id, interface name). */
export interface AttachmentKey {
  containerId: string;
  ifName: string;
}

export interface AllocateRequest extends AttachmentKey {
  /** Network namespace path the runtime gave (recorded for diagnostics and GC). */
  netns?: string;
  /** The pod's identity as the runtime gives it (CNI_ARGS K8S_POD_*); required on the socket. */
  podNamespace?: string;
  podName?: string;
  /** K8S_POD_UID when the runtime gives it: the pod watcher matches on it. */
  podUid?: string;
  /** The CNI network name (the conf's "name"): a GC only collects allocations of its own network. */
  network?: string;
}

/** What the plugin needs to wire a pod. */
export interface Allocation extends AttachmentKey {
  ip: string;
  /** Interface (ENI / NIC) that owns the IP. */
  interfaceId: string;
  /** MAC of that interface on the node; the node-side link is found by it. */
  interfaceMac: string;
  deviceIndex: number;
  /** CIDR of the interface's subnet, and its gateway (first host address). */
  subnetCidr: string;
  gateway: string;
  /**
   * Policy-routing table for pods on a secondary interface (`from <ip> lookup <table>`);
   * 0 for IPs on the primary interface, which use the main table.
   */
  routeTable: number;
  /** VPC CIDRs: traffic to these keeps the pod's source IP. */
  vpcCidrs: string[];
  /**
   * Destinations the node does not SNAT: the VPC CIDRs and AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS, or
   * 0.0.0.0/0 with AWS_VPC_K8S_CNI_EXTERNALSNAT. ipvlan mode sends these straight out of the ENI
   * and the rest through the node (SNAT). Absent from older daemons: use vpcCidrs.
   */
  noSnatCidrs?: string[];
  podNamespace?: string;
  podName?: string;
  /**
   * The pod's host veth when it is not the plugin's own name for this key: a pod another plugin
   * wired and the daemon adopted (taking a node over from the AWS VPC CNI). DEL removes that veth.
   */
  hostVeth?: string;
}

export interface ReleaseRequest extends AttachmentKey {
  /**
   * Release only while the key still holds this IP (else released: null). A failed ADD releases
   * its own allocation this way: a DEL may have freed it and a new ADD of the key taken another.
   */
  ip?: string;
}

export interface ReleaseResponse {
  /** The IP returned to the pool, or null when the key held nothing (DEL is idempotent). */
  released: string | null;
}

export interface AllocationRecord extends Allocation {
  netns?: string;
  podUid?: string;
  network?: string;
  /** ISO time of assignment. */
  assignedAt: string;
  /**
   * Set when the daemon found this pod only by its host route (`<ip>/32 dev <veth>`) after losing
   * its checkpoint: the host veth. Such an entry is released when that route disappears.
   */
  recoveredFrom?: string;
}

export interface GcRequest {
  /**
   * Attachments the runtime still knows about in this network. Every other allocation of the
   * network is released, unless it is younger than the daemon's GC grace period or its pod is
   * still wired (a host route to its IP, or its host veth, exists).
   */
  validAttachments: AttachmentKey[];
  /** The CNI network name; allocations made for another network (or none) are left alone. */
  network?: string;
}

export interface GcResponse {
  released: AttachmentKey[];
  /** Unlisted allocations of the network that were kept, and why. */
  kept?: { young: number; wired: number; unverified: number };
}

export interface PoolInterfaceStatus {
  interfaceId: string;
  mac: string;
  deviceIndex: number;
  subnetId: string;
  total: number;
  assigned: number;
  cooling: number;
  free: number;
  /** Assigned IPs the cloud no longer has (drift): their pods lost their address. */
  lost?: number;
  /** The interface is gone from the cloud (drift); kept while pods hold IPs on it. */
  gone?: boolean;
  /** Every IP the pool holds on it, with its state. */
  ips?: PoolIpStatus[];
}

export interface PoolIpStatus {
  ip: string;
  state: 'free' | 'assigned' | 'cooling' | 'releasing';
  /** Assigned but gone from the cloud (drift). */
  lost?: boolean;
}

export interface PoolStatus {
  instanceId: string;
  instanceType: string;
  maxPods: number;
  total: number;
  assigned: number;
  cooling: number;
  free: number;
  /** Assigned IPs the cloud no longer has (drift). */
  lost?: number;
  /** What the engine wants next, and why (human words). */
  plan: string;
  /** Why no IP can be had right now, when that is the case. */
  noIpReason: string | null;
  interfaces: PoolInterfaceStatus[];
}

/** Machine-readable error codes returned by the socket API. */
export type ApiErrorCode =
  | 'BAD_REQUEST'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'NO_IP'
  | 'NOT_READY'
  | 'INTERNAL';

export interface ApiError {
  code: ApiErrorCode;
  message: string;
  /** True when the same request may succeed later (CNI error 11, "try again later"). */
  retryable: boolean;
  /** For NO_IP: subnet-full, instance-limit, max-eni, throttled, cloud-error, pool-growing. */
  reason?: string;
}
