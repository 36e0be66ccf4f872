// A faithful local VPC built from network namespaces (see docs/data-plane.md, "The local VPC"):
//
//   node netns (one per seeded instance): eth<N> per attached ENI, MAC from LocalStack; eth0 gets
//     the primary IP + default route (what the OS does on EC2); secondary ENIs appear DOWN and
//     unconfigured when attached, as on EC2 — the daemon's node setup must bring them up.
//   fabric netns: the VPC router. Routes each private IP ONLY to the ENI LocalStack says owns it
//     (permanent neighbour to that ENI's MAC), answers for every subnet gateway, drops packets
//     whose source IP is not owned by the ENI they came from (source/dest check), and lets only
//     node primary IPs out to the internet (the internet gateway only NATs those).
//   internet netns: 203.0.113.10, reachable only through the gateway.
//   onprem netns: 198.51.100.10, reached through the fabric with any VPC source (like a TGW/VPN);
//     the destination for AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS tests.
//
// sync() re-reads LocalStack and converges links, routes and filters; the sync loop runs it after
// every change the daemons make (attach, assign, unassign).
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { DescribeNetworkInterfacesCommand, type EC2Client } from '@aws-sdk/client-ec2';
import { waitFor } from '../../cluster/proc.ts';
import { localEc2Client, type SeedInstance, type SeedResult } from '../../localstack/seed.ts';
import { DAEMON_NODE_FLAGS } from '../../src/ipam-daemon/node-flags.ts';
import { normalizeMac } from '../../src/providers/aws/mac.ts';
import { type ImdsFake, liveEc2Source, startImdsFake } from '../fakes/imds-aws.ts';
import { serveUnixToTcp, startNetnsForwarder } from './forwarder.ts';
import { deleteCluster, requireLocalStack, seedCluster } from './localstack.ts';
import {
  addVethPair,
  type Cleanup,
  createNetns,
  ip,
  ipBatch,
  ipJson,
  netnsPath,
  requireNetnsPrivileges,
  run,
} from './netns.ts';
import { ensurePluginBuilt } from './plugin-binary.ts';
import { SLOWDOWN, scaled } from './slowdown.ts';

/**
 * The common start of a local-VPC suite: privileges and LocalStack checked, the plugin built, a
 * cluster seeded; the cluster and the suite's temp dir are removed by `cleanup`.
 */
export async function prepareLocalVpcSuite(
  clusterName: string,
  dir: string,
  cleanup: Cleanup,
): Promise<{ plugin: string; seed: SeedResult }> {
  requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
  await requireLocalStack();
  const plugin = await ensurePluginBuilt();
  const seed = await seedCluster({ clusterName });
  cleanup.add('LocalStack cluster', () => deleteCluster({ clusterName }));
  cleanup.add('temp dir', () => rmSync(dir, { recursive: true, force: true }));
  return { plugin, seed };
}

export const INTERNET_SERVER = '203.0.113.10';
export const ONPREM_SERVER = '198.51.100.10';
export const ONPREM_CIDR = '198.51.100.0/24';

/** A pod of the e2e suites: its netns, the node it is on, its IP and the ADD result. */
export interface VpcPod {
  id: string;
  ns: string;
  nsPath: string;
  node: VpcNode;
  ip: string;
  result: Record<string, unknown>;
}

export interface VpcNode {
  index: number;
  ns: string;
  nsPath: string;
  instance: SeedInstance;
  dir: string;
  socketPath: string;
  daemon: ChildProcess | null;
  daemonLog: string;
  /** vpc-cni's log (the network config's logFile); beside daemonLog. */
  cniLog: string;
  /** The environment the daemon was last started with (respawnDaemon reuses it). */
  daemonEnv?: Record<string, string>;
  /** What node ran for it (startDaemon's nodeArgs). */
  daemonArgs?: string[];
}

interface EniView {
  id: string;
  mac: string;
  instanceId: string;
  deviceIndex: number;
  ips: string[];
  primaryIp: string;
  subnetCidr: string;
}

function firstHost(cidr: string): string {
  const [base, len] = cidr.split('/');
  const p = base!.split('.').map(Number);
  return `${p[0]}.${p[1]}.${p[2]}.${p[3]! + 1}/${len}`.split('/')[0]!;
}

