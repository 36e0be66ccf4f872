// Cloud changes in flight (daemon/intents.ts) on the in-memory cloud: a failed unassign keeps its
// IPs out of the pool and is sent again; a restart on a checkpoint that holds an unassign or a
// delete intent holds those IPs back and finishes them; the checkpoint's unknown intents are
// dropped; a start-up describe that fails for a passing reason is tried again. The kill -9 cases against LocalStack are in
// test/integration/ipam-daemon/localstack-restart-in-flight.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DaemonCore } from '../../../../src/ipam-daemon/daemon/core.ts';
import { INTENT_RETRY_MS, parseIntent } from '../../../../src/ipam-daemon/daemon/intents.ts';
import { MemoryProvider } from '../../../fakes/memory-provider.ts';
import { startHarness } from '../harness.ts';

const states = (h: Awaited<ReturnType<typeof startHarness>>) =>
  new Map(h.daemon.status().interfaces.flatMap((i) => (i.ips ?? []).map((x) => [x.ip, x.state] as const)));

describe('start-up reads', () => {
  test('a describe that fails for a passing reason (5xx, timeout) is tried again, not fatal', async () => {
    const provider = new MemoryProvider();
    provider.failNext.describeNode = ['error'];
    provider.failNext.listInterfaces = ['throttle'];
    const h = await startHarness({ provider });
    try {
      assert.ok(h.daemon.ready);
      assert.equal(provider.calls.describeNode, 2);
      assert.equal(provider.calls.listInterfaces, 2);
    } finally {
      await h.close();
    }
  });
});

describe('cloud changes in flight', () => {
  test('parseIntent: only the shapes the daemon writes', () => {
    assert.deepEqual(parseIntent({ kind: 'unassign', interfaceId: 'eni-1', ips: ['10.0.0.5'] }), {
      kind: 'unassign',
      interfaceId: 'eni-1',
      ips: ['10.0.0.5'],
    });
    assert.equal(parseIntent({ kind: 'unassign', interfaceId: 'eni-1', ips: [5] }), null);
    assert.equal(parseIntent({ kind: 'delete' }), null);
    assert.equal(parseIntent({ kind: 'reboot', interfaceId: 'eni-1' }), null);
    assert.deepEqual(parseIntent({ kind: 'create', subnetId: 'subnet-1' }), {
      kind: 'create',
      subnetId: 'subnet-1',
    });
  });

  test('a failed unassign keeps its IPs out of the pool and is sent again until it succeeds', async () => {
    const h = await startHarness({
      providerOptions: { primarySecondaryIps: 6 },
      pool: { warmEniTarget: 0, warmIpTarget: 2, shrinkDelayMs: 0 },
    });
    try {
      h.provider.failNext.unassignIps = ['error'];
      await h.daemon.reconcileNow();
      const releasing = [...states(h)].filter(([, s]) => s === 'releasing').map(([ip]) => ip);
      assert.equal(releasing.length, 4, 'the 4 IPs over the warm target wait, not free');
      assert.equal(h.daemon.status().free, 2);
      assert.equal(h.provider.allSecondaryIps().length, 6, 'the cloud still has them');
      h.clock.advance(INTENT_RETRY_MS);
      await h.daemon.reconcileNow();
      assert.equal(h.provider.allSecondaryIps().length, 2, 'sent again: gone from the cloud');
      assert.equal(h.daemon.status().total, 2);
      assert.equal([...states(h).values()].filter((s) => s === 'releasing').length, 0);
    } finally {
      await h.close();
    }
  });

  test('a restart on a checkpoint with an unassign and a delete in flight holds them back and finishes them', async () => {
    const first = await startHarness({
      providerOptions: { primarySecondaryIps: 6 },
      pool: { warmEniTarget: 0, warmIpTarget: 9, shrinkDelayMs: 3_600_000 },
    });
    await first.daemon.reconcileNow();
    const primary = first.provider.interfaces[0]!;
    // A second interface of ours, attached.
    await first.daemon.allocate({ containerId: 'c1', ifName: 'eth0', podNamespace: 'd', podName: 'p1' });
    await first.daemon.reconcileNow();
    const second = first.provider.interfaces.find((i) => i.deviceIndex === 1);
    assert.ok(second, 'the pool made a second interface');
    await first.daemon.release({ containerId: 'c1', ifName: 'eth0' });
    // The pool reserves only free IPs for an unassign.
    const leaving = primary.secondaryIps.filter((ip) => states(first).get(ip) === 'free').slice(0, 3);
    assert.equal(leaving.length, 3);
    // What a daemon killed mid-call leaves in its checkpoint.
    const writer = (first.daemon as unknown as { core: DaemonCore }).core.parts.checkpoint;
    await writer.setIntent('a1', { kind: 'unassign', interfaceId: primary.id, ips: leaving });
    await writer.setIntent('a2', { kind: 'delete', interfaceId: second.id });
    await writer.setIntent('a3', { kind: 'format-disk' });
    await first.daemon.stop();
    const unassigned: string[] = [];
    const unassign = first.provider.unassignIps.bind(first.provider);
    first.provider.unassignIps = async (id: string, ips: string[]) => {
      await unassign(id, ips);
      unassigned.push(...ips);
    };
    const h = await startHarness({
      provider: first.provider,
      dir: first.dir,
      pool: { warmEniTarget: 0, warmIpTarget: 9, shrinkDelayMs: 3_600_000, allocateWaitMs: 0 },
      startInBackground: false,
    });
    try {
      const st = states(h);
      for (const ip of leaving) assert.equal(st.get(ip), 'releasing', `${ip} is held back at start`);
      for (const ip of second.secondaryIps) assert.equal(st.get(ip), 'releasing', `${ip} is held back`);
      // Every free IP handed out now is neither.
      const free = h.daemon.status().free;
      for (let n = 0; n < free; n++) {
        const a = await h.daemon.allocate({
          containerId: `k${n}`,
          ifName: 'eth0',
          podNamespace: 'd',
          podName: `k${n}`,
        });
        assert.ok(!leaving.includes(a.ip) && !second.secondaryIps.includes(a.ip), a.ip);
      }
      await h.daemon.reconcileNow();
      assert.ok(!h.provider.interfaces.some((i) => i.id === second.id), 'the delete was finished');
      // (The pool grew afterwards: the cloud may hand the same addresses back, so look at the calls.)
      assert.deepEqual(unassigned.filter((ip) => leaving.includes(ip)).sort(), leaving.slice().sort());
      assert.equal([...states(h).values()].filter((s) => s === 'releasing').length, 0);
    } finally {
      await h.close();
      await first.close();
    }
  });
});
