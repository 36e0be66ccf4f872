// A faithful EC2 instance metadata service (IMDSv2) on 127.0.0.1, one per simulated node.
//
// Protocol, as on EC2 with "HttpTokens: required":
//   PUT /latest/api/token  with X-aws-ec2-metadata-token-ttl-seconds: 1..21600
//       -> 200 token (text/plain), echoing the TTL header; 400 without/with a bad TTL;
//          403 when X-Forwarded-For is present (IMDS refuses proxied token requests).
//   GET /latest/meta-data/<path> with X-aws-ec2-metadata-token: <token>
//       -> 200 value, or a newline-separated listing for a directory (sub-directories end in "/");
//          401 without a valid, unexpired token; 404 for unknown paths; 405 for other methods.
//   GET /latest/dynamic/instance-identity/document -> the JSON identity document.
//
// Library:  startImdsFake({ instance } | { source }) -> { url, port, close(), stats }
//           instanceFromEc2({ endpoint, region, instanceId }) reads the instance from EC2.
// CLI:      npx node test/fakes/imds-aws.ts --port P --instance-id i-... [--endpoint URL] [--region R]
//           serves that LocalStack instance, re-read from EC2 at most once a second (so ENIs
//           attached later show up, as on EC2); prints one JSON line {"url":...} when listening.

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import {
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
} from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../localstack/seed.ts';
import { normalizeMac } from '../../src/providers/aws/mac.ts';

export interface ImdsInterfaceData {
  mac: string;
  deviceNumber: number;
  interfaceId: string;
  subnetId: string;
  subnetCidr: string;
  vpcId: string;
  vpcCidrs: string[];
  /** Primary first. */
  localIpv4s: string[];
  securityGroupIds: string[];
}

export interface ImdsInstanceData {
  instanceId: string;
  instanceType: string;
  availabilityZone: string;
  region: string;
  accountId?: string;
  imageId?: string;
  /** The primary interface is the one with deviceNumber 0. */
  interfaces: ImdsInterfaceData[];
}

export interface ImdsFakeOptions {
  /** A fixed instance, or a source called per request (e.g. live from EC2). */
  instance?: ImdsInstanceData;
  source?: () => Promise<ImdsInstanceData>;
  port?: number;
  host?: string;
  /** Accept GETs without a token (IMDSv1); default false, as with HttpTokens=required. */
  allowV1?: boolean;
  /** Milliseconds since the epoch; injectable to test token expiry. */
  now?: () => number;
}

export interface ImdsFakeStats {
  tokensIssued: number;
  unauthorized: number;
  requests: number;
}

export interface ImdsFake {
  url: string;
  port: number;
  stats: ImdsFakeStats;
  close(): Promise<void>;
}

type Tree = { [name: string]: string | Tree };

function buildTree(i: ImdsInstanceData): { metaData: Tree; document: string } {
  const primary = i.interfaces.find((n) => n.deviceNumber === 0);
  if (!primary) throw new Error(`instance ${i.instanceId} has no interface with device number 0`);
  const hostname = (ip: string) => `ip-${ip.replaceAll('.', '-')}.ec2.internal`;
  const macs: Tree = {};
  for (const n of i.interfaces) {
    macs[n.mac] = {
      'device-number': String(n.deviceNumber),
      'interface-id': n.interfaceId,
      'local-hostname': hostname(n.localIpv4s[0] ?? ''),
      'local-ipv4s': n.localIpv4s.join('\n'),
      mac: n.mac,
      'owner-id': i.accountId ?? '000000000000',
      'security-group-ids': n.securityGroupIds.join('\n'),
      'subnet-id': n.subnetId,
      'subnet-ipv4-cidr-block': n.subnetCidr,
      'vpc-id': n.vpcId,
      'vpc-ipv4-cidr-block': n.vpcCidrs[0] ?? '',
      'vpc-ipv4-cidr-blocks': n.vpcCidrs.join('\n'),
    };
  }
  const primaryIp = primary.localIpv4s[0] ?? '';
  const metaData: Tree = {
    'ami-id': i.imageId ?? 'ami-00000000',
    hostname: hostname(primaryIp),
    'instance-id': i.instanceId,
    'instance-type': i.instanceType,
    'local-hostname': hostname(primaryIp),
    'local-ipv4': primaryIp,
    mac: primary.mac,
    network: { interfaces: { macs } },
    placement: { 'availability-zone': i.availabilityZone, region: i.region },
  };
  const document = JSON.stringify(
    {
      accountId: i.accountId ?? '000000000000',
      architecture: 'x86_64',
      availabilityZone: i.availabilityZone,
      imageId: i.imageId ?? 'ami-00000000',
      instanceId: i.instanceId,
      instanceType: i.instanceType,
      privateIp: primaryIp,
      region: i.region,
      version: '2017-09-30',
    },
    null,
    2,
  );
  return { metaData, document };
}