export class LocalVpc {
  readonly prefix: string;
  readonly seed: SeedResult;
  readonly fabric: string;
  readonly inet: string;
  readonly onprem: string;
  readonly nodes: VpcNode[] = [];
  readonly dir: string;
  private readonly cleanup: Cleanup;
  private readonly ec2: EC2Client;
  private readonly links = new Map<string, string>(); // eni id -> fabric link
  private routed = new Map<string, string>(); // ip -> fabric link
  private syncing: Promise<void> = Promise.resolve();
  private loop: NodeJS.Timeout | null = null;
  private lsServer: Server | null = null;
  /**
   * How long a newly attached secondary ENI takes to become usable (appear in the node, carry
   * traffic) after LocalStack reports it attached; 0 = at the next sync (benchmarks set seconds).
   */
  attachToUsableMs = 0;
  private readonly firstSeen = new Map<string, number>();
  syncs = 0;
  /**
   * Where the daemons' EC2 traffic goes (a port on 127.0.0.1 in the root netns): LocalStack by
   * default; set before build() to put a proxy (test/fakes/fault-proxy.ts) in between. The VPC's
   * own view (sync) always reads LocalStack directly.
   */
  ec2TargetPort: number | undefined;

  constructor(seed: SeedResult, prefix: string, dir: string, cleanup: Cleanup) {
    this.seed = seed;
    this.prefix = prefix;
    this.dir = dir;
    this.cleanup = cleanup;
    this.fabric = `${prefix}-fab`;
    this.inet = `${prefix}-inet`;
    this.onprem = `${prefix}-onp`;
    this.ec2 = localEc2Client(seed.endpoint, seed.region);
    cleanup.add('ec2 client', () => this.ec2.destroy());
  }

  /** LocalStack's port, from the seed's endpoint (LOCALSTACK_PORT may move it off 4566). */
  private get lsPort(): number {
    return Number(new URL(this.seed.endpoint).port || 80);
  }

  get vpcCidrs(): string[] {
    return [this.seed.cidr, ...this.seed.secondaryCidrs];
  }

  /** Fabric, internet and on-prem namespaces and their transit links. */
  async build(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    for (const ns of [this.fabric, this.inet, this.onprem]) await createNetns(ns, this.cleanup);
    const p = this.prefix;
    // Transit links: fabric <-> internet gateway, fabric <-> on-prem.
    await addVethPair({ name: `${p}fi`, ns: this.fabric }, { name: `${p}if`, ns: this.inet });
    await addVethPair({ name: `${p}fo`, ns: this.fabric }, { name: `${p}of`, ns: this.onprem });
    const fab = [
      `addr add 198.18.0.1/30 dev ${p}fi`,
      `link set ${p}fi up`,
      `addr add 198.18.0.5/30 dev ${p}fo`,
      `link set ${p}fo up`,
      'route add default via 198.18.0.2',
      `route add ${ONPREM_CIDR} via 198.18.0.6`,
      // every subnet's gateway lives on the router
      ...this.seed.subnets.map((s) => `addr add ${firstHost(s.cidr)}/32 dev lo`),
    ];
    await ipBatch(this.fabric, fab);
    await ipBatch(this.inet, [
      `addr add 198.18.0.2/30 dev ${p}if`,
      `link set ${p}if up`,
      `addr add ${INTERNET_SERVER}/32 dev lo`,
      ...this.vpcCidrs.map((c) => `route add ${c} via 198.18.0.1`),
    ]);
    await ipBatch(this.onprem, [
      `addr add 198.18.0.6/30 dev ${p}of`,
      `link set ${p}of up`,
      `addr add ${ONPREM_SERVER}/32 dev lo`,
      ...this.vpcCidrs.map((c) => `route add ${c} via 198.18.0.5`),
    ]);
    for (const [key, value] of [
      ['net.ipv4.ip_forward', '1'],
      ['net.ipv4.conf.all.rp_filter', '0'],
      ['net.ipv4.conf.default.rp_filter', '0'],
      ['net.ipv4.conf.default.proxy_arp', '1'],
    ]) {
      await run('ip', ['netns', 'exec', this.fabric, 'sysctl', '-q', '-w', `${key}=${value}`]);
    }
    // LocalStack for every node's daemon: one Unix socket in the root netns -> 127.0.0.1:4566.
    this.lsServer = await serveUnixToTcp(
      join(this.dir, 'localstack.sock'),
      this.ec2TargetPort ?? this.lsPort,
    );
    this.cleanup.add('localstack forwarder', () => this.lsServer?.close());
  }

