// The local VPC (local-vpc.ts) with vpc-cni in ipvlan mode, for the suites that run in the VM
// (test/e2e/ipvlan*.vm.ts; this machine's kernel has no ipvlan): two nodes (m5.4xlarge, m5.large)
// with their daemons, probe servers in the internet and on-prem namespaces, and pods made by
// dist/vpc-cni exactly as a runtime makes them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addLikeKubelet, type CniOutcome, execPlugin, vpcCniConfig } from './cni-runtime.ts';
import { daemonGet, LocalVpc, ONPREM_CIDR, type VpcNode, type VpcPod } from './local-vpc.ts';
import { deleteCluster, requireLocalStack, seedCluster, uniqueClusterName } from './localstack.ts';
import { Cleanup, createNetns, listNetns, requireNetnsPrivileges, runPrefix } from './netns.ts';
import { ensurePluginBuilt } from './plugin-binary.ts';
import { startProbeServer } from './probe.ts';

export const PORT = 7000;
/** Stands for the service CIDR: reached through the host veth (hostCidrs). */
export const SERVICE_CIDR = '10.100.0.0/16';
export const SERVICE_IP = '10.100.0.10';

export type IpvlanPod = VpcPod;

export class IpvlanVpc {
  readonly cleanup = new Cleanup();
  readonly prefix = runPrefix();
  readonly clusterName: string;
  readonly dir = mkdtempSync(join(tmpdir(), 'vpc-ipvlan-'));
  plugin = '';
  vpc!: LocalVpc;
  node1!: VpcNode;
  node2!: VpcNode;
  private seq = 0;

  constructor(name: string) {
    this.clusterName = uniqueClusterName(name);
  }

  conf(node: VpcNode, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return vpcCniConfig(node, { mode: 'ipvlan', hostCidrs: [SERVICE_CIDR], ...extra });
  }

  async start(): Promise<void> {
    requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
    await requireLocalStack();
    this.plugin = await ensurePluginBuilt();
    const seed = await seedCluster({ clusterName: this.clusterName });
    this.cleanup.add('LocalStack cluster', () => deleteCluster({ clusterName: this.clusterName }));
    this.cleanup.add('temp dir', () => rmSync(this.dir, { recursive: true, force: true }));
    const big = seed.instances.find((i) => i.type === 'm5.4xlarge');
    const small = seed.instances.find((i) => i.type === 'm5.large');
    assert.ok(big && small, 'seed has an m5.4xlarge and an m5.large');
    this.vpc = new LocalVpc(seed, this.prefix, this.dir, this.cleanup);
    await this.vpc.build();
    this.node1 = await this.vpc.addNode(big);
    this.node2 = await this.vpc.addNode(small);
    this.vpc.startSyncLoop(300);
    const env = { AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: ONPREM_CIDR, VPC_IPAM_ALLOCATE_WAIT: '20' };
    // allSettled: when one daemon fails, the other's start must finish (and register its cleanup)
    // before the suite's after() cleans up, or its process outlives the run and node --test never ends
    const started = await Promise.allSettled([
      this.vpc.startDaemon(this.node1, env),
      this.vpc.startDaemon(this.node2, env),
    ]);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    for (const ns of [this.vpc.inet, this.vpc.onprem]) {
      const s = await startProbeServer(ns, PORT);
      this.cleanup.add(`probe server ${ns}`, () => s.stop());
    }
  }

  /** Cleans up; throws if a netns of this run is left behind. */
  async stop(): Promise<void> {
    const errors = await this.cleanup.run();
    const leaked = await listNetns(this.prefix);
    if (errors.length > 0) console.error('cleanup errors:', errors);
    assert.deepEqual(leaked, [], 'no netns of this run left behind');
  }

  /** ADD as the kubelet does it (retrying "try again later"). */
  async add(node: VpcNode, nsPath: string, id: string): Promise<CniOutcome> {
    const pod = { containerId: id, netns: nsPath, podName: id };
    return addLikeKubelet(this.plugin, pod, this.conf(node), node.ns, { maxAttempts: 11 });
  }

  async newPod(node: VpcNode): Promise<IpvlanPod> {
    const seq = ++this.seq;
    const ns = `${this.prefix}-p${seq}`;
    const nsPath = await createNetns(ns, this.cleanup);
    const id = `${this.prefix}pod${seq}`;
    const o = await this.add(node, nsPath, id);
    assert.equal(o.code, 0, `ADD ${id} failed: ${JSON.stringify(o.out)} ${o.stderr}`);
    const ips = o.out!.ips as { address: string }[];
    return { id, ns, nsPath, node, ip: ips[0]!.address.split('/')[0]!, result: o.out! };
  }

  call(command: 'DEL' | 'CHECK', pod: IpvlanPod, netns = pod.nsPath): Promise<CniOutcome> {
    return execPlugin(
      this.plugin,
      { command, containerId: pod.id, netns, ifName: 'eth0' },
      this.conf(pod.node, { prevResult: pod.result }),
      pod.node.ns,
    );
  }

  async allocation(pod: IpvlanPod): Promise<{ deviceIndex: number; interfaceMac: string } | null> {
    const r = await daemonGet(pod.node.socketPath, `/v1/allocation?containerId=${pod.id}&ifName=eth0`);
    return r.status === 200 ? (r.body as { deviceIndex: number; interfaceMac: string }) : null;
  }

  /** n pods added at once on node, and which of them landed on a secondary ENI. */
  async pods(node: VpcNode, n: number): Promise<{ all: IpvlanPod[]; onSecondary: IpvlanPod[] }> {
    const all = await Promise.all(Array.from({ length: n }, () => this.newPod(node)));
    const where = await Promise.all(all.map((p) => this.allocation(p)));
    return { all, onSecondary: all.filter((_, i) => (where[i]?.deviceIndex ?? 0) > 0) };
  }
}
