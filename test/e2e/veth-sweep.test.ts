// A veth DEL leaves the host veth, as the AWS VPC CNI's does (src/ipam-daemon/daemon/veth-sweep.ts),
// on real namespaces with the real daemon and dist/vpc-cni: the DEL answers with the pod's rules
// and host route gone and its IP cooling; the runtime's netns deletion takes the veth, or else the
// daemon's sweep does; a re-ADD of the same container id right after the DEL is wired anew and its
// veth survives the sweep; with IP_COOLDOWN_PERIOD=0 the DEL deletes the veth itself; a veth left
// when the daemon is killed is deleted by the next daemon before it serves.
//
// Needs: root, iproute2, iptables, nsenter, LocalStack on VPC_IPAM_EC2_ENDPOINT. Fails (never skips)
// without them.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PoolStatus } from '../../src/ipam-daemon/api-types.ts';
import { VETH_SWEEP_DELAY_MS } from '../../src/ipam-daemon/daemon/veth-sweep.ts';
import { hostVethName } from '../../src/netutils/names.ts';
import { addLikeKubelet, execPlugin, vpcCniConfig } from '../helpers/cni-runtime.ts';
import {
  daemonGet,
  LocalVpc,
  prepareLocalVpcSuite,
  type VpcNode,
  type VpcPod,
  vethGoneWithin,
} from '../helpers/local-vpc.ts';
import { uniqueClusterName } from '../helpers/localstack.ts';
import { Cleanup, createNetns, ipJson, listNetns, run, runPrefix } from '../helpers/netns.ts';
import { scaled } from '../helpers/slowdown.ts';