  /** A node netns for a seeded instance, its interfaces mirroring its ENIs. */
  async addNode(instance: SeedInstance): Promise<VpcNode> {
    const index = this.nodes.length + 1;
    const ns = `${this.prefix}-n${index}`;
    const nsPath = await createNetns(ns, this.cleanup);
    const dir = join(this.dir, `n${index}`);
    mkdirSync(dir, { recursive: true });
    // VPC_IPAM_E2E_LOG_DIR (the VM runner's shared output) keeps daemon and plugin logs past the run
    const logDir = process.env.VPC_IPAM_E2E_LOG_DIR;
    const node: VpcNode = {
      index,
      ns,
      nsPath,
      instance,
      dir,
      socketPath: join(dir, 'ipamd.sock'),
      daemon: null,
      daemonLog: logDir ? join(logDir, `${ns}-daemon.log`) : join(dir, 'daemon.log'),
      cniLog: logDir ? join(logDir, `${ns}-cni.log`) : join(dir, 'cni.log'),
    };
    this.nodes.push(node);
    await this.sync();
    const subnet = this.seed.subnets.find((s) => s.id === instance.subnetId)!;
    const len = subnet.cidr.split('/')[1];
    await ipBatch(ns, [
      `addr add ${instance.privateIp}/${len} dev eth0`,
      'link set eth0 up',
      `route add default via ${firstHost(subnet.cidr)} dev eth0`,
    ]);
    return node;
  }

