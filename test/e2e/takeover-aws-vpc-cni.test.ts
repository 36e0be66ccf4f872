// Taking a live node over from the AWS VPC CNI (issue 13, part 1), with the real thing: aws-node's
// ipamd (aws-k8s-agent v1.23.2, built from the Go module proxy) runs on a node of the local VPC
// against LocalStack, IMDS from the real ec2-metadata-mock and a real kube-apiserver + etcd; its
// real CNI plugin wires pods. Then aws-node is stopped as the kubelet stops its pod and vpc-ipamd
// starts in its place. Proved with real packets: the pods keep their addresses and a TCP
// connection held open across the switch, new connections never fail during it (no egress gap),
// new pods get addresses from the adopted pool, the old pods' DEL (by vpc-cni) leaves nothing
// behind, and LocalStack holds nothing the daemon does not account for.
//
// Needs: root, iproute2, iptables (nft), nft, nsenter, curl, LocalStack, and the tools
// scripts/setup.sh installs (the AWS VPC CNI, ec2-metadata-mock, Kubernetes). Fails, never skips.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DescribeNetworkInterfacesCommand } from '@aws-sdk/client-ec2';
import { type ControlPlane, startControlPlane } from '../../cluster/control-plane.ts';
import { k8sBin } from '../../cluster/proc.ts';
import { localEc2Client } from '../../localstack/seed.ts';
import type { AllocationRecord, PoolStatus } from '../../src/ipam-daemon/api-types.ts';
import { AwsNode, type AwsPod } from '../helpers/aws-node.ts';
import { execPlugin, vpcCniConfig } from '../helpers/cni-runtime.ts';
import { daemonGet, INTERNET_SERVER, LocalVpc, type VpcNode } from '../helpers/local-vpc.ts';
import { LocalStackCluster } from '../helpers/localstack.ts';
import {
  Cleanup,
  createNetns,
  ip,
  ipJson,
  requireNetnsPrivileges,
  run,
  runPrefix,
} from '../helpers/netns.ts';
import { ensurePluginBuilt } from '../helpers/plugin-binary.ts';
import { holdConnection, probeEventually, startProbeLoop, startProbeServer } from '../helpers/probe.ts';

const SERVE_PORT = 7100;
const ECHO_PORT = 7101;
const NODE_NAME = 'takeover-node-1';

