// An HTTP proxy in front of LocalStack's EC2 (query protocol: form-encoded POSTs with an Action)
// for clients we cannot configure, such as the real AWS VPC CNI:
//  - counts calls by Action (the benchmarks report EC2 calls per action);
//  - optionally delays each call (`latencyMs(action)`), for benchmarks against published figures;
//  - with `pickAddresses`, makes address assignment behave as EC2 does. LocalStack's moto picks
//    "random" addresses for AssignPrivateIpAddresses / CreateNetworkInterface without checking
//    the rest of the subnet, so it can hand out an address another ENI holds or one AWS reserves
//    (the subnet router, DNS). EC2 never does. The proxy turns a count into explicit free
//    addresses of the subnet, lowest first, one subnet at a time; the call then runs unchanged.
//    And where moto answers AssignPrivateIpAddresses with every address of the ENI (its primary
//    included, unmarked), EC2 lists only the ones just assigned: the answer is trimmed to those
//    (the AWS VPC CNI adds what this answer lists to its pool, so moto's would hand out the ENI's
//    own primary address to a pod).
// Everything else is passed through byte for byte.

import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DescribeNetworkInterfacesCommand,
  DescribeSubnetsCommand,
  type EC2Client,
} from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../localstack/seed.ts';
import { pickFreeAddresses } from '../../src/providers/aws/ipv4.ts';

export interface Ec2ProxyOptions {
  /** LocalStack's endpoint, e.g. http://127.0.0.1:4566. */
  target: string;
  region: string;
  pickAddresses?: boolean;
  /** Extra milliseconds before forwarding a call (default none). */
  latencyMs?: (action: string) => number;
}

export class Ec2Proxy {
  readonly calls = new Map<string, number>();
  private readonly opts: Ec2ProxyOptions;
  private readonly ec2: EC2Client;
  private readonly target: URL;
  private server: Server | null = null;
  /** One address pick at a time per subnet (two concurrent picks would choose the same address). */
  private readonly subnetLocks = new Map<string, Promise<unknown>>();
  port = 0;

  constructor(opts: Ec2ProxyOptions) {
    this.opts = opts;
    this.target = new URL(opts.target);
    this.ec2 = localEc2Client(opts.target, opts.region);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
        res.end(`ec2 proxy: ${err.message}`);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    this.ec2.destroy();
  }

  callsOf(action: string): number {
    return this.calls.get(action) ?? 0;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body = Buffer.concat(chunks);
    const form = new URLSearchParams(body.toString('utf8'));
    const action = form.get('Action') ?? '(none)';
    this.calls.set(action, (this.calls.get(action) ?? 0) + 1);
    const delay = this.opts.latencyMs?.(action) ?? 0;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    const forward = () =>
      this.forward(req, res, body, action === 'AssignPrivateIpAddresses' ? onlyAssigned(body) : undefined);
    if (!this.opts.pickAddresses) return forward();
    if (action === 'AssignPrivateIpAddresses' && form.has('SecondaryPrivateIpAddressCount')) {
      const eni = form.get('NetworkInterfaceId') ?? '';
      const subnet = await this.subnetOf(eni);
      return this.inSubnet(subnet, async () => {
        const count = Number(form.get('SecondaryPrivateIpAddressCount'));
        const picked = await this.free(subnet, count);
        form.delete('SecondaryPrivateIpAddressCount');
        for (const [i, ip] of picked.entries()) form.set(`PrivateIpAddress.${i + 1}`, ip);
        body = Buffer.from(form.toString());
        await forward();
      });
    }
    if (
      action === 'CreateNetworkInterface' &&
      !form.has('PrivateIpAddress') &&
      !form.has('PrivateIpAddresses.1.PrivateIpAddress')
    ) {
      const subnet = form.get('SubnetId') ?? '';
      return this.inSubnet(subnet, async () => {
        const secondary = Number(form.get('SecondaryPrivateIpAddressCount') ?? '0');
        const picked = await this.free(subnet, 1 + secondary);
        form.delete('SecondaryPrivateIpAddressCount');
        picked.forEach((ip, i) => {
          form.set(`PrivateIpAddresses.${i + 1}.PrivateIpAddress`, ip);
          form.set(`PrivateIpAddresses.${i + 1}.Primary`, i === 0 ? 'true' : 'false');
        });
        body = Buffer.from(form.toString());
        await forward();
      });
    }
    return forward();
  }

  private inSubnet(subnet: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.subnetLocks.get(subnet) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.subnetLocks.set(
      subnet,
      next.catch(() => {}),
    );
    return next;
  }

  private async subnetOf(eniId: string): Promise<string> {
    const out = await this.ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [eniId] }));
    return out.NetworkInterfaces?.[0]?.SubnetId ?? '';
  }

  /** `count` free usable addresses of the subnet, as EC2 would choose them (never a taken one). */
  private async free(subnetId: string, count: number): Promise<string[]> {
    const [s, enis] = await Promise.all([
      this.ec2.send(new DescribeSubnetsCommand({ SubnetIds: [subnetId] })),
      this.ec2.send(
        new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'subnet-id', Values: [subnetId] }] }),
      ),
    ]);
    const cidr = s.Subnets?.[0]?.CidrBlock;
    if (!cidr) throw new Error(`subnet ${subnetId} not found`);
    const taken = new Set(
      (enis.NetworkInterfaces ?? []).flatMap((e) =>
        (e.PrivateIpAddresses ?? []).map((p) => p.PrivateIpAddress ?? ''),
      ),
    );
    const picked = pickFreeAddresses(cidr, taken, count);
    if (picked.length < count) throw new Error(`subnet ${subnetId} has fewer than ${count} free addresses`);
    return picked;
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    rewrite?: (xml: string) => string,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const headers = { ...req.headers, host: this.target.host, 'content-length': String(body.length) };
      const up = request(
        { host: this.target.hostname, port: this.target.port, path: req.url, method: req.method, headers },
        (r) => {
          if (!rewrite) {
            res.writeHead(r.statusCode ?? 502, r.headers);
            r.pipe(res);
            r.on('end', resolve);
            r.on('error', reject);
            return;
          }
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('error', reject);
          r.on('end', () => {
            const out = Buffer.from(rewrite(Buffer.concat(chunks).toString('utf8')));
            res.writeHead(r.statusCode ?? 502, { ...r.headers, 'content-length': String(out.length) });
            res.end(out);
            resolve();
          });
        },
      );
      up.on('error', reject);
      up.end(body);
    });
  }
}

/** Keeps the answer's assigned addresses to those the request named (as EC2 answers). */
function onlyAssigned(body: Buffer): ((xml: string) => string) | undefined {
  const form = new URLSearchParams(body.toString('utf8'));
  const asked = new Set(
    [...form.entries()].filter(([k]) => /^PrivateIpAddress\.\d+$/.test(k)).map(([, v]) => v),
  );
  if (asked.size === 0) return undefined;
  return (xml) =>
    xml.replace(/<item><privateIpAddress>([^<]*)<\/privateIpAddress><\/item>/g, (item, ip: string) =>
      asked.has(ip) ? item : '',
    );
}
