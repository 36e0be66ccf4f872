// The pod watcher's actions on a fixed pod view (a stand-in for the Reflector, which has its own
// tests against the real kube-apiserver in test/integration/ipam-daemon/k8s/): it releases through
// the daemon's releaseIfUnwired, so a pod the API server no longer shows but whose veth or host
// route is still on the node keeps its IP, and it remembers a bounded number of releases.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import type { GcAllocation } from '../../../../src/ipam-daemon/k8s/pod-gc-policy.ts';
import {
  type AllocationSource,
  PodWatcher,
  RELEASED_KEPT,
} from '../../../../src/ipam-daemon/k8s/pod-watcher.ts';
import type { Reflector } from '../../../../src/ipam-daemon/k8s/reflector.ts';
import { hostVethName } from '../../../../src/netutils/names.ts';
import { quietLogger, startWiredHarness } from '../harness.ts';

/** A live view with no pods at all: every allocation's pod is gone. */
const noPods = {
  start() {},
  async stop() {},
  items: () => [] as V1Pod[],
  connectedSince: 0,
} as unknown as Reflector<V1Pod>;

const watcher = (allocations: AllocationSource, now: () => number) =>
  new PodWatcher({
    nodeName: 'n1',
    allocations,
    logger: quietLogger,
    reflector: noPods,
    policy: { graceMs: 0, settleMs: 0 },
    now,
  });

describe('pod watcher', () => {
  test('a gone pod whose host route or veth is still on the node keeps its IP; released once they go', async () => {
    const { h, wiring } = await startWiredHarness();
    try {
      await h.daemon.reconcileNow();
      const a = await h.daemon.allocate({
        containerId: 'c0',
        ifName: 'eth0',
        podNamespace: 'default',
        podName: 'web-0',
      });
      const w = watcher(h.daemon, () => h.clock.now() + 1000);
      wiring.routes = [{ ip: a.ip, hostVeth: hostVethName('c0', 'eth0') }];
      await w.tick();
      assert.equal(h.daemon.list().length, 1, 'route still there: kept');
      wiring.routes = [];
      wiring.links = [hostVethName('c0', 'eth0')];
      await w.tick();
      assert.equal(h.daemon.list().length, 1, 'veth still there: kept');
      assert.deepEqual(w.released, []);
      wiring.links = [];
      await w.tick();
      assert.equal(h.daemon.list().length, 0, 'released once unwired');
      assert.deepEqual(w.released, [{ containerId: 'c0', ifName: 'eth0' }]);
    } finally {
      await h.close();
    }
  });

  test(`remembers at most ${RELEASED_KEPT} releases`, async () => {
    const items: GcAllocation[] = Array.from({ length: RELEASED_KEPT + 500 }, (_, n) => ({
      containerId: `c${n}`,
      ifName: 'eth0',
      ip: `10.0.${n >> 8}.${n & 255}`,
      podNamespace: 'default',
      podName: `p${n}`,
      assignedAt: new Date(0).toISOString(),
    }));
    const source: AllocationSource = {
      list: () => items,
      releaseIfUnwired: async (k) => ({
        released: items.find((a) => a.containerId === k.containerId)?.ip ?? null,
      }),
    };
    const w = watcher(source, () => 1_000_000);
    await w.tick();
    assert.equal(w.released.length, RELEASED_KEPT);
    assert.equal(w.released.at(-1)?.containerId, `c${RELEASED_KEPT + 499}`, 'the latest are kept');
  });
});
