// ENABLE_SUBNET_DISCOVERY in the daemon (issue 13): discovered pod subnets are re-read and ordered
// most-free-first before each new interface, as the AWS VPC CNI does before each ENI; configured
// ones (POD_SUBNET_IDS) keep the user's order.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryProvider } from '../../../fakes/memory-provider.ts';
import { startHarness } from '../harness.ts';

async function firstNewInterfaceSubnet(rank: boolean): Promise<{ subnet: string; describes: number }> {
  const provider = new MemoryProvider({
    subnets: [
      { id: 'subnet-aaaa0001', cidr: '10.1.0.0/24' },
      { id: 'subnet-bbbb0002', cidr: '10.2.0.0/28' },
    ],
    primarySecondaryIps: 9, // the primary interface is full (10 IPs per interface)
  });
  const h = await startHarness({
    provider,
    pool: { warmEniTarget: 0, warmIpTarget: 15, minGrowStep: 1 },
    // Ranked at start when the /28 had more room, say; now the /24 has far more.
    daemon: {
      podSubnetIds: ['subnet-bbbb0002', 'subnet-aaaa0001'],
      ...(rank ? { rankSubnetsByFreeIps: true } : {}),
    },
  });
  try {
    await h.daemon.reconcileNow();
    const created = provider.interfaces.filter((i) => i.deviceIndex > 0);
    assert.ok(created.length > 0, 'an interface was created');
    return { subnet: created[0]!.subnetId, describes: provider.calls.describeSubnets ?? 0 };
  } finally {
    await h.close();
  }
}

describe('Daemon: discovered subnets ranked by free addresses', () => {
  test('with ranking the new interface goes to the subnet with the most free addresses', async () => {
    const r = await firstNewInterfaceSubnet(true);
    assert.equal(r.subnet, 'subnet-aaaa0001');
    const plain = await firstNewInterfaceSubnet(false);
    assert.equal(r.describes, plain.describes + 1, 'free counts re-read once, before the create');
  });

  test('the grows of one burst share one read: counts ranked within 10 s are not re-read', async () => {
    const provider = new MemoryProvider({
      subnets: [
        { id: 'subnet-aaaa0001', cidr: '10.1.0.0/24' },
        { id: 'subnet-bbbb0002', cidr: '10.2.0.0/24' },
      ],
      primarySecondaryIps: 9,
      maxInterfaces: 4,
    });
    const h = await startHarness({
      provider,
      pool: { warmEniTarget: 1 },
      daemon: { podSubnetIds: ['subnet-aaaa0001', 'subnet-bbbb0002'], rankSubnetsByFreeIps: true },
    });
    let pods = 0;
    const grow = async (n: number) => {
      for (let k = 0; k < n; k++) {
        await h.daemon.allocate({ containerId: `c${pods++}${'0'.repeat(20)}`, ifName: 'eth0' });
      }
      await h.daemon.reconcileNow();
    };
    const reads = () => provider.calls.describeSubnets ?? 0;
    try {
      await h.daemon.reconcileNow();
      await grow(1); // WARM_ENI_TARGET=1 over 1 pod: a second interface, subnets ranked first
      const first = reads();
      assert.equal(provider.interfaces.length, 2);
      h.clock.advance(5_000);
      await grow(9); // a third interface 5 s later: the same ranking serves
      assert.equal(provider.interfaces.length, 3);
      assert.equal(reads(), first, 'no re-read within 10 s');
      h.clock.advance(10_000);
      await grow(9); // a fourth 15 s after the read: read again
      assert.equal(provider.interfaces.length, 4);
      assert.equal(reads(), first + 1);
    } finally {
      await h.close();
    }
  });

  test('without it (POD_SUBNET_IDS) the configured order is kept', async () => {
    const r = await firstNewInterfaceSubnet(false);
    assert.equal(r.subnet, 'subnet-bbbb0002');
  });
});