  private async describe(): Promise<EniView[]> {
    const out = await this.ec2.send(
      new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [this.seed.vpcId] }] }),
    );
    const subnetCidr = new Map(this.seed.subnets.map((s) => [s.id, s.cidr]));
    return (out.NetworkInterfaces ?? [])
      .filter((e) => e.Attachment?.InstanceId && e.Attachment.Status !== 'detaching')
      .map((e) => ({
        id: e.NetworkInterfaceId!,
        mac: normalizeMac(e.MacAddress, e.NetworkInterfaceId!),
        instanceId: e.Attachment!.InstanceId!,
        deviceIndex: e.Attachment!.DeviceIndex ?? 0,
        ips: (e.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress!).filter(Boolean),
        primaryIp: e.PrivateIpAddress ?? '',
        subnetCidr: subnetCidr.get(e.SubnetId ?? '') ?? '',
      }));
  }

  /** Converges links, fabric routes/neighbours and filters with what LocalStack says now. */
  sync(): Promise<void> {
    const next = this.syncing.then(() => this.syncOnce());
    this.syncing = next.catch(() => {});
    return next;
  }

  private async syncOnce(): Promise<void> {
    this.syncs++;
    const enis = await this.describe();
    const fabricLines: string[] = [];
    const want = new Map<string, string>();
    const sources: { link: string; ips: string[] }[] = [];
    for (const eni of enis) {
      const node = this.nodes.find((n) => n.instance.id === eni.instanceId);
      if (!node) continue;
      let link = this.links.get(eni.id);
      if (!link && eni.deviceIndex > 0 && this.attachToUsableMs > 0) {
        const seen = this.firstSeen.get(eni.id) ?? Date.now();
        this.firstSeen.set(eni.id, seen);
        if (Date.now() - seen < this.attachToUsableMs) continue;
      }
      if (!link) {
        link = `${this.prefix}n${node.index}e${eni.deviceIndex}`;
        // The hypervisor hot-plugs the NIC: it appears in the node DOWN and unconfigured.
        await addVethPair(
          { name: link, ns: this.fabric },
          { name: `eth${eni.deviceIndex}`, mac: eni.mac, ns: node.ns },
        );
        await ip(this.fabric, 'link', 'set', link, 'up');
        this.links.set(eni.id, link);
      }
      sources.push({ link, ips: eni.ips });
      for (const addr of eni.ips) {
        want.set(addr, link);
        if (this.routed.get(addr) !== link) {
          fabricLines.push(`route replace ${addr}/32 dev ${link}`);
          fabricLines.push(`neigh replace ${addr} lladdr ${eni.mac} dev ${link} nud permanent`);
        }
      }
    }
    for (const [addr, link] of this.routed) {
      if (!want.has(addr)) {
        fabricLines.push(`route del ${addr}/32 dev ${link}`);
        fabricLines.push(`neigh del ${addr} dev ${link}`);
      }
    }
    // Detached ENIs: their links go away (the kernel removes routes through them).
    for (const [id, link] of this.links) {
      if (!enis.some((e) => e.id === id)) {
        fabricLines.push(`link del ${link}`);
        this.links.delete(id);
      }
    }
    if (fabricLines.length > 0)
      await run('ip', ['-n', this.fabric, '-force', '-batch', '-'], `${fabricLines.join('\n')}\n`).catch(
        () => {},
      );
    this.routed = want;
    await this.applyFilters(sources);
  }

  private async applyFilters(sources: { link: string; ips: string[] }[]): Promise<void> {
    const primaries = this.nodes.map((n) => n.instance.privateIp);
    const lines = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'];
    for (const s of sources) lines.push(`:SRC-${s.link} - [0:0]`);
    for (const s of sources) {
      lines.push(`-A FORWARD -i ${s.link} -j SRC-${s.link}`);
      for (const a of s.ips) lines.push(`-A SRC-${s.link} -s ${a}/32 -j RETURN`);
      lines.push(`-A SRC-${s.link} -j DROP`);
    }
    // The internet gateway: only node primary IPs get out.
    for (const a of primaries) lines.push(`-A FORWARD -o ${this.prefix}fi -s ${a}/32 -j ACCEPT`);
    lines.push(`-A FORWARD -o ${this.prefix}fi -j DROP`, 'COMMIT', '');
    await run('ip', ['netns', 'exec', this.fabric, 'iptables-restore'], lines.join('\n'));
  }

  startSyncLoop(intervalMs = 300): void {
    const tick = () => {
      this.sync()
        .catch(() => {})
        .finally(() => {
          if (this.loop) this.loop = setTimeout(tick, intervalMs);
        });
    };
    this.loop = setTimeout(tick, intervalMs);
    this.cleanup.add('sync loop', async () => {
      this.stopSyncLoop();
      await this.syncing; // let an in-flight sync finish before its namespaces go away
    });
  }

  stopSyncLoop(): void {
    if (this.loop) clearTimeout(this.loop);
    this.loop = null;
  }

  /**
   * Starts vpc-ipamd inside the node netns with its own IMDS fake; resolves when ready. `nodeArgs`:
   * what node runs (default the sources; the CNI benchmark runs the bundle with the daemon's flags,
   * and so do the VM suites, VPC_IPAM_E2E_DAEMON=bundle: loading one file is far cheaper under TCG).
   */
  async startDaemon(
    node: VpcNode,
    env: Record<string, string>,
    nodeArgs: readonly string[] = process.env.VPC_IPAM_E2E_DAEMON === 'bundle'
      ? [...DAEMON_NODE_FLAGS, 'dist/vpc-ipamd/vpc-ipamd.mjs']
      : ['src/ipam-daemon/main.ts'],
    /** More root-netns loopback ports to reach from the node at the same port (e.g. an EC2 proxy). */
    extraPorts: readonly number[] = [],
  ): Promise<void> {
    // Slowed down (the VM): the fake answers from its last read while re-reading, read once here
    const source = liveEc2Source(
      { instanceId: node.instance.id, endpoint: this.seed.endpoint, region: this.seed.region },
      200,
      { serveStale: SLOWDOWN > 1 },
    );
    if (SLOWDOWN > 1) await source();
    const imds: ImdsFake = await startImdsFake({ source });
    this.cleanup.add(`imds ${node.ns}`, () => imds.close());
    const imdsSock = join(node.dir, 'imds.sock');
    const imdsServer = await serveUnixToTcp(imdsSock, imds.port);
    this.cleanup.add(`imds forwarder ${node.ns}`, () => imdsServer.close());
    const extra: Record<number, string> = {};
    for (const port of extraPorts) {
      const sock = join(node.dir, `port-${port}.sock`);
      const server = await serveUnixToTcp(sock, port);
      this.cleanup.add(`forwarder ${node.ns}:${port}`, () => server.close());
      extra[port] = sock;
    }
    const fwd = await startNetnsForwarder(node.ns, {
      [this.lsPort]: join(this.dir, 'localstack.sock'),
      [imds.port]: imdsSock,
      ...extra,
    });
    this.cleanup.add(`netns forwarder ${node.ns}`, () => fwd.kill('SIGKILL'));
    node.daemonEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CLOUD_PROVIDER: 'aws',
      CLUSTER_NAME: this.seed.clusterName,
      AWS_REGION: this.seed.region,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      VPC_IPAM_EC2_ENDPOINT: `http://127.0.0.1:${this.lsPort}`,
      VPC_IPAM_IMDS_ENDPOINT: `http://127.0.0.1:${imds.port}`,
      // under TCG (the VM) a metadata read can outlast the 2 s default while the daemon starts
      ...(SLOWDOWN > 1 ? { VPC_IPAM_IMDS_TIMEOUT: String(Math.min(60, 4 * SLOWDOWN)) } : {}),
      VPC_IPAM_AWS_PICK_ADDRESSES: 'true',
      VPC_IPAM_SOCKET: node.socketPath,
      VPC_IPAM_CHECKPOINT: join(node.dir, 'checkpoint.json'),
      VPC_IPAM_RECONCILE_INTERVAL: '1',
      ENABLE_POD_WATCH: 'false',
      LOG_LEVEL: 'info',
      ...env,
    };
    node.daemonArgs = [...nodeArgs];
    await this.respawnDaemon(node);
  }

  /**
   * Starts the node's daemon again with the environment of its last startDaemon (after a kill):
   * same IMDS fake and forwarders. Resolves when it is ready (readyWithinMs 0: at once).
   */
  async respawnDaemon(node: VpcNode, readyWithinMs = scaled(60_000)): Promise<ChildProcess> {
    if (!node.daemonEnv) throw new Error(`no daemon was started in ${node.ns}`);
    const log = openSync(node.daemonLog, 'a');
    const daemon = spawn(
      'ip',
      ['netns', 'exec', node.ns, process.execPath, ...(node.daemonArgs ?? ['src/ipam-daemon/main.ts'])],
      {
        env: node.daemonEnv,
        stdio: ['ignore', log, log],
        cwd: join(import.meta.dirname, '..', '..'),
      },
    );
    closeSync(log);
    node.daemon = daemon;
    this.cleanup.add(`daemon ${node.ns}`, () => stopChild(daemon));
    if (readyWithinMs > 0) await waitReady(node, daemon, readyWithinMs);
    return daemon;
  }

  async stopDaemon(node: VpcNode): Promise<void> {
    if (node.daemon) await stopChild(node.daemon);
    node.daemon = null;
  }
}

