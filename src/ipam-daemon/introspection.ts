// A read-only introspection endpoint shaped like the AWS VPC CNI's (INTROSPECTION_BIND_ADDRESS,
// default 127.0.0.1:61679; DISABLE_INTROSPECTION), for tools that scrape aws-node's:
//   GET /                                {"AvailableCommands": [...paths]}
//   GET /v1/enis                         {"<network card>": {TotalIPs, AssignedIPs, ENIs: {<eni id>: ENI}}}
//   GET /v1/eni-configs                  the custom-networking config name (JSON string), 404 without one
//   GET /v1/ipamd-env-settings           warm-pool settings by their AWS names
//   GET /v1/networkutils-env-settings    data-plane settings by their AWS names
// The JSON follows the AWS plugin's field names (Go structs marshalled as they are), with container
// ids and interface names blanked as there. Everything else: 404; any method but GET/HEAD: 405.
// The shapes are built by pure functions; the server only serves them.

import { chmod, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AllocationRecord, PoolStatus } from './api-types.ts';
import type { DaemonConfig } from './config.ts';
import { routeTableFor } from './node-setup/plan.ts';

export const DEFAULT_INTROSPECTION_ADDRESS = '127.0.0.1:61679';

/** The network name in IPAM keys; the AWS plugin writes its conflist's ("aws-cni"). */
const NETWORK_NAME = 'vpc-ipam';
/** Go's zero time.Time, as the AWS plugin prints an unset one. */
const ZERO_TIME = '0001-01-01T00:00:00Z';
/** The main table's id: the primary ENI's route table in the AWS plugin's ENI records. */
const MAIN_TABLE = 254;

export type IntrospectionAddress =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string };

/** `host:port`, `[v6]:port` or `unix:/absolute/path` (the AWS plugin's forms). */
export function parseIntrospectionAddress(raw: string): IntrospectionAddress {
  const t = raw.trim();
  if (t.startsWith('unix:')) {
    const path = t.slice(5);
    if (!path.startsWith('/') || path.includes('\0') || path.split('/').includes('..')) {
      throw new Error('unix: needs an absolute socket path without ".."');
    }
    return { kind: 'unix', path };
  }
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(t);
  if (!m) throw new Error('not host:port or unix:/path');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error('port out of range 1..65535');
  const host = m[1]!.replace(/^\[|\]$/g, '');
  return { kind: 'tcp', host: host === '' ? '0.0.0.0' : host, port };
}

/** Go's net.IPNet JSON: the address and the mask bytes in base64. */
function ipNet(ip: string, bits: number): { IP: string; Mask: string } {
  const mask = Buffer.alloc(4);
  mask.writeUInt32BE(bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);
  return { IP: ip, Mask: mask.toString('base64') };
}

/** GET /v1/enis: one datastore (network card 0) in the AWS plugin's ENIInfos shape. */
export function enisView(status: PoolStatus, allocations: AllocationRecord[]): Record<string, unknown> {
  const byIp = new Map(allocations.map((a) => [a.ip, a]));
  const enis: Record<string, unknown> = {};
  for (const i of status.interfaces) {
    const cidrs: Record<string, unknown> = {};
    for (const s of i.ips ?? []) {
      const a = s.state === 'assigned' ? byIp.get(s.ip) : undefined;
      cidrs[`${s.ip}/32`] = {
        Cidr: ipNet(s.ip, 32),
        IPAddresses: {
          [s.ip]: {
            Address: s.ip,
            IPAMKey: a
              ? { networkName: NETWORK_NAME, containerID: '', ifName: '' }
              : { networkName: '', containerID: '', ifName: '' },
            IPAMMetadata: a ? { k8sPodNamespace: a.podNamespace, k8sPodName: a.podName } : {},
            AssignedTime: a?.assignedAt ?? ZERO_TIME,
            UnassignedTime: ZERO_TIME,
          },
        },
        IsPrefix: false,
        AddressFamily: '4',
      };
    }
    enis[i.interfaceId] = {
      ID: i.interfaceId,
      IsPrimary: i.deviceIndex === 0,
      IsTrunk: false,
      IsEFA: false,
      DeviceNumber: i.deviceIndex,
      AvailableIPv4Cidrs: cidrs,
      IPv6Cidrs: {},
      IsExcludedForPodIPs: false,
      RouteTableID: i.deviceIndex === 0 ? MAIN_TABLE : routeTableFor(i.deviceIndex),
      SubnetID: i.subnetId,
    };
  }
  return { '0': { TotalIPs: status.total, AssignedIPs: status.assigned, ENIs: enis } };
}

