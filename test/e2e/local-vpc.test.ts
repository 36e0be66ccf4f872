// The local VPC e2e suite: two nodes (netns) mirroring their LocalStack ENIs, a fabric that
// delivers a private IP only to the ENI owning it, an internet gateway that only accepts node
// primary IPs. Each node runs its own vpc-ipamd; pods are wired by dist/vpc-cni called exactly as
// a runtime calls it. Everything is proved with real TCP connections.
//
// Needs: root, iproute2, iptables (nft), nsenter, LocalStack on VPC_IPAM_EC2_ENDPOINT
// (default http://127.0.0.1:4566). Fails (never skips) without them.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hostVethName } from '../../src/netutils/names.ts';
import {
  type CniOutcome,
  type Conflist,
  conflistAdd,
  conflistRun,
  execPlugin,
} from '../helpers/cni-runtime.ts';
import {
  daemonGet,
  INTERNET_SERVER,
  LocalVpc,
  ONPREM_CIDR,
  ONPREM_SERVER,
  type VpcNode,
} from '../helpers/local-vpc.ts';
import { deleteCluster, requireLocalStack, seedCluster, uniqueClusterName } from '../helpers/localstack.ts';
import {
  Cleanup,
  createNetns,
  ip,
  ipJson,
  listNetns,
  requireNetnsPrivileges,
  run,
  runPrefix,
} from '../helpers/netns.ts';
import { ensurePluginBuilt } from '../helpers/plugin-binary.ts';
import { probe, probeEventually, startProbeServer } from '../helpers/probe.ts';

const PORT = 7000;

interface Pod {
  id: string;
  ns: string;
  nsPath: string;
  node: VpcNode;
  ip: string;
  result: Record<string, unknown>;
}