function lookup(tree: Tree, segments: string[]): string | Tree | undefined {
  let node: string | Tree = tree;
  for (const s of segments) {
    if (typeof node === 'string') return undefined;
    const next: string | Tree | undefined = node[s];
    if (next === undefined) return undefined;
    node = next;
  }
  return node;
}

function listing(tree: Tree): string {
  return Object.entries(tree)
    .map(([k, v]) => (typeof v === 'string' ? k : `${k}/`))
    .join('\n');
}

export async function startImdsFake(options: ImdsFakeOptions): Promise<ImdsFake> {
  const fixed = options.instance;
  const source = options.source ?? (fixed ? async () => fixed : undefined);
  if (!source) throw new Error('startImdsFake needs an instance or a source');
  if (fixed) buildTree(fixed); // fail at start, not on the first request
  const now = options.now ?? Date.now;
  const tokens = new Map<string, number>(); // token -> expiry (ms)
  const stats: ImdsFakeStats = { tokensIssued: 0, unauthorized: 0, requests: 0 };

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    stats.requests++;
    // The SDK joins the endpoint's "/" with its path, so "//latest/..." is normal; IMDS accepts it.
    const path = new URL(req.url ?? '/', 'http://imds').pathname.replace(/\/{2,}/g, '/');
    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return send(res, 405, 'Method Not Allowed');
      if (req.headers['x-forwarded-for'] !== undefined) return send(res, 403, 'Forbidden');
      const ttlHeader = req.headers['x-aws-ec2-metadata-token-ttl-seconds'];
      const ttl = Number(ttlHeader);
      if (typeof ttlHeader !== 'string' || !/^\d+$/.test(ttlHeader) || ttl < 1 || ttl > 21600) {
        return send(res, 400, 'Bad Request');
      }
      const token = randomBytes(42).toString('base64');
      tokens.set(token, now() + ttl * 1000);
      stats.tokensIssued++;
      return send(res, 200, token, { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'Method Not Allowed');
    const token = req.headers['x-aws-ec2-metadata-token'];
    const expiry = typeof token === 'string' ? tokens.get(token) : undefined;
    const validToken = expiry !== undefined && expiry > now();
    if (!validToken && (!options.allowV1 || token !== undefined)) {
      stats.unauthorized++;
      return send(res, 401, 'Unauthorized');
    }
    const { metaData, document } = buildTree(await source());
    if (path === '/latest/dynamic/instance-identity/document') {
      return send(res, 200, document, { 'content-type': 'application/json' });
    }
    const m = /^\/latest\/meta-data(\/.*)?$/.exec(path);
    if (!m) return send(res, 404, 'Not Found');
    const segments = (m[1] ?? '/').split('/').filter((s) => s !== '');
    const node = lookup(metaData, segments);
    if (node === undefined) return send(res, 404, 'Not Found');
    return send(res, 200, typeof node === 'string' ? node : listing(node));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      send(res, 500, `imds fake: ${err instanceof Error ? err.message : String(err)}`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}`,
    port,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Ec2InstanceRef {
  instanceId: string;
  endpoint?: string;
  region?: string;
}

/** What IMDS would say about an instance, read from (LocalStack's) EC2. */
export async function instanceFromEc2(ref: Ec2InstanceRef): Promise<ImdsInstanceData> {
  const region = ref.region ?? 'us-east-1';
  const ec2 = localEc2Client(ref.endpoint, region);
  try {
    const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [ref.instanceId] }));
    const inst = res.Reservations?.[0]?.Instances?.[0];
    if (!inst?.InstanceId) throw new Error(`instance ${ref.instanceId} not found in EC2`);
    const enis =
      (
        await ec2.send(
          new DescribeNetworkInterfacesCommand({
            Filters: [{ Name: 'attachment.instance-id', Values: [ref.instanceId] }],
          }),
        )
      ).NetworkInterfaces ?? [];
    const subnetIds = [...new Set(enis.map((e) => e.SubnetId!))];
    const subnets =
      subnetIds.length === 0
        ? []
        : ((await ec2.send(new DescribeSubnetsCommand({ SubnetIds: subnetIds }))).Subnets ?? []);
    const vpc = (await ec2.send(new DescribeVpcsCommand({ VpcIds: [inst.VpcId!] }))).Vpcs?.[0];
    const vpcCidrs = [
      vpc?.CidrBlock ?? '',
      ...(vpc?.CidrBlockAssociationSet ?? [])
        .filter((a) => a.CidrBlock !== vpc?.CidrBlock && a.CidrBlockState?.State === 'associated')
        .map((a) => a.CidrBlock!),
    ];
    return {
      instanceId: inst.InstanceId,
      instanceType: inst.InstanceType ?? '',
      availabilityZone: inst.Placement?.AvailabilityZone ?? '',
      region,
      imageId: inst.ImageId ?? 'ami-00000000',
      interfaces: enis.map((e) => {
        const ips = e.PrivateIpAddresses ?? [];
        return {
          mac: normalizeMac(e.MacAddress, e.NetworkInterfaceId!),
          deviceNumber: e.Attachment?.DeviceIndex ?? -1,
          interfaceId: e.NetworkInterfaceId!,
          subnetId: e.SubnetId!,
          subnetCidr: subnets.find((s) => s.SubnetId === e.SubnetId)?.CidrBlock ?? '',
          vpcId: e.VpcId!,
          vpcCidrs,
          localIpv4s: [
            ...ips.filter((p) => p.Primary).map((p) => p.PrivateIpAddress!),
            ...ips.filter((p) => !p.Primary).map((p) => p.PrivateIpAddress!),
          ],
          securityGroupIds: (e.Groups ?? []).map((g) => g.GroupId!),
        };
      }),
    };
  } finally {
    ec2.destroy();
  }
}

/** serveStale's bound: well inside the daemon's 30 s grace for metadata that lags its own changes. */
const STALE_LIMIT_MS = 10_000;

/**
 * A source that re-reads EC2 at most once per `maxAgeMs`. `serveStale`: once read, answer at once
 * with the last data while a re-read runs (as real IMDS answers instantly; for the VM, where one
 * DescribeInstances through the serial channel can outlast the SDK's 2 s IMDS timeout), but never
 * data read more than STALE_LIMIT_MS ago, and never an older view than one already served: reads
 * finish out of order under TCG, and a view a minute old (an ENI's addresses missing) made the
 * daemon rightly drop a pod's address (its drift grace for lagging metadata is 30 s).
 */
export function liveEc2Source(
  ref: Ec2InstanceRef,
  maxAgeMs = 1000,
  options: { serveStale?: boolean } = {},
): () => Promise<ImdsInstanceData> {
  let cached: { at: number; data: Promise<ImdsInstanceData> } | undefined;
  let last: { at: number; data: ImdsInstanceData } | undefined;
  return () => {
    if (!cached || Date.now() - cached.at > maxAgeMs) {
      const at = Date.now();
      const data = instanceFromEc2(ref);
      cached = { at, data };
      data.then(
        (d) => {
          if (!last || at > last.at) last = { at, data: d };
        },
        () => {
          if (cached?.data === data) cached = undefined;
        },
      );
    }
    const fresh = last && Date.now() - last.at <= STALE_LIMIT_MS ? last.data : undefined;
    return options.serveStale && fresh ? Promise.resolve(fresh) : cached.data;
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      'instance-id': { type: 'string' },
      endpoint: { type: 'string', default: process.env.VPC_IPAM_EC2_ENDPOINT ?? 'http://127.0.0.1:4566' },
      region: { type: 'string', default: process.env.AWS_REGION ?? 'us-east-1' },
    },
  });
  const instanceId = values['instance-id'];
  if (!instanceId || !/^i-[0-9a-f]{8,17}$/.test(instanceId)) {
    throw new Error('--instance-id i-<hex> is required');
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('--port must be 0..65535');
  const ref = { instanceId, endpoint: values.endpoint, region: values.region };
  await instanceFromEc2(ref); // fail fast when LocalStack or the instance is missing
  const fake = await startImdsFake({ source: liveEc2Source(ref), port, host: values.host });
  process.stdout.write(`${JSON.stringify({ url: fake.url, port: fake.port, instanceId })}\n`);
  const stop = () => {
    fake.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`imds-aws fake: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