/** GET /v1/ipamd-env-settings: the AWS keys, with the AWS plugin's value for "unset" (0). */
export function ipamdEnvView(config: DaemonConfig, customNetworking: boolean): Record<string, unknown> {
  return {
    WARM_IP_TARGET: config.pool.warmIpTarget ?? 0,
    WARM_ENI_TARGET: config.pool.warmEniTarget,
    AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: customNetworking,
    AWS_MANAGE_ENIS_NON_SCHEDULABLE: config.pool.manageEnisNonSchedulable ?? false,
    ENABLE_SUBNET_DISCOVERY: config.subnetDiscovery,
  };
}

/** GET /v1/networkutils-env-settings. */
export function networkEnvView(config: DaemonConfig, connmark: number): Record<string, unknown> {
  return {
    AWS_VPC_K8S_CNI_CONNMARK: connmark,
    AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: config.snat.excludeCidrs,
    AWS_VPC_K8S_CNI_EXTERNALSNAT: config.snat.externalSnat,
    AWS_EXTERNAL_SERVICE_CIDRS: config.externalServiceCidrs,
    AWS_VPC_ENI_MTU: config.eniMtu ?? 0,
    AWS_VPC_K8S_CNI_VETHPREFIX: config.vethPrefix,
    // NodePort replies through the primary interface are always set up (data-plane.md).
    AWS_VPC_CNI_NODE_PORT_SUPPORT: true,
    AWS_VPC_K8S_CNI_RANDOMIZESNAT: config.snat.randomize,
  };
}

export interface IntrospectionSource {
  status(): PoolStatus;
  list(): AllocationRecord[];
  /** Settings pages, computed once by the caller. */
  ipamdEnv: Record<string, unknown>;
  networkEnv: Record<string, unknown>;
  /** The PodNetworkConfig in use (custom networking), or null. */
  networkConfig: string | null;
}

const PATHS = ['/v1/enis', '/v1/eni-configs', '/v1/networkutils-env-settings', '/v1/ipamd-env-settings'];

/** The answer for one path: [status, body]. Pure apart from reading the source. */
export function answer(path: string, source: IntrospectionSource): [number, unknown] {
  switch (path) {
    case '/':
      return [200, { AvailableCommands: PATHS }];
    case '/v1/enis':
      return [200, enisView(source.status(), source.list())];
    case '/v1/eni-configs':
      return source.networkConfig === null ? [404, 'Not Found'] : [200, source.networkConfig];
    case '/v1/ipamd-env-settings':
      return [200, source.ipamdEnv];
    case '/v1/networkutils-env-settings':
      return [200, source.networkEnv];
    default:
      return [404, 'Not Found'];
  }
}

export async function startIntrospectionServer(
  source: IntrospectionSource,
  address: IntrospectionAddress,
): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('read-only\n');
      return;
    }
    let status: number;
    let body: unknown;
    try {
      [status, body] = answer((req.url ?? '/').split('?')[0]!, source);
    } catch (err) {
      [status, body] = [503, `not ready: ${(err as Error).message}`];
    }
    if (typeof body === 'string' && status !== 200) {
      res.writeHead(status, { 'Content-Type': 'text/plain' }).end(`${body}\n`);
      return;
    }
    res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
  });
  if (address.kind === 'unix') await rm(address.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      resolve();
    };
    if (address.kind === 'unix') server.listen(address.path, done);
    else server.listen(address.port, address.host, done);
  });
  // Pool internals are for the node's root only, as the daemon's own socket.
  if (address.kind === 'unix') await chmod(address.path, 0o600);
  return server;
}
