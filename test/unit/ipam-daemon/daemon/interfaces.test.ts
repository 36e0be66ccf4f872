// Which interfaces the daemon may use and delete (daemon/interfaces.ts, with the guard in
// daemon/pool-loop.ts): an interface carrying a running pod's address is never deleted, one outside
// the current pod subnets drains instead, and another cluster's interface is never ours. On the
// in-memory cloud with an injected host-route table; the real-kernel version is
// test/e2e/pod-subnet-change.test.ts.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import type { Allocation } from '../../../../src/ipam-daemon/api-types.ts';
import { hostVethName } from '../../../../src/netutils/names.ts';
import type { PodHostRoute } from '../../../../src/netutils/pod-routes.ts';
import { OWNER_TAGS } from '../../../../src/providers/types.ts';
import { MemoryProvider } from '../../../fakes/memory-provider.ts';
import { startHarness } from '../harness.ts';

const key = (n: number) => ({ containerId: `c${n}`, ifName: 'eth0' });
const SUBNET_A = { id: 'subnet-aaaa0001', cidr: '10.1.0.0/24' };
const SUBNET_B = { id: 'subnet-bbbb0002', cidr: '10.1.1.0/24' };
const SUBNET_C = { id: 'subnet-cccc0003', cidr: '10.1.2.0/24' };
const routeOf = (a: Allocation): PodHostRoute => ({
  ip: a.ip,
  hostVeth: hostVethName(a.containerId, a.ifName),
});

/** A first daemon (pod subnet B) runs 3 pods on its ENI in B, then stops. */
async function podsInSubnetB() {
  const provider = new MemoryProvider({ subnets: [SUBNET_A, SUBNET_B, SUBNET_C], maxInterfaces: 4 });
  const first = await startHarness({ provider, daemon: { podSubnetIds: [SUBNET_B.id] } });
  await first.daemon.reconcileNow();
  const pods: Allocation[] = [];
  for (let n = 0; n < 3; n++) pods.push(await first.daemon.allocate(key(n)));
  await first.daemon.stop();
  const oldEni = pods[0]!.interfaceId;
  assert.ok(pods.every((p) => p.interfaceId === oldEni && p.subnetCidr === SUBNET_B.cidr));
  return { provider, first, pods, oldEni };
}

const attached = (p: MemoryProvider, id: string) => p.interfaces.some((i) => i.id === id);

