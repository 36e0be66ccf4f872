// The local VPC e2e suite: two nodes (netns) mirroring their LocalStack ENIs, a fabric that
// delivers a private IP only to the ENI owning it, an internet gateway that only accepts node
// primary IPs. Each node runs its own vpc-ipamd; pods are wired by dist/vpc-cni called exactly as
// a runtime calls it. Everything is proved with real TCP connections.
//
// Needs: root, iproute2, iptables (nft), nsenter, LocalStack on VPC_IPAM_EC2_ENDPOINT
// (default http://127.0.0.1:4566). Fails (never skips) without them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AssignPrivateIpAddressesCommand,
  DescribeNetworkInterfacesCommand,
  UnassignPrivateIpAddressesCommand,
} from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../localstack/seed.ts';
import { hostVethName } from '../../src/netutils/names.ts';
import {
  addLikeKubelet,
  type CniOutcome,
  type Conflist,
  conflistAdd,
  conflistRun,
  execPlugin,
  vpcCniConfig,
} from '../helpers/cni-runtime.ts';
import {
  daemonGet,
  INTERNET_SERVER,
  LocalVpc,
  ONPREM_CIDR,
  ONPREM_SERVER,
  prepareLocalVpcSuite,
  SNAT_JUMP,
  type VpcNode,
  type VpcPod,
  vethGoneWithin,
  whileRuleRemoved,
} from '../helpers/local-vpc.ts';
import { uniqueClusterName } from '../helpers/localstack.ts';
import {
  addVethPair,
  Cleanup,
  createNetns,
  ip,
  ipJson,
  listNetns,
  run,
  runPrefix,
} from '../helpers/netns.ts';
import { probe, probeEventually, startProbeServer } from '../helpers/probe.ts';
import { scaled } from '../helpers/slowdown.ts';

const PORT = 7000;
/** The pod identity a runtime passes (CNI_ARGS); ADD needs it. */
const POD_ARGS = 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=p';

type Pod = VpcPod;

