// Issue 10 item 1 end to end: the pod subnets change under running pods (POD_SUBNET_IDS, as after a
// PodNetworkConfig change, and the daemon restarts). On the local VPC (LocalStack + network
// namespaces + the real plugin): the running pods keep their addresses and connectivity across the
// restart, new pods get addresses in the new subnet, and the old ENI is deleted in LocalStack only
// after its last pod is gone. Unit-level version: test/unit/ipam-daemon/daemon/interfaces.test.ts.
// Needs: root, iproute2, iptables, nsenter, LocalStack on VPC_IPAM_EC2_ENDPOINT.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DescribeNetworkInterfacesCommand } from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../localstack/seed.ts';
import type { PoolStatus } from '../../src/ipam-daemon/api-types.ts';
import { addLikeKubelet, execPlugin, vpcCniConfig } from '../helpers/cni-runtime.ts';
import { daemonGet, LocalVpc, prepareLocalVpcSuite, type VpcNode } from '../helpers/local-vpc.ts';
import { uniqueClusterName } from '../helpers/localstack.ts';
import { Cleanup, createNetns, listNetns, runPrefix } from '../helpers/netns.ts';
import { probeEventually, startProbeServer } from '../helpers/probe.ts';

const PORT = 7000;

interface Pod {
  id: string;
  ns: string;
  nsPath: string;
  ip: string;
  result: Record<string, unknown>;
}

function inCidr(ip: string, cidr: string): boolean {
  const n = (a: string) => a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
  const [base, bits] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  return n(ip) >= n(base as string) && n(ip) < n(base as string) + size;
}

describe('pod subnet change under running pods (local VPC)', { timeout: 600_000 }, () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const clusterName = uniqueClusterName('subnet-chg');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-subnet-chg-'));
  let plugin: string;
  let vpc: LocalVpc;
  let node: VpcNode;
  let oldSubnet: { id: string; cidr: string };
  let newSubnet: { id: string; cidr: string };
  let seq = 0;

  const conf = () => vpcCniConfig(node);

  async function newPod(): Promise<Pod> {
    const n = ++seq;
    const ns = `${prefix}-p${n}`;
    const nsPath = await createNetns(ns, cleanup);
    const id = `${prefix}pod${n}`;
    const o = await addLikeKubelet(plugin, { containerId: id, netns: nsPath, podName: id }, conf(), node.ns, {
      maxAttempts: 11,
    });
    assert.equal(o.code, 0, `ADD ${id}: ${JSON.stringify(o.out)} ${o.stderr}`);
    const ip = (o.out!.ips as { address: string }[])[0]!.address.split('/')[0]!;
    return { id, ns, nsPath, ip, result: o.out! };
  }

  async function del(p: Pod): Promise<void> {
    const o = await execPlugin(
      plugin,
      { command: 'DEL', containerId: p.id, netns: p.nsPath, ifName: 'eth0' },
      vpcCniConfig(node, { prevResult: p.result }),
      node.ns,
    );
    assert.equal(o.code, 0, JSON.stringify(o.out));
  }

  async function eniExists(id: string): Promise<boolean> {
    const ec2 = localEc2Client(vpc.seed.endpoint, vpc.seed.region);
    const r = await ec2.send(
      new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc.seed.vpcId] }] }),
    );
    return (r.NetworkInterfaces ?? []).some((e) => e.NetworkInterfaceId === id);
  }

  async function pool(): Promise<PoolStatus> {
    return (await daemonGet(node.socketPath, '/v1/pool')).body as PoolStatus;
  }

  before(async () => {
    const prepared = await prepareLocalVpcSuite(clusterName, dir, cleanup);
    plugin = prepared.plugin;
    const seed = prepared.seed;
    // The tiny /27 and a node subnet share the first zone: the old and the new pod subnet.
    const tiny = seed.subnets.find((s) => s.role === 'tiny');
    assert.ok(tiny, 'seed has the tiny subnet');
    const instance = seed.instances.find((i) => i.az === tiny.az);
    assert.ok(instance, 'an instance in the tiny subnet zone');
    const nodeSubnet = seed.subnets.find((s) => s.id === instance.subnetId);
    assert.ok(nodeSubnet);
    oldSubnet = tiny;
    newSubnet = nodeSubnet;
    vpc = new LocalVpc(seed, prefix, dir, cleanup);
    await vpc.build();
    node = await vpc.addNode(instance);
    vpc.startSyncLoop(300);
    await vpc.startDaemon(node, {
      POD_SUBNET_IDS: oldSubnet.id,
      ENABLE_SUBNET_DISCOVERY: 'false',
      WARM_ENI_TARGET: '0',
      WARM_IP_TARGET: '1',
      VPC_IPAM_MIN_GROW_STEP: '1',
      IP_COOLDOWN_PERIOD: '1',
      VPC_IPAM_SHRINK_DELAY: '1',
      VPC_IPAM_ALLOCATE_WAIT: '20',
    });
  });

  after(async () => {
    const errors = await cleanup.run();
    const leaked = await listNetns(prefix);
    if (errors.length > 0) console.error('cleanup errors:', errors);
    assert.deepEqual(leaked, [], 'no netns of this run left behind');
  });

  test('pods keep working across the restart; the old ENI goes only after its last pod', async () => {
    const a = await newPod();
    const b = await newPod();
    for (const p of [a, b]) assert.ok(inCidr(p.ip, oldSubnet.cidr), `${p.ip} in the old subnet`);
    const oldEni = (await pool()).interfaces.find((i) => i.subnetId === oldSubnet.id)?.interfaceId;
    assert.ok(oldEni, 'an ENI in the old pod subnet');
    const server = await startProbeServer(a.ns, PORT);
    cleanup.add('probe server', () => server.stop());
    assert.equal(await probeEventually(b.ns, a.ip, PORT), b.ip, 'b reaches a before the change');

    // The pod subnets change; the daemon restarts with them.
    await vpc.stopDaemon(node);
    node.daemonEnv = { ...node.daemonEnv, POD_SUBNET_IDS: newSubnet.id };
    await vpc.respawnDaemon(node);
    const after = await pool();
    const old = after.interfaces.find((i) => i.interfaceId === oldEni);
    assert.equal(old?.assigned, 2, 'both pods still hold their addresses on the old ENI');
    const c = await newPod();
    assert.ok(inCidr(c.ip, newSubnet.cidr), `a new pod gets ${c.ip} in the new subnet`);
    assert.equal(await probeEventually(b.ns, a.ip, PORT), b.ip, 'b still reaches a after the change');
    await new Promise((r) => setTimeout(r, 4000)); // several reconcile rounds past the shrink delay
    assert.ok(await eniExists(oldEni), 'the old ENI stays while pods use it');

    await del(a);
    await new Promise((r) => setTimeout(r, 4000));
    assert.ok(await eniExists(oldEni), 'one pod left on it: still there');

    await del(b);
    const deadline = Date.now() + 60_000;
    while ((await eniExists(oldEni)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
    assert.equal(await eniExists(oldEni), false, 'deleted after its last pod is gone');
    await del(c);
  });
});