describe('taking a live node over from the AWS VPC CNI (real aws-node v1.23.2)', { timeout: 600_000 }, () => {
  const cleanup = new Cleanup();
  const cluster = new LocalStackCluster('takeover');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-takeover-'));
  let vpc: LocalVpc;
  let node: VpcNode;
  let cp: ControlPlane;
  let aws: AwsNode;
  let plugin = '';
  const awsPods: AwsPod[] = [];
  let primaryIps = new Set<string>();
  let primaryPod: AwsPod;
  let secondaryPod: AwsPod;
  let adoptedEnis = new Set<string>();
  const newPods: Array<{ name: string; containerId: string; netns: string; ip: string }> = [];

  const kubectl = (...args: string[]) =>
    run(k8sBin('kubectl'), ['--kubeconfig', cp.adminKubeconfig, ...args]);
  const podNs = async (name: string) => {
    const ns = `${vpc.prefix}-${name}`;
    return { ns, path: await createNetns(ns, cleanup) };
  };
  const ourConf = () => vpcCniConfig(node);
  const ourCni = (command: 'ADD' | 'DEL', pod: { name: string; containerId: string; netns: string }) =>
    execPlugin(
      plugin,
      {
        command,
        containerId: pod.containerId,
        netns: pod.netns,
        ifName: 'eth0',
        args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod.name}`,
      },
      ourConf(),
      node.ns,
    );
  const allocations = async () =>
    ((await daemonGet(node.socketPath, '/v1/allocations')).body as { allocations: AllocationRecord[] })
      .allocations;
  const pool = async () => (await daemonGet(node.socketPath, '/v1/pool')).body as PoolStatus;
  const natSave = async () =>
    (await run('ip', ['netns', 'exec', node.ns, 'iptables-save', '-t', 'nat'])).stdout;
  const nftTables = async () => (await run('ip', ['netns', 'exec', node.ns, 'nft', 'list', 'tables'])).stdout;
  const rulesFor = async (podIp: string) =>
    (await ipJson<{ src?: string; dst?: string; priority?: number }>(node.ns, 'rule', 'show')).filter(
      (r) => r.src === podIp || r.dst === podIp,
    );

  before(async () => {
    requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'nft', 'curl', 'unshare']);
    plugin = await ensurePluginBuilt();
    const seed = await cluster.seed();
    vpc = new LocalVpc(seed, runPrefix(), dir, cleanup);
    await vpc.build();
    node = await vpc.addNode(seed.instances.find((i) => i.type === 'm5.large')!);
    vpc.startSyncLoop();
    cp = await startControlPlane({ dir: join(dir, 'control-plane') });
    cleanup.add('control plane', () => cp.stop());
    // The Node aws-node serves: schedulable, with the kubelet's max pods (m5.large: 29).
    await run(
      k8sBin('kubectl'),
      ['--kubeconfig', cp.adminKubeconfig, 'apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: NODE_NAME } }),
    );
    await kubectl('patch', 'node', NODE_NAME, '--type=merge', '-p', '{"spec":{"taints":null}}');
    await kubectl(
      'patch',
      'node',
      NODE_NAME,
      '--subresource=status',
      '--type=merge',
      '-p',
      '{"status":{"capacity":{"pods":"29"},"allocatable":{"pods":"29"}}}',
    );
    const serve = await startProbeServer(vpc.inet, SERVE_PORT);
    const echo = await startProbeServer(vpc.inet, ECHO_PORT, 'echo');
    cleanup.add('probe servers', () => {
      serve.stop();
      echo.stop();
    });
    // MINIMUM_IP_TARGET above one ENI's 9 secondaries: aws-node attaches a second ENI at start.
    aws = new AwsNode({ vpc, node, cp, nodeName: NODE_NAME, cleanup, env: { MINIMUM_IP_TARGET: '12' } });
  });

  after(async () => {
    const problems = await cleanup.run();
    for (const p of problems) process.stderr.write(`cleanup: ${p}\n`);
    await cluster.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  test('aws-node wires pods on the primary ENI and on a secondary ENI it attached', async () => {
    await aws.start();
    // Wait for the second ENI (MINIMUM_IP_TARGET) to be in ipamd's pool.
    let enis = await aws.enis();
    for (let i = 0; i < 120 && [...enis.values()].filter((e) => e.ips.length > 0).length < 2; i++) {
      await new Promise((r) => setTimeout(r, 500));
      enis = await aws.enis();
    }
    assert.ok(
      [...enis.values()].filter((e) => e.ips.length > 0).length >= 2,
      `ipamd ENIs: ${JSON.stringify([...enis])}`,
    );
    primaryIps = new Set([...enis.values()].filter((e) => e.deviceNumber === 0).flatMap((e) => e.ips));
    // ipamd picks an ENI per pod from a map: add pods until both ENIs carry one (at most 12).
    for (let n = 0; n < 12; n++) {
      const name = `aws-${n}`;
      const { path } = await podNs(name);
      const pod = { name, containerId: `awspod${n}${'0'.repeat(20)}`, netns: path };
      const out = await aws.cni('ADD', pod);
      assert.equal(out.code, 0, `AWS plugin ADD ${name}: ${JSON.stringify(out.out)} ${out.stderr}`);
      const ips = (out.out?.ips ?? []) as Array<{ address: string }>;
      const podIp = ips[0]?.address.split('/')[0] ?? '';
      awsPods.push({ ...pod, ip: podIp, result: out.out ?? {} });
      if (n >= 3 && awsPods.some((p) => primaryIps.has(p.ip)) && awsPods.some((p) => !primaryIps.has(p.ip)))
        break;
    }
    primaryPod = awsPods.find((p) => primaryIps.has(p.ip))!;
    secondaryPod = awsPods.find((p) => !primaryIps.has(p.ip))!;
    assert.ok(primaryPod && secondaryPod, `pods: ${awsPods.map((p) => p.ip).join(' ')}`);
    // Real packets: both pods reach the internet, SNATed to the node's primary IP by aws-node's rules.
    for (const p of [primaryPod, secondaryPod]) {
      const ns = p.netns.split('/').pop()!;
      assert.equal(await probeEventually(ns, INTERNET_SERVER, SERVE_PORT, 20_000), node.instance.privateIp);
    }
    // What aws-node left on the host: its checkpoint, veths eni*, rules 512/1536, its SNAT chain.
    const cp0 = aws.checkpoint();
    assert.equal(cp0.version, 'vpc-cni-ipam/1');
    assert.deepEqual((cp0.allocations ?? []).map((a) => a.ipv4).sort(), awsPods.map((p) => p.ip).sort());
    const routes = await ipJson<{ dst?: string; dev?: string }>(node.ns, 'route', 'show', 'table', 'main');
    for (const p of awsPods) {
      assert.match(
        routes.find((r) => r.dst === p.ip)?.dev ?? '',
        /^eni[0-9a-f]{11}$/,
        `host route of ${p.ip}`,
      );
    }
    assert.deepEqual(
      (await rulesFor(secondaryPod.ip)).map((r) => r.priority).sort((a, b) => (a ?? 0) - (b ?? 0)),
      [512, 1536],
    );
    assert.match(await natSave(), /-j AWS-SNAT-CHAIN-0/);
    assert.match(await nftTables(), /table ip aws-cni/);
  });

  test('the switch: aws-node goes, vpc-ipamd adopts its ENIs and pods; connections and egress never break', async () => {
    const held = await holdConnection(secondaryPod.netns.split('/').pop()!, INTERNET_SERVER, ECHO_PORT);
    cleanup.add('held connection', () => held.close());
    assert.equal(await held.ask('before'), `before ${node.instance.privateIp}`);
    const loops = [primaryPod, secondaryPod].map((p) =>
      startProbeLoop(p.netns.split('/').pop()!, INTERNET_SERVER, SERVE_PORT, 100),
    );
    await new Promise((r) => setTimeout(r, 500));
    // The kubelet stops the aws-node pod: SIGTERM, then SIGKILL. Its host state stays.
    await aws.stop();
    // The same values file as aws-node had (MINIMUM_IP_TARGET), aws-node's checkpoint path.
    await vpc.startDaemon(node, {
      CLUSTER_NAME: vpc.seed.clusterName,
      MINIMUM_IP_TARGET: '12',
      VPC_IPAM_AWS_CNI_CHECKPOINT: aws.checkpointPath,
    });
    await new Promise((r) => setTimeout(r, 1500));
    for (const l of loops) await l.stop();
    for (const [i, l] of loops.entries()) {
      assert.ok(l.results.length >= 5, `loop ${i} ran ${l.results.length} times`);
      assert.deepEqual(
        l.results.filter((x) => x !== node.instance.privateIp),
        [],
        `every new connection during the switch is SNATed and answered (loop ${i})`,
      );
    }
    assert.equal(await held.ask('after'), `after ${node.instance.privateIp}`, 'the held connection lives');

    // Adopted: every aws-node pod under its own key, same IP, its eni veth.
    const allocs = await allocations();
    for (const p of awsPods) {
      const a = allocs.find((x) => x.containerId === p.containerId && x.ifName === 'eth0');
      assert.ok(a, `allocation of ${p.name}`);
      assert.equal(a.ip, p.ip);
      assert.match(a.recoveredFrom ?? '', /^eni[0-9a-f]{11}$/);
      assert.equal(a.podName, p.name);
    }
    // aws-node's ENIs are ours now (lend IPs; the secondary one may be deleted when idle).
    const status = await pool();
    const ours = status.interfaces.filter((i) => i.deviceIndex > 0);
    assert.ok(ours.length >= 1, JSON.stringify(status.interfaces));
    adoptedEnis = new Set(status.interfaces.map((i) => i.interfaceId));
    const pooled = new Set(status.interfaces.flatMap((i) => (i.ips ?? []).map((x) => x.ip)));
    for (const p of awsPods) assert.ok(pooled.has(p.ip), `${p.ip} is in the pool`);
    // aws-node's SNAT chain and nftables connmark table are gone; ours cover its eni veths.
    const nat = await natSave();
    assert.doesNotMatch(nat, /AWS-SNAT-CHAIN/);
    assert.match(nat, /-A VPC-IPAM-SNAT -o eni\+ -j RETURN/);
    assert.doesNotMatch(await nftTables(), /aws-cni/);
    // Still routed by the adopted pods' own rules.
    assert.deepEqual(
      (await rulesFor(secondaryPod.ip)).map((r) => r.priority).sort((a, b) => (a ?? 0) - (b ?? 0)),
      [512, 1536],
    );
    // And egress still works from both after aws-node's rules are gone (connmark for secondary ENIs).
    for (const p of [primaryPod, secondaryPod]) {
      assert.equal(
        await probeEventually(p.netns.split('/').pop()!, INTERNET_SERVER, SERVE_PORT, 5000),
        node.instance.privateIp,
      );
    }
  });

  test('new pods get addresses from the adopted pool and reach the internet and the old pods', async () => {
    const before = await pool();
    for (let n = 0; n < 3; n++) {
      const name = `new-${n}`;
      const { path } = await podNs(name);
      const pod = { name, containerId: `newpod${n}${'0'.repeat(20)}`, netns: path };
      const out = await ourCni('ADD', pod);
      assert.equal(out.code, 0, `vpc-cni ADD ${name}: ${JSON.stringify(out.out)} ${out.stderr}`);
      const podIp = ((out.out?.ips ?? []) as Array<{ address: string }>)[0]?.address.split('/')[0] ?? '';
      const held = (await allocations()).find((a) => a.containerId === pod.containerId);
      assert.ok(
        held && adoptedEnis.has(held.interfaceId),
        `${podIp} is on an adopted ENI (${held?.interfaceId})`,
      );
      assert.ok(!awsPods.some((p) => p.ip === podIp), `${podIp} is not an old pod's`);
      newPods.push({ ...pod, ip: podIp });
    }
    assert.equal((await pool()).interfaces.length, before.interfaces.length, 'no interface was added');
    const p0 = newPods[0]!;
    const ns0 = p0.netns.split('/').pop()!;
    assert.equal(await probeEventually(ns0, INTERNET_SERVER, SERVE_PORT, 10_000), node.instance.privateIp);
    // pod -> pod on the node, both ways between a new and an old pod (source kept).
    const server = await startProbeServer(secondaryPod.netns.split('/').pop()!, SERVE_PORT);
    cleanup.add('old pod server', () => server.stop());
    assert.equal(await probeEventually(ns0, secondaryPod.ip, SERVE_PORT, 10_000), p0.ip);
  });

  test("the old pods' DEL (by vpc-cni) removes aws-node's veth, routes and rules and frees the IP", async () => {
    for (const p of awsPods) {
      const out = await ourCni('DEL', p);
      assert.equal(out.code, 0, `DEL ${p.name}: ${JSON.stringify(out.out)} ${out.stderr}`);
      const routes = await ipJson<{ dst?: string; dev?: string }>(node.ns, 'route', 'show', 'table', 'main');
      assert.equal(
        routes.find((r) => r.dst === p.ip),
        undefined,
        `no host route for ${p.ip}`,
      );
      assert.deepEqual(await rulesFor(p.ip), [], `no rules for ${p.ip}`);
      const again = await ourCni('DEL', p);
      assert.equal(again.code, 0, 'DEL is idempotent');
    }
    const links = await ipJson<{ ifname?: string }>(node.ns, 'link', 'show');
    assert.deepEqual(
      links.filter((l) => /^eni[0-9a-f]{11}/.test(l.ifname ?? '')).map((l) => l.ifname),
      [],
    );
    const left = await allocations();
    for (const p of awsPods)
      assert.equal(
        left.find((a) => a.containerId === p.containerId),
        undefined,
      );
  });

  test('nothing leaks in LocalStack: every ENI and address of the node is in the pool', async () => {
    for (const p of newPods) assert.equal((await ourCni('DEL', p)).code, 0);
    const status = await pool();
    const ec2 = localEc2Client(vpc.seed.endpoint, vpc.seed.region);
    try {
      const enis =
        (
          await ec2.send(
            new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc.seed.vpcId] }] }),
          )
        ).NetworkInterfaces ?? [];
      const unattached = enis.filter((e) => !e.Attachment?.InstanceId);
      assert.deepEqual(
        unattached.map((e) => e.NetworkInterfaceId),
        [],
        'no ENI left unattached',
      );
      const mine = enis.filter((e) => e.Attachment?.InstanceId === node.instance.id);
      const known = new Map(
        status.interfaces.map((i) => [i.interfaceId, new Set((i.ips ?? []).map((x) => x.ip))]),
      );
      for (const e of mine) {
        const ips = known.get(e.NetworkInterfaceId!);
        assert.ok(ips, `${e.NetworkInterfaceId} is in the pool`);
        for (const a of e.PrivateIpAddresses ?? []) {
          if (!a.Primary) assert.ok(ips.has(a.PrivateIpAddress!), `${a.PrivateIpAddress} is in the pool`);
        }
      }
      assert.equal(status.assigned, 0, 'no IP is held for a pod that is gone');
    } finally {
      ec2.destroy();
    }
    await ip(node.ns, 'link', 'show'); // the node is still healthy
  });
});
