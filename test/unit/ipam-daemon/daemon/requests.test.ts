// The request path's bounds (daemon/requests.ts): requests waiting for the pool to grow are capped
// (each holds a connection and drives growth), so a flood of unique keys is refused at once; a
// release that names an IP frees it only while the key still holds that IP.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NoIpError } from '../../../../src/ipam-daemon/daemon.ts';
import { MemoryProvider } from '../../../fakes/memory-provider.ts';
import { startHarness } from '../harness.ts';

const pod = (n: number) => ({
  containerId: `c${n}`,
  ifName: 'eth0',
  podNamespace: 'default',
  podName: `p${n}`,
});

describe('requests', () => {
  test('waiting allocations are capped: one more is refused at once, retryable', async () => {
    // A slow cloud and an empty pool: every allocation has to wait for the grow.
    const provider = new MemoryProvider({ latencyMs: 600 });
    const h = await startHarness({
      provider,
      realClock: true,
      pool: { allocateWaitMs: 5_000 },
      daemon: { maxWaiters: 3 },
    });
    try {
      const waiting = [0, 1, 2].map((n) => h.daemon.allocate(pod(n)));
      await new Promise((r) => setTimeout(r, 50));
      const started = Date.now();
      await assert.rejects(h.daemon.allocate(pod(3)), (e: unknown) => {
        assert.ok(e instanceof NoIpError);
        assert.match(e.message, /3 allocations are already waiting/);
        return true;
      });
      // Below the provider's 600 ms latency: the refusal did not wait for a grow.
      assert.ok(Date.now() - started < 500, 'refused without waiting');
      const served = await Promise.all(waiting);
      assert.equal(new Set(served.map((a) => a.ip)).size, 3, 'the waiting three are served');
    } finally {
      await h.close();
    }
  });

  test('a release naming an IP frees it only while the key still holds that IP', async () => {
    const h = await startHarness();
    try {
      await h.daemon.reconcileNow();
      const first = await h.daemon.allocate(pod(1));
      // A failed ADD's own release, after a DEL freed the IP and a new ADD of the key took another.
      await h.daemon.release(pod(1));
      h.clock.advance(60_000); // past the cooldown: the old IP may go to anyone
      await h.daemon.reconcileNow();
      const other = await h.daemon.allocate(pod(2)); // takes an IP out of the way
      const retried = await h.daemon.allocate(pod(1));
      assert.notEqual(retried.ip, first.ip, 'precondition: the retried ADD holds another IP');
      assert.deepEqual(await h.daemon.release({ ...pod(1), ip: first.ip }), { released: null });
      assert.equal(h.daemon.get(pod(1))?.ip, retried.ip, 'the retried ADD keeps its IP');
      assert.deepEqual(await h.daemon.release({ ...pod(1), ip: retried.ip }), { released: retried.ip });
      assert.equal(h.daemon.get(pod(1)), null);
      assert.ok(other.ip);
    } finally {
      await h.close();
    }
  });
});