describe('interfaces: never delete one a pod uses; drain those outside the pod subnets', () => {
  for (const knownBy of ['checkpoint', 'host routes'] as const) {
    test(`pod subnets change B -> C: the old ENI keeps its pods (known by ${knownBy}), gets no new one, and is deleted after the last is gone`, async () => {
      const { provider, first, pods, oldEni } = await podsInSubnetB();
      if (knownBy === 'host routes') await rm(first.checkpointPath);
      let routes = pods.map(routeOf);
      const second = await startHarness({
        provider,
        dir: first.dir,
        daemon: { podSubnetIds: [SUBNET_C.id], podRoutes: async () => routes },
      });
      try {
        assert.deepEqual(
          second.daemon
            .list()
            .map((a) => a.ip)
            .sort(),
          pods.map((p) => p.ip).sort(),
          'the running pods keep their IPs',
        );
        await second.daemon.reconcileNow();
        second.clock.advance(600_000);
        await second.daemon.reconcileNow();
        assert.ok(attached(provider, oldEni), 'not deleted while pods use it');
        const fresh: Allocation[] = [];
        for (let n = 10; n < 20; n++) fresh.push(await second.daemon.allocate(key(n)));
        assert.deepEqual(
          fresh.filter((a) => a.subnetCidr !== SUBNET_C.cidr),
          [],
          'new pods get IPs in the new pod subnet only',
        );
        const old = second.daemon.status().interfaces.find((i) => i.interfaceId === oldEni);
        assert.equal(old?.assigned, 3);
        // Two pods go: still attached.
        for (const p of pods.slice(0, 2)) {
          routes = routes.filter((r) => r.ip !== p.ip);
          await second.daemon.release({ containerId: p.containerId, ifName: p.ifName });
        }
        second.clock.advance(60_000);
        await second.daemon.reconcileNow();
        await second.daemon.reconcileNow();
        assert.ok(attached(provider, oldEni), 'one pod is still on it');
        // The last one goes: deleted once its IP has cooled down.
        const last = pods[2]!;
        routes = routes.filter((r) => r.ip !== last.ip);
        await second.daemon.release({ containerId: last.containerId, ifName: last.ifName });
        await second.daemon.reconcileNow();
        assert.ok(attached(provider, oldEni), 'cooling: not yet');
        second.clock.advance(60_000);
        await second.daemon.reconcileNow();
        await second.daemon.reconcileNow();
        assert.equal(attached(provider, oldEni), false, 'deleted after its last pod is gone');
      } finally {
        await second.close();
        await first.close();
      }
    });
  }

  test('an interface tagged by vpc-ipam for another cluster is neither used nor deleted', async () => {
    const provider = new MemoryProvider();
    const foreign = provider.addInterfaceOutOfBand({
      secondaryIps: 0,
      tags: {
        [OWNER_TAGS.managedBy]: 'vpc-ipam',
        [OWNER_TAGS.clusterName]: 'other-cluster',
        [OWNER_TAGS.instanceId]: provider.node.instanceId,
      },
    });
    const withIps = provider.addInterfaceOutOfBand({
      secondaryIps: 3,
      tags: { [OWNER_TAGS.managedBy]: 'vpc-ipam', [OWNER_TAGS.clusterName]: 'other-cluster' },
    });
    const h = await startHarness({ provider });
    try {
      await h.daemon.reconcileNow();
      h.clock.advance(600_000);
      await h.daemon.reconcileNow();
      assert.ok(attached(provider, foreign.id), 'an empty foreign interface is not deleted');
      assert.ok(attached(provider, withIps.id));
      const st = h.daemon.status();
      assert.equal(st.interfaces.find((i) => i.interfaceId === withIps.id)?.total, 0, 'lends no IP');
      assert.equal(provider.calls.deleteInterface ?? 0, 0);
    } finally {
      await h.close();
    }
  });

  test("a free IP that a pod's host route uses is neither deleted with its interface nor given back", async () => {
    const provider = new MemoryProvider();
    // Ours, attached before this daemon started, with free IPs the pool does not need.
    const eni = provider.addInterfaceOutOfBand({
      secondaryIps: 2,
      tags: {
        [OWNER_TAGS.managedBy]: 'vpc-ipam',
        [OWNER_TAGS.clusterName]: 'test',
        [OWNER_TAGS.instanceId]: provider.node.instanceId,
      },
    });
    let routes: PodHostRoute[] = [];
    const h = await startHarness({
      provider,
      pool: { warmEniTarget: 0, shrinkDelayMs: 60_000 },
      daemon: { podRoutes: async () => routes },
    });
    try {
      // A pod the daemon lost track of (say, wired by an older daemon) uses one of them.
      const used = eni.secondaryIps[0]!;
      routes = [{ ip: used, hostVeth: 'vpc0123456789a' }];
      await h.daemon.reconcileNow();
      h.clock.advance(600_000);
      await h.daemon.reconcileNow();
      await h.daemon.reconcileNow();
      assert.ok(attached(provider, eni.id), "the interface carrying the pod's address stays");
      const cloudIps = provider.interfaces.find((i) => i.id === eni.id)?.secondaryIps ?? [];
      assert.ok(cloudIps.includes(used), 'the IP stays on it');
      assert.ok(
        h.daemon.list().some((a) => a.ip === used && a.recoveredFrom === 'vpc0123456789a'),
        'held for the pod',
      );
      // The route goes: the hold is released, and the interface can go.
      routes = [];
      for (let round = 0; round < 3; round++) {
        await h.daemon.reconcileNow();
        h.clock.advance(600_000);
      }
      await h.daemon.reconcileNow();
      assert.equal(h.daemon.list().length, 0);
      assert.equal(attached(provider, eni.id), false);
    } finally {
      await h.close();
    }
  });
  test("IP mode: free IPs a pod's host route uses are not given back to the cloud", async () => {
    const provider = new MemoryProvider({ primarySecondaryIps: 5 });
    const primaryIps = [...(provider.interfaces[0]?.secondaryIps ?? [])];
    let routes: PodHostRoute[] = [];
    const h = await startHarness({
      provider,
      pool: { warmEniTarget: 0, warmIpTarget: 1, shrinkDelayMs: 60_000 },
      daemon: { podRoutes: async () => routes },
    });
    try {
      routes = primaryIps.map((ip, n) => ({ ip, hostVeth: `vpc0000000000${n}` }));
      h.clock.advance(120_000);
      await h.daemon.reconcileNow();
      await h.daemon.reconcileNow();
      assert.deepEqual(provider.interfaces[0]?.secondaryIps.slice().sort(), primaryIps.slice().sort());
      assert.equal(provider.calls.unassignIps ?? 0, 0, 'nothing was given back');
      assert.ok(h.daemon.list().length >= 4, 'the IPs picked for the shrink are held for their pods');
    } finally {
      await h.close();
    }
  });
});
