// The real AWS VPC CNI (v1.23.2, built by scripts/build-aws-vpc-cni.sh) on a node of the local
// VPC, as the aws-node DaemonSet runs it: aws-k8s-agent (its ipamd) in the node's network
// namespace against LocalStack's EC2 (AWS_EC2_ENDPOINT, through an Ec2Proxy that assigns addresses
// as EC2 does), IMDS from the real ec2-metadata-mock (Ec2MetadataMock) and a real kube-apiserver,
// and its CNI plugin (routed-eni-cni-plugin) called as a runtime calls it.
//
// Both hard-code /var/run/aws-node (the gRPC socket ipamd.sock and the checkpoint ipam.json), so
// they run in a mount namespace of their own (cluster/mountns.ts, propagation slave: pod netns
// made later are visible) where a directory of this node's is bind-mounted there. Its metrics
// (61678) and introspection (61679) ports are inside the node's netns, so nodes never collide.

import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import type { ControlPlane } from '../../cluster/control-plane.ts';
import { MountNamespace } from '../../cluster/mountns.ts';
import { type Child, startChild, stopProcess, toolsDir, waitFor } from '../../cluster/proc.ts';
import { type CniOutcome, execPlugin } from './cni-runtime.ts';
import { Ec2MetadataMock } from './ec2-metadata-mock.ts';
import { Ec2Proxy } from './ec2-proxy.ts';
import { serveUnixToTcp, startNetnsForwarder } from './forwarder.ts';
import type { LocalVpc, VpcNode } from './local-vpc.ts';
import { type Cleanup, run } from './netns.ts';

export const AWS_VPC_CNI_VERSION = 'v1.23.2';

export function awsVpcCniBin(name: 'aws-k8s-agent' | 'routed-eni-cni-plugin'): string {
  const path = join(toolsDir(), 'aws-vpc-cni', AWS_VPC_CNI_VERSION, name);
  if (!existsSync(path))
    throw new Error(`${path} is missing: run bash scripts/setup.sh (scripts/build-aws-vpc-cni.sh)`);
  return path;
}

export interface AwsNodeOptions {
  vpc: LocalVpc;
  node: VpcNode;
  cp: ControlPlane;
  /** The Kubernetes Node name (MY_NODE_NAME); the Node object must exist, untainted, with capacity. */
  nodeName: string;
  cleanup: Cleanup;
  /** Extra aws-node environment (WARM_ENI_TARGET, MINIMUM_IP_TARGET...). */
  env?: Record<string, string>;
  /** Benchmarks: EC2 call latency (ms per action), IMDS refresh period, attach-to-usable time. */
  latencyMs?: (action: string) => number;
  imdsRefreshMs?: number;
  attachToUsableMs?: number;
}

export interface AwsPod {
  name: string;
  containerId: string;
  netns: string;
  ip: string;
  /** The AWS plugin's ADD result. */
  result: Record<string, unknown>;
}

export class AwsNode {
  readonly dir: string;
  /** /var/run/aws-node as the node sees it. */
  readonly stateDir: string;
  readonly imds: Ec2MetadataMock;
  readonly ec2: Ec2Proxy;
  readonly log: string;
  private readonly opts: AwsNodeOptions;
  private ns: MountNamespace | null = null;
  private agent: Child | null = null;
  private forwarder: ChildProcess | null = null;
  private servers: Server[] = [];

  constructor(opts: AwsNodeOptions) {
    this.opts = opts;
    this.dir = join(opts.node.dir, 'aws-node');
    this.stateDir = join(this.dir, 'var-run-aws-node');
    this.log = join(this.dir, 'aws-k8s-agent.log');
    mkdirSync(this.stateDir, { recursive: true });
    const seed = opts.vpc.seed;
    this.imds = new Ec2MetadataMock(
      { instanceId: opts.node.instance.id, endpoint: seed.endpoint, region: seed.region },
      join(this.dir, 'imds'),
      { attachToUsableMs: opts.attachToUsableMs ?? 0 },
    );
    this.ec2 = new Ec2Proxy({
      target: seed.endpoint,
      region: seed.region,
      pickAddresses: true,
      ...(opts.latencyMs ? { latencyMs: opts.latencyMs } : {}),
    });
  }

  get checkpointPath(): string {
    return join(this.stateDir, 'ipam.json');
  }