/**
 * Waits until the node has no veth named `name`: a DEL through the shim leaves the host veth to the
 * runtime's netns deletion, or to the daemon's sweep 2 s later (daemon/veth-sweep.ts). Fails after
 * `withinMs`.
 */
export async function vethGoneWithin(nodeNs: string, name: string, withinMs = scaled(15_000)): Promise<void> {
  await waitFor(
    `host veth ${name} gone from ${nodeNs}`,
    async () => {
      const links = await ipJson<{ ifname: string }>(nodeNs, 'link', 'show', 'type', 'veth');
      return links.some((l) => l.ifname === name) ? undefined : true;
    },
    withinMs,
    100,
  );
}

/** SIGTERM, then SIGKILL after 8 s; resolves when the child has exited. */
export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 8000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export function daemonGet(socketPath: string, path: string): Promise<{ status: number; body: unknown }> {
  return daemonCall(socketPath, 'GET', path);
}

/** One request on the daemon's socket; `body` is sent as JSON. */
export function daemonCall(
  socketPath: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  timeoutMs = scaled(3000), // stretched under TCG (the VM), where 3 s was too short for a busy daemon
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'Content-Type': 'application/json' };
    const req = request({ socketPath, path, method, headers, agent: false, timeout: timeoutMs }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function waitReady(node: VpcNode, child: ChildProcess, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`vpc-ipamd in ${node.ns} exited ${child.exitCode}; see ${node.daemonLog}`);
    try {
      const r = await daemonGet(node.socketPath, '/readyz');
      if (r.status === 200) return;
      last = JSON.stringify(r.body);
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`vpc-ipamd in ${node.ns} not ready after ${withinMs} ms (${last}); see ${node.daemonLog}`);
}

// Its own module so suites that do not build a local VPC (node-setup) need not load this one.
export { SNAT_JUMP } from './snat-jump.ts';
export { netnsPath };

/**
 * Runs check with one of our iptables rules removed in a node netns. The daemon's node setup puts
 * its rules back (every 30 s), so when check fails and the rule is found back, the result says
 * nothing: it is tried again (3 times at most). The rule is restored afterwards.
 */
export async function whileRuleRemoved(
  ns: string,
  table: string,
  rule: string[],
  restore: string[],
  check: () => Promise<void>,
): Promise<void> {
  const iptables = (...args: string[]) => run('ip', ['netns', 'exec', ns, 'iptables', '-t', table, ...args]);
  for (let attempt = 1; ; attempt++) {
    await iptables('-D', ...rule);
    let failure: unknown = null;
    try {
      await check();
    } catch (e) {
      failure = e;
    }
    const back = await iptables('-C', ...rule).then(
      () => true,
      () => false,
    );
    if (!back) await iptables(...restore);
    if (failure === null) return;
    if (!back || attempt >= 3) throw failure;
  }
}
