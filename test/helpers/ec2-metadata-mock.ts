// IMDS for one LocalStack instance from the real aws/amazon-ec2-metadata-mock (v1.13.0, installed
// by scripts/setup.sh into the tools dir), kept in step with LocalStack.
//
// The mock serves one fixed set of paths from a config file (-c), with a single MAC's per-interface
// paths (mac-device-number, mac-local-ipv4s, ...), and reloads that file when it changes (-w). A
// node with several ENIs therefore gets one mock process per ENI MAC, and a small front (ours) on
// one port that sends `network/interfaces/macs/<mac>/...` to that MAC's mock, everything else to
// the primary ENI's mock, and lists `network/interfaces/macs/` itself (the union of the MACs). Every
// value an IMDS client reads comes from a real mock; the front only routes.
//
// refresh() re-reads the instance from LocalStack and rewrites the configs: ENIs attached later
// get a mock, detached ones lose theirs, changed IPs are reloaded by the mock (as IMDS lags EC2 on a
// real instance, a read right after a change may still see the old value).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { freePort, toolBin } from '../../cluster/proc.ts';
import { type Ec2InstanceRef, type ImdsInstanceData, instanceFromEc2 } from '../fakes/imds-aws.ts';
import { stopChild } from './local-vpc.ts';

const META = '/latest/meta-data';
const MACS = `${META}/network/interfaces/macs`;

interface MacMock {
  mac: string;
  port: number;
  config: string;
  text: string;
  child: ChildProcess;
}

/** The mock's config for one interface (and, for the primary, the instance-level paths). */
export function mockConfig(data: ImdsInstanceData, mac: string): object {
  const eni = data.interfaces.find((i) => i.mac === mac);
  if (!eni) throw new Error(`no interface with MAC ${mac}`);
  const primary = data.interfaces.find((i) => i.deviceNumber === 0) ?? eni;
  const m = `${MACS}/${mac}`;
  const paths: Record<string, string> = {
    'mac-device-number': `${m}/device-number`,
    'mac-network-interface-id': `${m}/interface-id`,
    'mac-local-ipv4s': `${m}/local-ipv4s`,
    'mac-mac': `${m}/mac`,
    'mac-owner-id': `${m}/owner-id`,
    'mac-security-group-ids': `${m}/security-group-ids`,
    'mac-subnet-id': `${m}/subnet-id`,
    'mac-subnet-ipv4-cidr-block': `${m}/subnet-ipv4-cidr-block`,
    'mac-vpc-id': `${m}/vpc-id`,
    'mac-vpc-ipv4-cidr-block': `${m}/vpc-ipv4-cidr-block`,
    'mac-vpc-ipv4-cidr-blocks': `${m}/vpc-ipv4-cidr-blocks`,
    // Not on a private IPv4 ENI: unregistered (an empty path is skipped by the mock).
    'mac-ipv4-associations': '',
    'mac-ipv6-associations': '',
    'mac-local-hostname': '',
    'mac-network-interface-card-index': '',
    'mac-public-hostname': '',
    'mac-public-ipv4s': '',
    'mac-security-groups': '',
    'mac-subnet-ipv6-cidr-blocks': '',
    'mac-vpc-ipv6-cidr-blocks': '',
  };
  const values: Record<string, string> = {
    'mac-device-number': String(eni.deviceNumber),
    'mac-network-interface-id': eni.interfaceId,
    'mac-local-ipv4s': eni.localIpv4s.join('\n'),
    'mac-mac': eni.mac,
    'mac-owner-id': data.accountId ?? '000000000000',
    'mac-security-group-ids': eni.securityGroupIds.join('\n'),
    'mac-subnet-id': eni.subnetId,
    'mac-subnet-ipv4-cidr-block': eni.subnetCidr,
    'mac-vpc-id': eni.vpcId,
    'mac-vpc-ipv4-cidr-block': eni.vpcCidrs[0] ?? '',
    'mac-vpc-ipv4-cidr-blocks': eni.vpcCidrs.join('\n'),
    'instance-id': data.instanceId,
    'instance-type': data.instanceType,
    'placement-availability-zone': data.availabilityZone,
    'placement-region': data.region,
    mac: primary.mac,
    'local-ipv4': primary.localIpv4s[0] ?? '',
    'ami-id': data.imageId ?? 'ami-00000000',
  };
  return { metadata: { paths, values } };
}