describe('a DEL leaves the host veth to the netns deletion or the daemon sweep', {
  timeout: scaled(300_000),
}, () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const clusterName = uniqueClusterName('veth-sweep');
  const dir = mkdtempSync(join(tmpdir(), 'veth-sweep-'));
  let plugin = '';
  let vpc: LocalVpc;
  /** IP_COOLDOWN_PERIOD=30 (the default): DEL leaves the veth. */
  let cooling: VpcNode;
  /** IP_COOLDOWN_PERIOD=0: DEL deletes the veth. */
  let noCooldown: VpcNode;
  let seq = 0;

  async function add(node: VpcNode, nsPath: string, id: string) {
    const pod = { containerId: id, netns: nsPath, podName: id };
    const o = await addLikeKubelet(plugin, pod, vpcCniConfig(node), node.ns, { maxAttempts: 11 });
    assert.equal(o.code, 0, `ADD ${id}: ${JSON.stringify(o.out)} ${o.stderr}`);
    return { ip: (o.out!.ips as { address: string }[])[0]!.address.split('/')[0]!, result: o.out! };
  }

  async function newPod(node: VpcNode): Promise<VpcPod> {
    const n = ++seq;
    const ns = `${prefix}-s${n}`;
    const nsPath = await createNetns(ns, cleanup);
    const id = `${prefix}sweep${n}`;
    return { id, ns, nsPath, node, ...(await add(node, nsPath, id)) };
  }

  async function del(pod: VpcPod): Promise<void> {
    const o = await execPlugin(
      plugin,
      { command: 'DEL', containerId: pod.id, netns: pod.nsPath, ifName: 'eth0' },
      vpcCniConfig(pod.node, { prevResult: pod.result }),
      pod.node.ns,
    );
    assert.equal(o.code, 0, `DEL ${pod.id}: ${JSON.stringify(o.out)}`);
  }

  /** The node's state naming the pod: its host veth's ifindex, routes to its IP, rules of its IP. */
  async function hostSide(pod: VpcPod, ip = pod.ip) {
    const host = hostVethName(pod.id, 'eth0');
    const links = await ipJson<{ ifname: string; ifindex: number }>(
      pod.node.ns,
      'link',
      'show',
      'type',
      'veth',
    );
    const routes = await ipJson<{ dst: string; dev?: string }>(pod.node.ns, 'route', 'show', 'table', 'all');
    const rules = await ipJson<{ src?: string; dst?: string }>(pod.node.ns, 'rule', 'show');
    return {
      veth: links.find((l) => l.ifname === host)?.ifindex ?? null,
      routes: routes.filter((r) => r.dst === ip).map((r) => `${r.dst} dev ${r.dev}`),
      rules: rules.filter((r) => r.src === ip || r.dst === ip).length,
    };
  }

  async function ipState(node: VpcNode, ip: string): Promise<string | undefined> {
    const pool = (await daemonGet(node.socketPath, '/v1/pool')).body as PoolStatus;
    return pool.interfaces.flatMap((i) => i.ips ?? []).find((s) => s.ip === ip)?.state;
  }

  /** The plugin log's "DEL done" line of a container (the daemon ran it for the shim). */
  function delDone(pod: VpcPod): Record<string, unknown> | undefined {
    const log = pod.node.cniLog ?? join(pod.node.dir, 'cni.log');
    return readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === 'DEL done' && l.containerId === pod.id)
      .at(-1);
  }

  before(async () => {
    const prepared = await prepareLocalVpcSuite(clusterName, dir, cleanup);
    plugin = prepared.plugin;
    const big = prepared.seed.instances.find((i) => i.type === 'm5.4xlarge');
    const small = prepared.seed.instances.find((i) => i.type === 'm5.large');
    assert.ok(big && small, 'seed has an m5.4xlarge and an m5.large');
    vpc = new LocalVpc(prepared.seed, prefix, dir, cleanup);
    await vpc.build();
    cooling = await vpc.addNode(big);
    noCooldown = await vpc.addNode(small);
    vpc.startSyncLoop(300);
    const env = { VPC_IPAM_ALLOCATE_WAIT: '20' };
    await Promise.all([
      vpc.startDaemon(cooling, { ...env, IP_COOLDOWN_PERIOD: '30' }),
      vpc.startDaemon(noCooldown, { ...env, IP_COOLDOWN_PERIOD: '0' }),
    ]);
  });

  after(async () => {
    const errors = await cleanup.run();
    if (errors.length > 0) console.error('cleanup errors:', errors);
    assert.deepEqual(await listNetns(prefix), [], 'no netns of this run left behind');
  });

  test('DEL answers with the route and rules gone and the IP cooling; the netns deletion takes the veth', async () => {
    const pod = await newPod(cooling);
    const wired = await hostSide(pod);
    assert.ok(wired.veth !== null && wired.routes.length === 1 && wired.rules >= 1, JSON.stringify(wired));
    await del(pod);
    const answered = await hostSide(pod);
    assert.deepEqual({ routes: answered.routes, rules: answered.rules }, { routes: [], rules: 0 });
    assert.equal(await ipState(cooling, pod.ip), 'cooling');
    assert.equal(
      (await daemonGet(cooling.socketPath, `/v1/allocation?containerId=${pod.id}&ifName=eth0`)).status,
      404,
    );
    const done = delDone(pod);
    assert.equal(done?.wiredBy, 'shim', JSON.stringify(done));
    assert.equal(done?.vethLeft, true, 'the veth was left to the netns deletion');
    // What the runtime does after a DEL: the kernel destroys the pair with the netns.
    await run('ip', ['netns', 'del', pod.ns]);
    await vethGoneWithin(cooling.ns, hostVethName(pod.id, 'eth0'));
    assert.equal(await ipState(cooling, pod.ip), 'cooling', 'still within its 30 s cooldown');
  });

  test('without the netns deletion the sweep deletes the veth (and its pod end)', async () => {
    const pod = await newPod(cooling);
    await del(pod);
    await vethGoneWithin(cooling.ns, hostVethName(pod.id, 'eth0'));
    const podLinks = await ipJson<{ ifname: string }>(pod.ns, 'link', 'show');
    assert.deepEqual(
      podLinks.filter((l) => l.ifname === 'eth0'),
      [],
    );
    assert.deepEqual(await hostSide(pod), { veth: null, routes: [], rules: 0 });
  });

  test('a re-ADD of the same container id right after its DEL is wired anew; the sweep leaves its veth alone', async () => {
    const pod = await newPod(cooling);
    const old = await hostSide(pod);
    await del(pod);
    const again = await add(cooling, pod.nsPath, pod.id);
    assert.notEqual(again.ip, pod.ip, 'the old IP is cooling');
    const fresh = await hostSide(pod, again.ip);
    assert.ok(fresh.veth !== null && fresh.veth !== old.veth, JSON.stringify({ old, fresh }));
    // Past the sweep of the old veth (2 s after the DEL).
    await new Promise((r) => setTimeout(r, scaled(4000)));
    assert.deepEqual(await hostSide(pod, again.ip), fresh, 'the new veth, route and rules stay');
    assert.equal(await ipState(cooling, again.ip), 'assigned');
    await del({ ...pod, ...again });
    await run('ip', ['netns', 'del', pod.ns]);
  });

  test('IP_COOLDOWN_PERIOD=0: the DEL deletes the veth itself, nothing of the pod is left at the answer', async () => {
    const pod = await newPod(noCooldown);
    await del(pod);
    assert.deepEqual(await hostSide(pod), { veth: null, routes: [], rules: 0 });
    assert.equal(delDone(pod)?.vethLeft, false);
    assert.equal(await ipState(noCooldown, pod.ip), 'free');
  });

  test('a veth left when the daemon is killed is deleted by the next daemon before it serves', async () => {
    // The kill must come before the daemon's own sweep (VETH_SWEEP_DELAY_MS after it took the DEL,
    // so after the DEL started). When a loaded machine delays it past that, the killed daemon may
    // have swept: that round shows nothing and runs again with a new pod. A kill in time must
    // always find the veth left.
    for (let attempt = 1; ; attempt++) {
      const pod = await newPod(cooling);
      const delStarted = performance.now();
      await del(pod);
      const daemon = cooling.daemon!;
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGKILL');
      const killedAfterMs = performance.now() - delStarted;
      await exited;
      const inTime = killedAfterMs < VETH_SWEEP_DELAY_MS - 100;
      const left = (await hostSide(pod)).veth !== null;
      await vpc.respawnDaemon(cooling);
      if (!left && !inTime && attempt < 3) continue;
      assert.ok(
        left,
        `the killed daemon never swept it (killed ${Math.round(killedAfterMs)} ms after the DEL began)`,
      );
      assert.equal((await hostSide(pod)).veth, null, 'gone once the daemon answers');
      assert.equal(await ipState(cooling, pod.ip), 'cooling', 'its cooldown survived the restart');
      return;
    }
  });
});