describe('local VPC e2e (LocalStack + netns + dist/vpc-cni)', { timeout: scaled(600_000) }, () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const clusterName = uniqueClusterName('cni-e2e');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-e2e-'));
  let plugin = '';
  let vpc: LocalVpc;
  let node1: VpcNode;
  let node2: VpcNode;
  let podSeq = 0;

  const conf = vpcCniConfig;

  /** ADD as a runtime does, retrying "try again later" (code 11) like the kubelet. */
  function add(
    node: VpcNode,
    nsPath: string,
    id: string,
    extra: Record<string, unknown> = {},
  ): Promise<CniOutcome> {
    const pod = { containerId: id, netns: nsPath, podName: id };
    return addLikeKubelet(plugin, pod, conf(node, extra), node.ns, { maxAttempts: 11 });
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
    const prepared = await prepareLocalVpcSuite(clusterName, dir, cleanup);
    plugin = prepared.plugin;
    const seed = prepared.seed;
    const big = seed.instances.find((i) => i.type === 'm5.4xlarge');
    const small = seed.instances.find((i) => i.type === 'm5.large');
    assert.ok(big && small, 'seed has an m5.4xlarge and an m5.large');
    vpc = new LocalVpc(seed, prefix, dir, cleanup);
    await vpc.build();
    node1 = await vpc.addNode(big);
    node2 = await vpc.addNode(small);
    vpc.startSyncLoop(300);
    // GC grace 0: the GC test below drops pods it added moments before.
    const env = {
      AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: ONPREM_CIDR,
      VPC_IPAM_ALLOCATE_WAIT: '20',
      VPC_IPAM_GC_GRACE: '0',
    };
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
    // The daemon planned the wiring and the shim applied it (netlink), not `ip` in the daemon.
    const done = readFileSync(node1.cniLog, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"ADD done"') && l.includes(pod.id))
      .map((l) => JSON.parse(l) as { via?: string; wiredBy?: string });
    assert.deepEqual(
      done.map((l) => [l.via, l.wiredBy]),
      [['daemon', 'shim']],
    );
  });

  test('pod to pod on one node keeps the source IP', async () => {
    const b = await newPod(node1);
    pods.push(b);
    const server = await startProbeServer(b.ns, PORT);
    cleanup.add('probe server', () => server.stop());
    assert.equal(await probeEventually(pods[0]!.ns, b.ip, PORT), pods[0]!.ip);
  });

  let burst: Pod[] = [];

  test('50 pods added concurrently on one node get distinct IPs and connectivity', async () => {
    const started = performance.now();
    burst = await Promise.all(Array.from({ length: 50 }, () => newPod(node1)));
    const ms = Math.round(performance.now() - started);
    const ips = new Set(burst.map((p) => p.ip));
    assert.equal(ips.size, 50, 'distinct IPs');
    assert.ok(!ips.has(pods[0]!.ip) && !ips.has(pods[1]!.ip));
    // every one of them reaches pod A (which answers with the source it saw)
    const server = await startProbeServer(pods[0]!.ns, PORT);
    cleanup.add('probe server A', () => server.stop());
    for (let i = 0; i < burst.length; i += 10) {
      const seen = await Promise.all(
        burst.slice(i, i + 10).map((p) => probeEventually(p.ns, pods[0]!.ip, PORT)),
      );
      assert.deepEqual(
        seen,
        burst.slice(i, i + 10).map((p) => p.ip),
      );
    }
    const tables = await Promise.all(burst.map((p) => allocation(p)));
    const onSecondary = tables.filter((a) => a && a.deviceIndex > 0).length;
    console.log(
      `# 50 concurrent ADDs on ${node1.instance.type}: ${ms} ms, ${onSecondary} pods on secondary ENIs`,
    );
    assert.ok(onSecondary > 0, '50 pods exceed the primary ENI (29 IPs): some live on a secondary ENI');
  });

  test('pod to pod across nodes keeps the source IP, including pods on secondary ENIs', async () => {
    const remote = await newPod(node2);
    pods.push(remote);
    const server = await startProbeServer(remote.ns, PORT);
    cleanup.add('probe server remote', () => server.stop());
    let secondary: Pod | undefined;
    for (const p of burst) if ((await allocation(p))?.deviceIndex) secondary = p;
    assert.ok(secondary, 'a pod on a secondary ENI');
    for (const from of [pods[0]!, secondary]) {
      assert.equal(await probeEventually(from.ns, remote.ip, PORT), from.ip, `${from.ip} -> ${remote.ip}`);
    }
    // and back: node2's pod reaches the secondary-ENI pod (delivered by the fabric to that ENI only)
    const s2 = await startProbeServer(secondary.ns, PORT);
    cleanup.add('probe server secondary', () => s2.stop());
    assert.equal(await probeEventually(remote.ns, secondary.ip, PORT), remote.ip);
    pods.push(secondary);
  });

  test('pod to internet is SNATed to the node primary IP and the reply returns; excluded CIDRs are not', async () => {
    const primaryPod = pods[0]!;
    const secondaryPod = pods.at(-1)!;
    for (const pod of [primaryPod, secondaryPod]) {
      assert.equal(
        await probeEventually(pod.ns, INTERNET_SERVER, PORT),
        node1.instance.privateIp,
        `${pod.ip} -> internet`,
      );
      assert.equal(await probeEventually(pod.ns, ONPREM_SERVER, PORT), pod.ip, `${pod.ip} -> excluded CIDR`);
    }
    // without SNAT the gateway refuses pod sources: prove the fabric enforces it
    const { stdout } = await run('ip', ['netns', 'exec', node1.ns, 'iptables-save', '-t', 'nat']);
    assert.match(
      stdout,
      new RegExp(`-j SNAT --to-source ${node1.instance.privateIp.replaceAll('.', '\\.')} --random-fully`),
    );
    assert.equal(stdout.match(/-A POSTROUTING .*-j VPC-IPAM-SNAT/g)?.length, 1, 'one jump');
    // and it is the SNAT that gets us out: without it the gateway refuses the pod's own source IP
    const jump = SNAT_JUMP;
    await whileRuleRemoved(node1.ns, 'nat', ['POSTROUTING', ...jump], ['-A', 'POSTROUTING', ...jump], () =>
      assert.rejects(probe(primaryPod.ns, INTERNET_SERVER, PORT, 1500), 'no SNAT: dropped at the gateway'),
    );
    assert.equal(await probeEventually(primaryPod.ns, INTERNET_SERVER, PORT), node1.instance.privateIp);
    // the connmark is what sends a secondary-ENI pod's internet traffic to the primary interface:
    // without the pod mark it follows its ENI table out of the secondary ENI, unSNATed, and is dropped
    const podMark = ['-i', 'vpc+', '-j', 'VPC-IPAM-PODMARK'];
    await whileRuleRemoved(
      node1.ns,
      'mangle',
      ['VPC-IPAM-CONNMARK', ...podMark],
      ['-I', 'VPC-IPAM-CONNMARK', '2', ...podMark],
      () =>
        assert.rejects(
          probe(secondaryPod.ns, INTERNET_SERVER, PORT, 1500),
          'no connmark: leaves the wrong ENI',
        ),
    );
    assert.equal(await probeEventually(secondaryPod.ns, INTERNET_SERVER, PORT), node1.instance.privateIp);
    const mangleRules = (await run('ip', ['netns', 'exec', node1.ns, 'iptables-save', '-t', 'mangle']))
      .stdout;
    assert.match(
      mangleRules,
      /-A VPC-IPAM-CONNMARK -i eth0 .*\n-A VPC-IPAM-CONNMARK -i vpc\+ -j VPC-IPAM-PODMARK\n/,
    );
  });

  test('CHECK passes on a healthy pod and reports damage after a route is deleted by hand', async () => {
    const pod = pods[1]!;
    const check = () =>
      execPlugin(
        plugin,
        { command: 'CHECK', containerId: pod.id, netns: pod.nsPath, ifName: 'eth0' },
        conf(node1, { prevResult: pod.result }),
        node1.ns,
      );
    const ok = await check();
    assert.equal(ok.code, 0, JSON.stringify(ok.out));
    await ip(node1.ns, 'route', 'del', `${pod.ip}/32`);
    const bad = await check();
    assert.equal(bad.code, 1);
    assert.equal(bad.out?.code, 102);
    assert.match(String(bad.out?.msg), new RegExp(`host route ${pod.ip.replaceAll('.', '\\.')}/32`));
    await ip(pod.ns, 'route', 'del', 'default');
    assert.match(String((await check()).out?.msg), /default route/);
  });

  // A DEL through the shim leaves the host veth to the runtime's netns deletion (as the AWS VPC CNI);
  // this pod's netns stays, so the daemon's sweep deletes it moments later (daemon/veth-sweep.ts).
  test('DEL leaves no route or rule of the pod, and no link or neighbour entry once the sweep ran; a second DEL succeeds', async () => {
    const pod = pods.at(-1)!; // on a secondary ENI: has a from-pod rule too
    const host = hostVethName(pod.id, 'eth0');
    const rulesBefore = await ipJson<{ src?: string; dst?: string }>(node1.ns, 'rule', 'show');
    assert.ok(
      rulesBefore.some((r) => r.src === pod.ip),
      'from-pod rule present before DEL',
    );
    const o = await del(pod);
    assert.equal(o.code, 0, JSON.stringify(o.out));
    const rules = await ipJson<{ src?: string; dst?: string }>(node1.ns, 'rule', 'show');
    assert.ok(!rules.some((r) => r.src === pod.ip || r.dst === pod.ip), 'no rule mentions the pod IP');
    const routes = await ipJson<{ dst: string }>(node1.ns, 'route', 'show', 'table', 'all');
    assert.ok(!routes.some((r) => r.dst === pod.ip), 'no route to the pod IP');
    // The host veth's neighbour entries go with it.
    await vethGoneWithin(node1.ns, host);
    const neigh = await ipJson<{ dst: string }>(node1.ns, 'neigh', 'show');
    assert.ok(!neigh.some((n) => n.dst === pod.ip), 'no neighbour entry for the pod IP');
    assert.equal(await allocation(pod), null, 'daemon released the IP');
    assert.equal((await del(pod)).code, 0, 'DEL is idempotent');
    pods.pop();
  });

  test('a stale DEL naming an IP that another pod now holds leaves that pod alone', async () => {
    const victim = burst[0]!; // healthy (pods[1] had its routes deleted by the CHECK test)
    const stale = { ...victim, id: `${prefix}stale`, result: victim.result };
    const o = await del(stale, {}, '');
    assert.equal(o.code, 0, JSON.stringify(o.out));
    const rules = await ipJson<{ dst?: string; priority: number }>(node1.ns, 'rule', 'show');
    assert.ok(
      rules.some((r) => r.priority === 512 && r.dst === victim.ip),
      "the other pod's rule survives",
    );
    assert.equal(await probeEventually(victim.ns, pods[0]!.ip, PORT), victim.ip);
  });

  test('DEL succeeds and cleans the host side when the netns is gone', async () => {
    const pod = burst.pop()!;
    await run('ip', ['netns', 'del', pod.ns]);
    const o = await del(pod, {}, '');
    assert.equal(o.code, 0, JSON.stringify(o.out));
    const rules = await ipJson<{ src?: string; dst?: string }>(node1.ns, 'rule', 'show');
    assert.ok(!rules.some((r) => r.src === pod.ip || r.dst === pod.ip));
    assert.equal(await allocation(pod), null);
  });

  test('an ADD that fails half-way leaves nothing behind and releases the IP', async () => {
    const ns = `${prefix}-bad`;
    const nsPath = await createNetns(ns, cleanup);
    // A default route already in the pod makes the pod-side step fail after the host side was made.
    await addVethPair({ name: 'pre0', ns }, { name: 'pre1', ns });
    await ip(ns, 'link', 'set', 'pre0', 'up');
    await ip(ns, 'route', 'add', 'default', 'dev', 'pre0');
    const id = `${prefix}bad`;
    const o = await add(node1, nsPath, id);
    assert.equal(o.code, 1);
    assert.equal(o.out?.code, 101, JSON.stringify(o.out));
    const links = await ipJson<{ ifname: string }>(node1.ns, 'link', 'show');
    assert.ok(!links.some((l) => l.ifname === hostVethName(id, 'eth0')), 'no host veth');
    const podLinks = await ipJson<{ ifname: string }>(ns, 'link', 'show');
    assert.ok(!podLinks.some((l) => l.ifname === 'eth0'), 'no pod interface');
    const r = await daemonGet(node1.socketPath, `/v1/allocation?containerId=${id}&ifName=eth0`);
    assert.equal(r.status, 404, 'IP released');
  });

  test('chained conflist: vpc-cni then portmap and bandwidth, with prevResult through ADD/CHECK/DEL', async () => {
    const ns = `${prefix}-chain`;
    const nsPath = await createNetns(ns, cleanup);
    const list: Conflist = {
      cniVersion: '1.0.0',
      name: 'vpc-chain',
      plugins: [
        conf(node1, { cniVersion: undefined }),
        {
          type: 'portmap',
          capabilities: { portMappings: true },
          runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: PORT, protocol: 'tcp' }] },
        },
        {
          type: 'bandwidth',
          capabilities: { bandwidth: true },
          runtimeConfig: {
            bandwidth: {
              ingressRate: 100_000_000,
              ingressBurst: 1_000_000,
              egressRate: 100_000_000,
              egressBurst: 1_000_000,
            },
          },
        },
      ],
    };
    const resolve = (type: string) => (type === 'vpc-cni' ? plugin : `/usr/lib/cni/${type}`);
    const call = {
      containerId: `${prefix}chain`,
      netns: nsPath,
      ifName: 'eth0',
      args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${prefix}chain`,
    };
    const added = await conflistAdd(list, call, resolve, node1.ns);
    assert.equal(added.code, 0, JSON.stringify(added.out) + added.stderr);
    const ipAddr = (added.out!.ips as { address: string }[])[0]!.address.split('/')[0]!;
    const server = await startProbeServer(ns, PORT);
    cleanup.add('probe chain', () => server.stop());
    // portmap DNATs node:18080 to the pod; reach it from node2's pod through the VPC
    const remote = pods.find((p) => p.node === node2)!;
    assert.equal(await probeEventually(remote.ns, node1.instance.privateIp, 18080), remote.ip);
    assert.equal(await probeEventually(pods[0]!.ns, ipAddr, PORT), pods[0]!.ip);
    // CHECK through the chain, minus portmap: Debian's portmap CHECK looks for IPv6 chains it never
    // made on IPv4-only pods (containernetworking/plugins#819), whoever the main plugin is.
    const checkList = { ...list, plugins: list.plugins.filter((p) => p.type !== 'portmap') };
    const checked = await conflistRun('CHECK', checkList, call, added.out!, resolve, node1.ns);
    assert.deepEqual(
      checked.map((c) => c.code),
      [0, 0],
      JSON.stringify(checked.map((c) => c.out)),
    );
    const deleted = await conflistRun('DEL', list, call, added.out!, resolve, node1.ns);
    assert.deepEqual(
      deleted.map((c) => c.code),
      [0, 0, 0],
      JSON.stringify(deleted.map((c) => c.out)),
    );
    // What the runtime does next: the netns goes, and the kernel takes the veth pair with it.
    await run('ip', ['netns', 'del', ns]);
    await vethGoneWithin(node1.ns, hostVethName(call.containerId, 'eth0'));
  });

  test('GC releases and unwires attachments the runtime no longer lists', async () => {
    const keep = burst.slice(0, 40);
    const drop = burst.slice(40);
    const valid = [...pods, ...keep].map((p) => ({ containerID: p.id, ifname: 'eth0' }));
    const o = await execPlugin(
      plugin,
      { command: 'GC' },
      conf(node1, { 'cni.dev/valid-attachments': valid }),
      node1.ns,
    );
    assert.equal(o.code, 0, JSON.stringify(o.out));
    const links = new Set((await ipJson<{ ifname: string }>(node1.ns, 'link', 'show')).map((l) => l.ifname));
    for (const p of drop) {
      assert.ok(!links.has(hostVethName(p.id, 'eth0')), `${p.id} unwired`);
      assert.equal(await allocation(p), null, `${p.id} released`);
    }
    for (const p of keep.slice(0, 3)) assert.ok(links.has(hostVethName(p.id, 'eth0')), `${p.id} kept`);
    assert.equal(await probe(keep[0]!.ns, pods[0]!.ip, PORT), keep[0]!.ip);
    burst = keep;
  });

  test('cniVersion 0.4.0: result with IP versions; DEL with a 0.4.0 prevResult cleans up', async () => {
    const ns = `${prefix}-v04`;
    const nsPath = await createNetns(ns, cleanup);
    const id = `${prefix}v04`;
    const o = await add(node1, nsPath, id, { cniVersion: '0.4.0' });
    assert.equal(o.code, 0, JSON.stringify(o.out));
    assert.equal(o.out?.cniVersion, '0.4.0');
    const ips = o.out?.ips as { version: string; address: string }[];
    assert.equal(ips[0]!.version, '4');
    const d = await execPlugin(
      plugin,
      { command: 'DEL', containerId: id, netns: nsPath, ifName: 'eth0' },
      conf(node1, { cniVersion: '0.4.0', prevResult: o.out }),
      node1.ns,
    );
    assert.equal(d.code, 0, JSON.stringify(d.out));
    await vethGoneWithin(node1.ns, hostVethName(id, 'eth0'));
    const r = await daemonGet(node1.socketPath, `/v1/allocation?containerId=${id}&ifName=eth0`);
    assert.equal(r.status, 404);
  });

  test('spec errors: VERSION, bad env (4), bad JSON (6), bad config (7), daemon down (11), STATUS (50)', async () => {
    const version = await execPlugin(plugin, { command: 'VERSION' }, { cniVersion: '0.4.0' });
    assert.deepEqual(version.out, { cniVersion: '0.4.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
    const badEnv = await execPlugin(
      plugin,
      { command: 'ADD', containerId: 'x', netns: '/nope', ifName: 'eth0/x' },
      conf(node1),
    );
    assert.equal(badEnv.out?.code, 4);
    assert.match(String(badEnv.out?.msg), /CNI_IFNAME/);
    const badConf = await execPlugin(
      plugin,
      { command: 'ADD', containerId: 'x', netns: '/nope', ifName: 'eth0', args: POD_ARGS },
      conf(node1, { mtu: 'big' }),
    );
    assert.equal(badConf.out?.code, 7);
    const status = await execPlugin(plugin, { command: 'STATUS' }, conf(node1), node1.ns);
    assert.equal(status.code, 0, JSON.stringify(status.out));
    // node2's daemon goes away: ADD says "try again later", STATUS says not available, DEL still works
    const victim = pods.find((p) => p.node === node2)!;
    const victim2 = await newPod(node2); // deleted below without prevResult
    await vpc.stopDaemon(node2);
    const ns = `${prefix}-down`;
    const nsPath = await createNetns(ns, cleanup);
    const down = await execPlugin(
      plugin,
      { command: 'ADD', containerId: `${prefix}down`, netns: nsPath, ifName: 'eth0', args: POD_ARGS },
      conf(node2),
      node2.ns,
    );
    assert.equal(down.out?.code, 11, JSON.stringify(down.out));
    const after = await ipJson<{ ifname: string }>(node2.ns, 'link', 'show');
    assert.ok(
      !after.some((l) => l.ifname === hostVethName(`${prefix}down`, 'eth0')),
      'veth made during allocation removed',
    );
    assert.equal((await execPlugin(plugin, { command: 'STATUS' }, conf(node2), node2.ns)).out?.code, 50);
    const d = await del(victim);
    assert.equal(d.code, 0, JSON.stringify(d.out));
    const links = await ipJson<{ ifname: string }>(node2.ns, 'link', 'show');
    assert.ok(
      !links.some((l) => l.ifname === hostVethName(victim.id, 'eth0')),
      'host side cleaned with the daemon down',
    );
    // no prevResult and no daemon: the IP comes from the host veth's route, so the rules go too
    const d2 = await execPlugin(
      plugin,
      { command: 'DEL', containerId: victim2.id, netns: victim2.nsPath, ifName: 'eth0' },
      conf(node2),
      node2.ns,
    );
    assert.equal(d2.code, 0, JSON.stringify(d2.out));
    const rules = await ipJson<{ src?: string; dst?: string }>(node2.ns, 'rule', 'show');
    assert.ok(!rules.some((r) => r.dst === victim2.ip || r.src === victim2.ip), 'rules of the pod removed');
    const links2 = await ipJson<{ ifname: string }>(node2.ns, 'link', 'show');
    assert.ok(!links2.some((l) => l.ifname === hostVethName(victim2.id, 'eth0')));
    const decode = await execPluginRaw(plugin, '{not json', node1.ns);
    assert.equal(decode.code, 6);
  });

  test('the fabric delivers an address only while LocalStack says the node owns it', async () => {
    // node2's daemon is stopped by now, so assigning an address behind its back is safe.
    const small = node2.instance;
    const ec2 = localEc2Client(vpc.seed.endpoint, vpc.seed.region);
    cleanup.add('ec2 client (fabric test)', () => ec2.destroy());
    const owned = new Set(
      (
        (
          await ec2.send(
            new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc.seed.vpcId] }] }),
          )
        ).NetworkInterfaces ?? []
      ).flatMap((e) => (e.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress)),
    );
    const subnet = vpc.seed.subnets.find((x) => x.id === small.subnetId)!;
    const [a, b, c] = subnet.cidr.split('/')[0]!.split('.').map(Number) as [number, number, number];
    let candidate = '';
    for (let i = 0; i < 200 && !candidate; i++) {
      const n = 3000 + Math.floor(Math.random() * 1000); // inside the /20, away from the low addresses pools pick
      const x = `${a}.${b}.${c + Math.floor(n / 256)}.${n % 256}`;
      if (!owned.has(x) && n % 256 !== 0 && n % 256 !== 255) candidate = x;
    }
    assert.ok(candidate, 'a free address in node2 subnet');
    await ip(node2.ns, 'addr', 'add', `${candidate}/32`, 'dev', 'lo');
    const server = await startProbeServer(node2.ns, PORT + 1);
    cleanup.add('probe node2', () => server.stop());
    const from = pods[0]!;
    await assert.rejects(probe(from.ns, candidate, PORT + 1, 1500), 'not delivered while no ENI owns it');
    const eni = small.primaryEniId;
    await ec2.send(
      new AssignPrivateIpAddressesCommand({ NetworkInterfaceId: eni, PrivateIpAddresses: [candidate] }),
    );
    let assigned = true;
    cleanup.add('unassign test address', async () => {
      if (assigned) {
        await ec2.send(
          new UnassignPrivateIpAddressesCommand({ NetworkInterfaceId: eni, PrivateIpAddresses: [candidate] }),
        );
      }
    });
    assert.equal(
      await probeEventually(from.ns, candidate, PORT + 1, scaled(10_000)),
      from.ip,
      'delivered once LocalStack says so',
    );
    await ec2.send(
      new UnassignPrivateIpAddressesCommand({ NetworkInterfaceId: eni, PrivateIpAddresses: [candidate] }),
    );
    assigned = false;
    const deadline = Date.now() + scaled(10_000);
    let stillDelivered = true;
    while (stillDelivered && Date.now() < deadline) {
      stillDelivered = await probe(from.ns, candidate, PORT + 1, 1000).then(
        () => true,
        () => false,
      );
    }
    assert.equal(stillDelivered, false, 'not delivered after the address was unassigned');
  });
});

/** A plugin run with arbitrary stdin (for decode errors). */
function execPluginRaw(binary: string, stdin: string, nodeNs: string): { code: number } {
  const r = spawnSync('ip', ['netns', 'exec', nodeNs, binary], {
    input: stdin,
    env: {
      PATH: process.env.PATH ?? '',
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'x',
      CNI_NETNS: '/nope',
      CNI_IFNAME: 'eth0',
    },
  });
  const out = JSON.parse(r.stdout.toString()) as { code: number };
  return { code: out.code };
}