async function waitListening(port: number, child: ChildProcess, log: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`ec2-metadata-mock exited ${child.exitCode}; see ${log}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: `${META}/instance-id`, timeout: 500 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`ec2-metadata-mock on ${port} did not listen within 10 s; see ${log}`);
}

export class Ec2MetadataMock {
  private readonly ref: Ec2InstanceRef;
  private readonly dir: string;
  private readonly mocks = new Map<string, MacMock>();
  private data: ImdsInstanceData | null = null;
  private server: Server | null = null;
  private refreshing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  port = 0;
  requests = 0;
  /** A secondary ENI shows up this long after EC2 reports it attached (attach-to-usable). */
  private readonly attachToUsableMs: number;
  private readonly firstSeen = new Map<string, number>();

  constructor(ref: Ec2InstanceRef, dir: string, opts: { attachToUsableMs?: number } = {}) {
    this.ref = ref;
    this.dir = dir;
    this.attachToUsableMs = opts.attachToUsableMs ?? 0;
    mkdirSync(dir, { recursive: true });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(refreshMs = 300): Promise<void> {
    await this.refresh();
    this.server = createServer((req, res) => this.route(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    const tick = () => {
      this.refresh()
        .catch(() => {})
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, refreshMs);
        });
    };
    this.timer = setTimeout(tick, refreshMs);
  }

  /** Re-read the instance from LocalStack; (re)configure one mock per attached ENI. */
  refresh(): Promise<void> {
    const next = this.refreshing.then(() => this.refreshOnce());
    this.refreshing = next.catch(() => {});
    return next;
  }

  private async refreshOnce(): Promise<void> {
    const data = await instanceFromEc2(this.ref);
    if (this.attachToUsableMs > 0) {
      const now = Date.now();
      data.interfaces = data.interfaces.filter((i) => {
        if (i.deviceNumber === 0) return true;
        const seen = this.firstSeen.get(i.interfaceId) ?? now;
        this.firstSeen.set(i.interfaceId, seen);
        return now - seen >= this.attachToUsableMs;
      });
    }
    const macs = new Set(data.interfaces.map((i) => i.mac));
    for (const [mac, m] of this.mocks) {
      if (!macs.has(mac)) {
        this.mocks.delete(mac);
        await stopChild(m.child);
      }
    }
    for (const eni of data.interfaces) {
      const text = `${JSON.stringify(mockConfig(data, eni.mac), null, 1)}\n`;
      const have = this.mocks.get(eni.mac);
      if (have) {
        // -w: the mock reloads its config file when it changes
        if (have.text !== text) writeFileSync(have.config, text);
        have.text = text;
        continue;
      }
      const tag = eni.mac.replaceAll(':', '');
      const config = join(this.dir, `aemm-${tag}.json`);
      writeFileSync(config, text);
      const port = await freePort();
      const log = join(this.dir, `aemm-${tag}.log`);
      const out = openSync(log, 'a');
      const child = spawn(
        toolBin('ec2-metadata-mock'),
        ['-c', config, '-w', '-n', '127.0.0.1', '-p', String(port)],
        {
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: this.dir },
          stdio: ['ignore', out, out],
        },
      );
      await waitListening(port, child, log);
      this.mocks.set(eni.mac, { mac: eni.mac, port, config, text, child });
    }
    this.data = data;
  }

  private route(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
    this.requests++;
    const url = (req.url ?? '/').split('?')[0]!;
    const data = this.data;
    if (!data) {
      res.writeHead(503).end();
      return;
    }
    if (url === MACS || url === `${MACS}/`) {
      const body = data.interfaces
        .slice()
        .sort((a, b) => a.deviceNumber - b.deviceNumber)
        .map((i) => `${i.mac}/`)
        .join('\n');
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end(body);
      return;
    }
    let target: MacMock | undefined;
    if (url.startsWith(`${MACS}/`)) {
      target = this.mocks.get(url.slice(MACS.length + 1).split('/')[0]!);
    } else {
      const primary = data.interfaces.find((i) => i.deviceNumber === 0);
      target = primary ? this.mocks.get(primary.mac) : undefined;
    }
    if (!target) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not Found');
      return;
    }
    const up = request(
      { host: '127.0.0.1', port: target.port, path: req.url, method: req.method, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.refreshing;
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    for (const m of this.mocks.values()) await stopChild(m.child);
    this.mocks.clear();
  }
}