  /** Starts IMDS, the EC2 proxy, the forwarders and the agent; resolves when ipamd serves. */
  async start(): Promise<void> {
    const { node, cp, cleanup } = this.opts;
    await this.imds.start(this.opts.imdsRefreshMs);
    cleanup.add(`aws-node imds ${node.ns}`, () => this.imds.close());
    await this.ec2.start();
    cleanup.add(`aws-node ec2 proxy ${node.ns}`, () => this.ec2.close());
    const socks: Record<number, string> = {};
    for (const [name, port] of [
      ['imds', this.imds.port],
      ['ec2', this.ec2.port],
      ['api', cp.apiPort],
    ] as const) {
      const sock = join(this.dir, `${name}.sock`);
      this.servers.push(await serveUnixToTcp(sock, port));
      socks[port] = sock;
    }
    cleanup.add(`aws-node forwarders ${node.ns}`, () => {
      for (const s of this.servers) s.close();
    });
    this.forwarder = await startNetnsForwarder(node.ns, socks);
    cleanup.add(`aws-node netns forwarder ${node.ns}`, () => this.forwarder?.kill('SIGKILL'));
    this.ns = await MountNamespace.create(`aws-node-${node.ns}`, node.nsPath);
    cleanup.add(`aws-node mount ns ${node.ns}`, () => this.ns?.close());
    // What the EKS AMI (ip_forward) and aws-node's init container (loose rp_filter on the primary
    // interface) set before ipamd starts; ipamd itself relies on them.
    for (const kv of ['net.ipv4.ip_forward=1', 'net.ipv4.conf.eth0.rp_filter=2']) {
      await run('ip', ['netns', 'exec', node.ns, 'sysctl', '-q', '-w', kv]);
    }
    mkdirSync('/var/run/aws-node', { recursive: true }); // the mount point (empty) on the host
    await this.ns.bind(this.stateDir, '/var/run/aws-node');
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      AWS_EC2_ENDPOINT: this.ec2.url,
      AWS_EC2_METADATA_SERVICE_ENDPOINT: this.imds.url,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      KUBECONFIG: cp.adminKubeconfig,
      CLUSTER_NAME: this.opts.vpc.seed.clusterName,
      MY_NODE_NAME: this.opts.nodeName,
      ENABLE_IPv4: 'true',
      ENABLE_IPv6: 'false',
      // The local VPC's links are 1500 bytes (EC2's 9001 would be dropped by the fabric's veths).
      AWS_VPC_ENI_MTU: '1500',
      AWS_VPC_K8S_CNI_LOG_FILE: 'stdout',
      AWS_VPC_K8S_CNI_LOGLEVEL: 'DEBUG',
      ...this.opts.env,
    };
    this.agent = startChild(
      'aws-k8s-agent',
      'nsenter',
      [...this.ns.enterArgs(), awsVpcCniBin('aws-k8s-agent')],
      this.log,
      env,
    );
    cleanup.add(`aws-k8s-agent ${node.ns}`, () => this.stop());
    await waitFor(
      'aws-k8s-agent serving its gRPC socket',
      async () => (existsSync(join(this.stateDir, 'ipamd.sock')) ? true : undefined),
      90_000,
      250,
      this.agent,
    );
  }

  /** The introspection endpoint (127.0.0.1:61679 inside the node's netns). */
  async introspect(path: string): Promise<unknown> {
    const { stdout } = await run('ip', [
      'netns',
      'exec',
      this.opts.node.ns,
      'curl',
      '-sf',
      '--max-time',
      '3',
      `http://127.0.0.1:61679${path}`,
    ]);
    return JSON.parse(stdout);
  }

  /**
   * IPs ipamd holds per ENI, from introspection. In secondary-IP mode each IP is a /32 key of
   * AvailableIPv4Cidrs; an address entry under it exists while a pod holds it.
   */
  async enis(): Promise<Map<string, { ips: string[]; assigned: string[]; deviceNumber: number }>> {
    type Eni = {
      ID: string;
      DeviceNumber: number;
      AvailableIPv4Cidrs?: Record<string, { IPAddresses?: Record<string, { Address: string }> }>;
    };
    const body = (await this.introspect('/v1/enis')) as Record<string, { ENIs?: Record<string, Eni> }>;
    const out = new Map<string, { ips: string[]; assigned: string[]; deviceNumber: number }>();
    for (const card of Object.values(body)) {
      for (const eni of Object.values(card.ENIs ?? {})) {
        const cidrs = eni.AvailableIPv4Cidrs ?? {};
        out.set(eni.ID, {
          deviceNumber: eni.DeviceNumber,
          ips: Object.keys(cidrs).map((c) => c.split('/')[0]!),
          assigned: Object.values(cidrs).flatMap((c) =>
            Object.values(c.IPAddresses ?? {}).map((a) => a.Address),
          ),
        });
      }
    }
    return out;
  }

  /** The AWS plugin's network config, as the 10-aws.conflist renders its aws-cni entry. */
  pluginConfig(): Record<string, unknown> {
    return {
      cniVersion: '1.0.0',
      name: 'aws-cni',
      type: 'aws-cni',
      vethPrefix: 'eni',
      mtu: '1500',
      podSGEnforcingMode: 'strict',
      pluginLogFile: join(this.dir, 'plugin.log'),
      pluginLogLevel: 'DEBUG',
    };
  }

  /** Runs the AWS plugin inside the node (its netns and this mount namespace). */
  cni(
    command: 'ADD' | 'DEL',
    pod: { name: string; containerId: string; netns: string },
  ): Promise<CniOutcome> {
    if (!this.ns) throw new Error('aws-node is not started');
    return execPlugin(
      awsVpcCniBin('routed-eni-cni-plugin'),
      {
        command,
        containerId: pod.containerId,
        netns: pod.netns,
        ifName: 'eth0',
        args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${pod.containerId}`,
      },
      this.pluginConfig(),
      { enter: ['nsenter', ...this.ns.enterArgs()] },
    );
  }

  /** aws-node's checkpoint as its ipamd last wrote it. */
  checkpoint(): { version: string; allocations: Array<{ containerID: string; ipv4: string }> | null } {
    return JSON.parse(readFileSync(this.checkpointPath, 'utf8'));
  }

  /**
   * Stops the agent as the kubelet stops the aws-node pod: SIGTERM (ipamd only marks itself
   * terminating), then SIGKILL after the grace period. Its host state stays, as on a real node.
   */
  async stop(graceMs = 2000): Promise<void> {
    if (this.agent) await stopProcess(this.agent.proc, graceMs);
    this.agent = null;
  }
}
