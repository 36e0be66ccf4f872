// ipvlan mode end to end, in the VM (test/e2e/vm.test.ts runs it on Debian's 6.1 kernel; this
// machine's kernel has no ipvlan): the local VPC of local-vpc.test.ts with vpc-cni in
// "mode": "ipvlan". Every claim is a real TCP connection; the server answers with the source it saw.
// test/e2e/vm.test.ts runs it once with iptables-nft and once with iptables-legacy (the SNAT
// checks here are what differs between the two).
//
// Not a *.test.ts file: on a kernel without ipvlan it could only fail. Needs root and LocalStack.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hostVethName } from '../../src/netutils/names.ts';
import { conflistAdd, conflistRun } from '../helpers/cni-runtime.ts';
import { type IpvlanPod, IpvlanVpc, PORT, SERVICE_IP } from '../helpers/ipvlan-vpc.ts';
import { INTERNET_SERVER, ONPREM_SERVER, SNAT_JUMP, whileRuleRemoved } from '../helpers/local-vpc.ts';
import { createNetns, ip, ipJson, run } from '../helpers/netns.ts';
import { probe, probeEventually, startProbeServer } from '../helpers/probe.ts';
import { scaled } from '../helpers/slowdown.ts';

describe('ipvlan mode e2e (LocalStack + netns + dist/vpc-cni, stock kernel)', {
  timeout: scaled(120_000),
}, () => {
  const t = new IpvlanVpc('ipvlan-e2e');
  const serve = async (ns: string, port = PORT) => {
    const s = await startProbeServer(ns, port);
    t.cleanup.add(`probe server ${ns}:${port}`, () => s.stop());
  };
  let a: IpvlanPod; // node1, primary ENI
  let b: IpvlanPod; // node1
  let remote: IpvlanPod; // node2
  let burst: IpvlanPod[] = [];
  let secondary: IpvlanPod; // node1, on a secondary ENI

  before(() => t.start());
  after(() => t.stop());

  test('ADD wires an ipvlan L2 slave of the ENI that owns the IP, plus the host veth', async () => {
    a = await t.newPod(t.node1);
    const alloc = (await t.allocation(a))!;
    const links = await ipJson<{ ifname: string; address: string; linkinfo?: { info_kind?: string } }>(
      a.ns,
      '-d',
      'link',
      'show',
    );
    const eth0 = links.find((l) => l.ifname === 'eth0');
    assert.equal(eth0?.linkinfo?.info_kind, 'ipvlan');
    assert.equal(eth0?.address, alloc.interfaceMac, 'a slave shares its ENI parent MAC');
    assert.ok(links.some((l) => l.ifname === 'vpc-host'));
    const routes = await ipJson<{ dst: string; gateway?: string; dev: string }>(a.ns, 'route', 'show');
    assert.ok(routes.some((r) => r.dst === 'default' && r.gateway === '169.254.1.1' && r.dev === 'vpc-host'));
    for (const cidr of t.vpc.vpcCidrs) {
      assert.ok(
        routes.some((r) => r.dst === cidr && r.dev === 'eth0'),
        `${cidr} straight out of the ENI`,
      );
    }
    const host = await ipJson<{ dev: string }>(t.node1.ns, 'route', 'show', `${a.ip}/32`);
    assert.deepEqual(
      host.map((r) => r.dev),
      [hostVethName(a.id, 'eth0')],
    );
  });

  test('pod to pod on one node keeps the source IP', async () => {
    b = await t.newPod(t.node1);
    await serve(b.ns);
    assert.equal(await probeEventually(a.ns, b.ip, PORT), a.ip);
  });

  test('50 pods added concurrently on one node get distinct IPs and connectivity, some on a secondary ENI', async () => {
    const started = performance.now();
    const made = await t.pods(t.node1, 50);
    const ms = Math.round(performance.now() - started);
    burst = made.all;
    const ips = new Set(burst.map((p) => p.ip));
    assert.equal(ips.size, 50, 'distinct IPs');
    assert.ok(!ips.has(a.ip) && !ips.has(b.ip));
    console.log(
      `# 50 concurrent ipvlan ADDs: ${ms} ms in the VM, ${made.onSecondary.length} on secondary ENIs`,
    );
    assert.ok(made.onSecondary.length > 0, '50 pods exceed the primary ENI (29 IPs)');
    secondary = made.onSecondary[0]!;
    await serve(a.ns);
    for (let i = 0; i < burst.length; i += 10) {
      const group = burst.slice(i, i + 10);
      const seen = await Promise.all(group.map((p) => probeEventually(p.ns, a.ip, PORT)));
      assert.deepEqual(
        seen,
        group.map((p) => p.ip),
      );
    }
  });

  test('pod to pod across nodes keeps the source IP, both ways, including a pod on a secondary ENI', async () => {
    remote = await t.newPod(t.node2);
    await serve(remote.ns);
    for (const from of [a, secondary]) {
      assert.equal(await probeEventually(from.ns, remote.ip, PORT), from.ip, `${from.ip} -> ${remote.ip}`);
    }
    await serve(secondary.ns);
    assert.equal(await probeEventually(remote.ns, secondary.ip, PORT), remote.ip);
    // pods on different ENIs of one node meet through the VPC (out one ENI, in the other)
    assert.equal(await probeEventually(secondary.ns, a.ip, PORT), secondary.ip);
  });

  test('the node reaches its pods (kubelet probes), from its own address, on either ENI', async () => {
    for (const pod of [a, secondary]) {
      const seen = await probeEventually(t.node1.ns, pod.ip, PORT);
      assert.ok(seen !== pod.ip && seen !== '', `answered, source ${seen} is the node's`);
    }
  });

  test("pods reach the node's own addresses and hostCidrs through the host veth", async () => {
    await ip(t.node1.ns, 'addr', 'add', `${SERVICE_IP}/32`, 'dev', 'lo');
    await serve(t.node1.ns, PORT + 1);
    const nodeAddrs = (
      await ipJson<{ ifname: string; addr_info: { family: string; local: string; scope: string }[] }>(
        t.node1.ns,
        'addr',
        'show',
      )
    )
      .filter((l) => /^eth\d+$/.test(l.ifname))
      .flatMap((l) => l.addr_info.filter((x) => x.family === 'inet').map((x) => x.local));
    assert.ok(nodeAddrs.length >= 2, `the primary and a secondary ENI address: ${nodeAddrs}`);
    for (const pod of [a, secondary]) {
      for (const dst of [...nodeAddrs, SERVICE_IP]) {
        assert.equal(await probeEventually(pod.ns, dst, PORT + 1), pod.ip, `${pod.ip} -> ${dst}`);
      }
    }
  });

  test('pod to internet is SNATed to the node primary IP through the host veth; excluded CIDRs leave with the pod IP', async () => {
    console.log(`# ${(await run('iptables', ['--version'])).stdout.trim()}`);
    const { stdout } = await run('ip', ['netns', 'exec', a.ns, 'ip', 'route', 'get', INTERNET_SERVER]);
    assert.match(stdout, /via 169\.254\.1\.1 dev vpc-host/, 'the internet path is the host veth');
    for (const pod of [a, secondary]) {
      assert.equal(
        await probeEventually(pod.ns, INTERNET_SERVER, PORT),
        t.node1.instance.privateIp,
        `${pod.ip} -> internet`,
      );
      assert.equal(await probeEventually(pod.ns, ONPREM_SERVER, PORT), pod.ip, `${pod.ip} -> excluded CIDR`);
    }
  });

  test('it is the node SNAT that gets them out: without our jump the gateway drops the pod source', async () => {
    const jump = SNAT_JUMP;
    await whileRuleRemoved(t.node1.ns, 'nat', ['POSTROUTING', ...jump], ['-A', 'POSTROUTING', ...jump], () =>
      Promise.all(
        [a, secondary].map((pod) =>
          assert.rejects(probe(pod.ns, INTERNET_SERVER, PORT, 1500), `${pod.ip}: no SNAT, dropped`),
        ),
      ).then(() => undefined),
    );
    for (const pod of [a, secondary]) {
      assert.equal(await probeEventually(pod.ns, INTERNET_SERVER, PORT), t.node1.instance.privateIp);
    }
  });

  test("a pod and its ENI's master never get each other's traffic", async () => {
    // node1 listens on PORT+2 only; pod a on PORT only (and on PORT+3, see below)
    await serve(t.node1.ns, PORT + 2);
    const nodeIp = t.node1.instance.privateIp;
    assert.equal(await probeEventually(remote.ns, nodeIp, PORT + 2), remote.ip, 'node IP reaches the node');
    await assert.rejects(probe(remote.ns, a.ip, PORT + 2, 1500), 'the pod IP never reaches the node');
    await serve(a.ns, PORT + 3);
    assert.equal(await probeEventually(remote.ns, a.ip, PORT + 3), remote.ip, 'pod IP reaches the pod');
    await assert.rejects(probe(remote.ns, nodeIp, PORT + 3, 1500), 'the node IP never reaches the pod');
  });

  test('hostPort/NodePort without SNAT fails in ipvlan mode (replies leave by the ENI); with SNAT it works', async () => {
    // What a hostPort or an externalTrafficPolicy=Local NodePort does: DNAT on the node to the pod.
    // The pod answers a VPC client straight out of its ENI (its VPC route), from its own IP, not
    // through the node that DNATed: the client never sees the reply it expects.
    const ns = `${t.prefix}-hp`;
    const nsPath = await createNetns(ns, t.cleanup);
    const list = {
      cniVersion: '1.0.0',
      name: 'vpc-chain',
      plugins: [
        t.conf(t.node1, { cniVersion: undefined }),
        {
          type: 'portmap',
          capabilities: { portMappings: true },
          runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: PORT, protocol: 'tcp' }] },
        },
      ],
    };
    const resolve = (type: string) => (type === 'vpc-cni' ? t.plugin : `/usr/lib/cni/${type}`);
    const call = {
      containerId: `${t.prefix}hp`,
      netns: nsPath,
      ifName: 'eth0',
      args: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=hp',
    };
    const added = await conflistAdd(list, call, resolve, t.node1.ns);
    assert.equal(added.code, 0, JSON.stringify(added.out) + added.stderr);
    await serve(ns);
    const nodeIp = t.node1.instance.privateIp;
    await assert.rejects(probe(remote.ns, nodeIp, 18080, 2000), 'no SNAT: the reply bypasses the node');
    // kube-proxy's answer for Cluster-policy NodePorts: masquerade, so the pod replies to the node
    const masq = [
      'POSTROUTING',
      '-d',
      `${(added.out!.ips as { address: string }[])[0]!.address.split('/')[0]}/32`,
      '-p',
      'tcp',
      '--dport',
      String(PORT),
      '-j',
      'MASQUERADE',
    ];
    await run('ip', ['netns', 'exec', t.node1.ns, 'iptables', '-t', 'nat', '-I', ...masq]);
    try {
      const seen = await probeEventually(remote.ns, nodeIp, 18080);
      assert.notEqual(seen, remote.ip, 'the pod sees the node as the client');
    } finally {
      await run('ip', ['netns', 'exec', t.node1.ns, 'iptables', '-t', 'nat', '-D', ...masq]);
    }
    const deleted = await conflistRun('DEL', list, call, added.out!, resolve, t.node1.ns);
    assert.deepEqual(
      deleted.map((c) => c.code),
      [0, 0],
    );
  });

  test('CHECK passes on a healthy pod and names the damage: host route, pod default route, slave gone', async () => {
    const pod = b;
    const ok = await t.call('CHECK', pod);
    assert.equal(ok.code, 0, JSON.stringify(ok.out));
    await ip(t.node1.ns, 'route', 'del', `${pod.ip}/32`);
    const bad = await t.call('CHECK', pod);
    assert.equal(bad.code, 1);
    assert.equal(bad.out?.code, 102);
    assert.match(String(bad.out?.msg), new RegExp(`host route ${pod.ip.replaceAll('.', '\\.')}/32`));
    await ip(pod.ns, 'route', 'del', 'default');
    assert.match(String((await t.call('CHECK', pod)).out?.msg), /pod route default via 169\.254\.1\.1/);
    await ip(pod.ns, 'link', 'del', 'eth0');
    assert.match(String((await t.call('CHECK', pod)).out?.msg), /pod interface eth0 is missing/);
  });

  test('DEL leaves no link, route or address of the pod on the node or in the pod; a second DEL succeeds', async () => {
    const pod = secondary;
    const host = hostVethName(pod.id, 'eth0');
    const o = await t.call('DEL', pod);
    assert.equal(o.code, 0, JSON.stringify(o.out));
    const nodeLinks = await ipJson<{ ifname: string }>(t.node1.ns, 'link', 'show');
    assert.ok(!nodeLinks.some((l) => l.ifname === host), 'no host veth');
    const routes = await ipJson<{ dst: string }>(t.node1.ns, 'route', 'show', 'table', 'all');
    assert.ok(!routes.some((r) => r.dst === pod.ip), 'no route to the pod IP');
    const rules = await ipJson<{ src?: string; dst?: string }>(t.node1.ns, 'rule', 'show');
    assert.ok(!rules.some((r) => r.src === pod.ip || r.dst === pod.ip), 'no rule mentions the pod IP');
    const podLinks = await ipJson<{ ifname: string }>(pod.ns, 'link', 'show');
    assert.deepEqual(
      podLinks.map((l) => l.ifname),
      ['lo'],
      'only lo left in the pod',
    );
    assert.equal(await t.allocation(pod), null, 'daemon released the IP');
    assert.equal((await t.call('DEL', pod)).code, 0, 'DEL is idempotent');
    // a DEL with the netns already gone cleans the host side too
    const gone = burst.at(-1)!;
    await run('ip', ['netns', 'del', gone.ns]);
    assert.equal((await t.call('DEL', gone, '')).code, 0);
    const after = await ipJson<{ ifname: string }>(t.node1.ns, 'link', 'show');
    assert.ok(!after.some((l) => l.ifname === hostVethName(gone.id, 'eth0')));
    assert.equal(await t.allocation(gone), null);
  });
});
