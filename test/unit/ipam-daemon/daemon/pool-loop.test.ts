// The pool loop on a cordoned node (AWS_MANAGE_ENIS_NON_SCHEDULABLE): no interface is created or
// deleted while the Node is unschedulable, unless the variable says to manage them anyway.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NoIpError } from '../../../../src/ipam-daemon/daemon.ts';
import { startHarness } from '../harness.ts';

const pod = (n: number) => ({
  containerId: `c${n}`,
  ifName: 'eth0',
  podNamespace: 'default',
  podName: `p${n}`,
});

describe('pool loop: cordoned node', () => {
  test('no new interface while cordoned (node-cordoned), none deleted while it drains; uncordoned it grows', async () => {
    const h = await startHarness({ pool: { warmEniTarget: 0, allocateWaitMs: 200 } });
    try {
      h.daemon.setNodeUnschedulable(true);
      await h.daemon.reconcileNow();
      for (let n = 0; n < 9; n++) await h.daemon.allocate(pod(n)); // the primary's 9
      await assert.rejects(
        h.daemon.allocate(pod(9)),
        (e: unknown) => e instanceof NoIpError && e.reason === 'node-cordoned',
      );
      assert.equal(h.provider.calls.createInterface ?? 0, 0);
      h.daemon.setNodeUnschedulable(false);
      const a = await h.daemon.allocate(pod(9));
      assert.equal(a.deviceIndex, 1, 'a new interface once uncordoned');
      // Cordoned again, its pods leave: the now-empty interface stays while the node drains.
      h.daemon.setNodeUnschedulable(true);
      await h.daemon.release(pod(9));
      h.clock.advance(120_000);
      await h.daemon.reconcileNow();
      await h.daemon.reconcileNow();
      assert.equal(h.provider.interfaces.length, 2, 'not deleted while cordoned');
      assert.equal(h.provider.calls.deleteInterface ?? 0, 0);
      h.daemon.setNodeUnschedulable(false);
      await h.daemon.reconcileNow();
      await h.daemon.reconcileNow();
      assert.equal(h.provider.interfaces.length, 1, 'deleted once uncordoned');
    } finally {
      await h.close();
    }
  });

  test('AWS_MANAGE_ENIS_NON_SCHEDULABLE=true: interfaces are managed on a cordoned node too', async () => {
    const h = await startHarness({
      pool: { warmEniTarget: 0, allocateWaitMs: 1000, manageEnisNonSchedulable: true },
    });
    try {
      h.daemon.setNodeUnschedulable(true);
      await h.daemon.reconcileNow();
      for (let n = 0; n < 9; n++) await h.daemon.allocate(pod(n));
      assert.equal((await h.daemon.allocate(pod(9))).deviceIndex, 1);
    } finally {
      await h.close();
    }
  });
});