describe('local VPC e2e (LocalStack + netns + dist/vpc-cni)', { timeout: 600_000 }, () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const clusterName = uniqueClusterName('cni-e2e');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-e2e-'));
  let plugin = '';
  let vpc: LocalVpc;
  let node1: VpcNode;
  let node2: VpcNode;
  let podSeq = 0;

  const conf = (node: VpcNode, extra: Record<string, unknown> = {}) => ({
    cniVersion: '1.1.0',
    name: 'vpc',
    type: 'vpc-cni',
    socketPath: node.socketPath,
    mtu: 1500,
    logFile: join(node.dir, 'cni.log'),
    ...extra,
  });

  /** ADD as a runtime does, retrying "try again later" (code 11) like the kubelet. */
  async function add(
    node: VpcNode,
    nsPath: string,
    id: string,
    extra: Record<string, unknown> = {},
  ): Promise<CniOutcome> {
    for (let attempt = 0; ; attempt++) {
      const o = await execPlugin(
        plugin,
        {
          command: 'ADD',
          containerId: id,
          netns: nsPath,
          ifName: 'eth0',
          args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}`,
        },
        conf(node, extra),
        node.ns,
      );
      if (o.code === 0 || o.out?.code !== 11 || attempt >= 10) return o;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  async function newPod(node: VpcNode): Promise<Pod> {
    const seq = ++podSeq;
    const ns = `${prefix}-p${seq}`;
    const nsPath = await createNetns(ns, cleanup);
    const id = `${prefix}pod${seq}`;
    const o = await add(node, nsPath, id);
    assert.equal(o.code, 0, `ADD ${id} failed: ${JSON.stringify(o.out)} ${o.stderr}`);
    const ips = o.out!.ips as { address: string }[];
    return { id, ns, nsPath, node, ip: ips[0]!.address.split('/')[0]!, result: o.out! };
  }

  function del(pod: Pod, extra: Record<string, unknown> = {}, netns = pod.nsPath) {
    return execPlugin(
      plugin,
      { command: 'DEL', containerId: pod.id, netns, ifName: 'eth0' },
      conf(pod.node, { prevResult: pod.result, ...extra }),
      pod.node.ns,
    );
  }

  async function allocation(pod: Pod): Promise<{ deviceIndex: number; routeTable: number } | null> {
    const r = await daemonGet(pod.node.socketPath, `/v1/allocation?containerId=${pod.id}&ifName=eth0`);
    return r.status === 200 ? (r.body as { deviceIndex: number; routeTable: number }) : null;
  }

  before(async () => {
    requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
    await requireLocalStack();
    plugin = await ensurePluginBuilt();
    const seed = await seedCluster({ clusterName });
    cleanup.add('LocalStack cluster', () => deleteCluster({ clusterName }));
    cleanup.add('temp dir', () => rmSync(dir, { recursive: true, force: true }));
    const big = seed.instances.find((i) => i.type === 'm5.4xlarge');
    const small = seed.instances.find((i) => i.type === 'm5.large');
    assert.ok(big && small, 'seed has an m5.4xlarge and an m5.large');
    vpc = new LocalVpc(seed, prefix, dir, cleanup);
    await vpc.build();
    node1 = await vpc.addNode(big);
    node2 = await vpc.addNode(small);
    vpc.startSyncLoop(300);
    const env = { AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: ONPREM_CIDR, VPC_IPAM_ALLOCATE_WAIT: '20' };
    await Promise.all([vpc.startDaemon(node1, env), vpc.startDaemon(node2, env)]);
    for (const ns of [vpc.inet, vpc.onprem]) {
      const s = await startProbeServer(ns, PORT);
      cleanup.add(`probe server ${ns}`, () => s.stop());
    }
  });

  after(async () => {
    const errors = await cleanup.run();
    const leaked = await listNetns(prefix);
    if (errors.length > 0) console.error('cleanup errors:', errors);
    assert.deepEqual(leaked, [], 'no netns of this run left behind');
  });

  const pods: Pod[] = [];

  test('ADD wires a routed veth: /32 in the pod, default via 169.254.1.1, permanent neighbour', async () => {
    const pod = await newPod(node1);
    pods.push(pod);
    const r = pod.result as {
      cniVersion: string;
      interfaces: { name: string; mac: string; sandbox?: string }[];
      ips: { address: string; gateway: string; interface: number }[];
    };
    assert.equal(r.cniVersion, '1.1.0');
    assert.equal(r.interfaces[0]!.name, hostVethName(pod.id, 'eth0'));
    assert.equal(r.interfaces[1]!.sandbox, pod.nsPath);
    assert.deepEqual(r.ips[0], { address: `${pod.ip}/32`, gateway: '169.254.1.1', interface: 1 });
    const addrs = await ipJson<{ addr_info: { local: string; prefixlen: number; family: string }[] }>(
      pod.ns,
      'addr',
      'show',
      'dev',
      'eth0',
    );
    assert.ok(
      addrs[0]!.addr_info.some((a) => a.family === 'inet' && a.local === pod.ip && a.prefixlen === 32),
    );
    const routes = await ipJson<{ dst: string; gateway?: string }>(pod.ns, 'route', 'show');
    assert.ok(routes.some((x) => x.dst === 'default' && x.gateway === '169.254.1.1'));
    const neigh = await ipJson<{ dst: string; lladdr: string; state: string[] }>(
      pod.ns,
      'neigh',
      'show',
      'dev',
      'eth0',
    );
    assert.ok(
      neigh.some(
        (n) => n.dst === '169.254.1.1' && n.lladdr === r.interfaces[0]!.mac && n.state.includes('PERMANENT'),
      ),
    );
    const hostRoutes = await ipJson<{ dst: string; dev: string }>(node1.ns, 'route', 'show', `${pod.ip}/32`);
    assert.deepEqual(
      hostRoutes.map((x) => x.dev),
      [hostVethName(pod.id, 'eth0')],
    );
  });

  test('pod to pod on one node keeps the source IP', async () => {
    const b = await newPod(node1);
    pods.push(b);
    const server = await startProbeServer(b.ns, PORT);
    cleanup.add('probe server', () => server.stop());
    assert.equal(await probeEventually(pods[0]!.ns, b.ip, PORT), pods[0]!.ip);
  });
});
