// Subnet free counts in the daemon: grow batches are capped at them (pool engine), so a subnet that
// once said "full" must have its count re-read when its backoff ends, or it is never used again.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryProvider } from '../../../fakes/memory-provider.ts';
import { startHarness } from '../harness.ts';

describe('Daemon: subnet free counts', () => {
  test('after a subnet-full backoff the free count is re-read and the subnet is used again', async () => {
    // An Azure-like node: one NIC of 256 IPs, no NIC can be added.
    const provider = new MemoryProvider({ maxInterfaces: 1, ipsPerInterface: 256 });
    provider.failNext.assignIps = ['subnet-full'];
    const h = await startHarness({
      provider,
      pool: {
        warmEniTarget: 0,
        warmIpTarget: 4,
        minGrowStep: 1,
        subnetBackoffMs: 300_000,
        allocateWaitMs: 50,
      },
    });
    try {
      await h.daemon.reconcileNow();
      assert.equal(h.daemon.status().total, 0, 'the first assign was refused: subnet full');
      assert.match(h.daemon.status().noIpReason ?? '', /^subnet-full/);
      const described = provider.calls.describeSubnets ?? 0;
      h.clock.advance(299_000);
      await h.daemon.reconcileNow();
      assert.equal(h.daemon.status().total, 0, 'still backing off');
      assert.equal(provider.calls.describeSubnets ?? 0, described);
      h.clock.advance(2_000);
      await h.daemon.reconcileNow();
      assert.equal(provider.calls.describeSubnets, described + 1, 're-read once when the backoff ended');
      assert.equal(h.daemon.status().total, 4, 'the subnet is used again');
      const a = await h.daemon.allocate({ containerId: 'c1', ifName: 'eth0' });
      assert.equal(a.subnetCidr, '10.1.0.0/24');
    } finally {
      await h.close();
    }
  });
});
