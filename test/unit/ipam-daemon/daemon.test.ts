import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { describe, test } from 'node:test';
import type { Allocation } from '../../../src/ipam-daemon/api-types.ts';
import { loadCheckpoint } from '../../../src/ipam-daemon/checkpoint.ts';
import { NoIpError } from '../../../src/ipam-daemon/daemon.ts';
import { MemoryProvider } from '../../fakes/memory-provider.ts';
import { startHarness } from './harness.ts';

const key = (n: number) => ({ containerId: `c${n}`, ifName: 'eth0' });

async function expectNoIp(p: Promise<unknown>, reason: string): Promise<NoIpError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof NoIpError, String(err));
    assert.equal(err.reason, reason, err.message);
    return err;
  }
  assert.fail(`expected NoIpError ${reason}`);
}

describe('Daemon on the in-memory cloud', () => {
  test('a fresh m5.large fills the primary (WARM_ENI_TARGET=1), grows to 27 and then refuses with instance-limit', async () => {
    const h = await startHarness({ pool: { allocateWaitMs: 300 } });
    try {
      await h.daemon.reconcileNow();
      assert.deepEqual(
        h.provider.interfaces.map((i) => i.secondaryIps.length),
        [9],
      );
      const events: string[] = [];
      h.daemon.on('allocated', () => events.push('allocated'));
      h.daemon.on('no-ip', (e: { reason: string }) => events.push(`no-ip:${e.reason}`));
      const ips = new Set<string>();
      for (let n = 0; n < 27; n++) ips.add((await h.daemon.allocate(key(n))).ip);
      assert.equal(ips.size, 27, 'every pod has its own IP');
      await h.daemon.reconcileNow();
      assert.equal(h.provider.interfaces.length, 3);
      const err = await expectNoIp(h.daemon.allocate(key(99)), 'instance-limit');
      assert.match(err.message, /m5\.large holds at most 3 interfaces/);
      assert.equal(events.filter((e) => e === 'allocated').length, 27);
      assert.deepEqual(events.slice(-1), ['no-ip:instance-limit']);
      const st = h.daemon.status();
      assert.equal(st.assigned, 27);
      assert.equal(st.maxPods, 29);
      assert.match(st.noIpReason ?? '', /^instance-limit/);
    } finally {
      await h.close();
    }
  });

  test('an allocation on an empty pool waits for the grow and gets an IP', async () => {
    const provider = new MemoryProvider({ latencyMs: 50 });
    const h = await startHarness({
      provider,
      pool: { warmEniTarget: 0, allocateWaitMs: 3000 },
      realClock: true,
    });
    try {
      const a = await h.daemon.allocate(key(1));
      assert.ok(provider.allSecondaryIps().includes(a.ip));
    } finally {
      await h.close();
    }
  });

  test('a burst of 20 allocations on an empty pool costs one round of cloud calls', async () => {
    const provider = new MemoryProvider({ latencyMs: 20 });
    const h = await startHarness({
      provider,
      pool: { warmEniTarget: 0, warmIpTarget: 0, minimumIpTarget: 1, allocateWaitMs: 3000 },
      realClock: true,
    });
    try {
      await h.daemon.reconcileNow();
      const before = { ...provider.calls };
      const all = await Promise.all(Array.from({ length: 20 }, (_, n) => h.daemon.allocate(key(n))));
      assert.equal(new Set(all.map((a) => a.ip)).size, 20);
      const assigns = (provider.calls.assignIps ?? 0) - (before.assignIps ?? 0);
      const creates = (provider.calls.createInterface ?? 0) - (before.createInterface ?? 0);
      assert.ok(assigns + creates <= 4, `assign ${assigns} + create ${creates} calls for 20 pods`);
    } finally {
      await h.close();
    }
  });

  test('the wait is bounded: a throttled cloud answers NO_IP throttled', async () => {
    const provider = new MemoryProvider();
    provider.failNext.assignIps = ['throttle', 'throttle', 'throttle'];
    const h = await startHarness({
      provider,
      pool: { warmEniTarget: 0, allocateWaitMs: 200 },
      realClock: true,
    });
    try {
      const t0 = Date.now();
      const err = await expectNoIp(h.daemon.allocate(key(1)), 'throttled');
      assert.ok(Date.now() - t0 < 2000);
      assert.match(err.message, /RequestLimitExceeded/);
    } finally {
      await h.close();
    }
  });

  test('a full subnet is backed off and the next POD_SUBNET_IDS subnet is used', async () => {
    const provider = new MemoryProvider({
      primarySecondaryIps: 9,
      subnets: [
        { id: 'subnet-aaaa0001', cidr: '10.1.0.0/24' },
        { id: 'subnet-bbbb0002', cidr: '10.1.1.0/24' },
      ],
    });
    provider.failNext.createInterface = ['subnet-full'];
    const h = await startHarness({
      provider,
      pool: { warmEniTarget: 0, allocateWaitMs: 3000 },
      realClock: true,
      daemon: { podSubnetIds: ['subnet-aaaa0001', 'subnet-bbbb0002'] },
    });
    try {
      for (let n = 0; n < 9; n++) await h.daemon.allocate(key(n));
      const a = await h.daemon.allocate(key(10));
      assert.equal(a.subnetCidr, '10.1.1.0/24', 'the second subnet took over');
      assert.equal(a.routeTable, a.deviceIndex + 1);
      assert.equal(a.gateway, '10.1.1.1');
    } finally {
      await h.close();
    }
  });

  test('released IPs cool down before reuse, then the pool shrinks after the delay', async () => {
    const h = await startHarness({
      pool: { warmEniTarget: 0, cooldownMs: 30_000, shrinkDelayMs: 60_000, allocateWaitMs: 2000 },
    });
    try {
      await h.daemon.reconcileNow();
      const ips: string[] = [];
      for (let n = 0; n < 12; n++) ips.push((await h.daemon.allocate(key(n))).ip);
      await h.daemon.reconcileNow();
      assert.equal(h.provider.interfaces.length, 2);
      for (let n = 0; n < 12; n++) await h.daemon.release(key(n));
      let st = h.daemon.status();
      assert.equal(st.cooling, 12);
      assert.equal(st.assigned, 0);
      // A new pod during the cooldown never gets a just-released IP.
      const fresh = await h.daemon.allocate(key(100));
      assert.ok(!ips.includes(fresh.ip), 'a cooling IP was reused');
      await h.daemon.release(key(100));
      h.clock.advance(30_001);
      await h.daemon.reconcileNow();
      st = h.daemon.status();
      assert.equal(st.cooling, 0);
      assert.equal(h.provider.interfaces.length, 2, 'no shrink before the shrink delay');
      h.clock.advance(60_001);
      await h.daemon.reconcileNow();
      assert.equal(h.provider.interfaces.length, 1, 'the empty secondary interface was deleted');
      assert.equal(h.daemon.status().total, 9);
    } finally {
      await h.close();
    }
  });

  test('concurrent ADD/DEL for the same key: serialized, never two keys on one IP', async () => {
    const h = await startHarness({ pool: { cooldownMs: 0, allocateWaitMs: 2000 } });
    try {
      await h.daemon.reconcileNow();
      const ops: Array<Promise<unknown>> = [];
      const last = new Map<string, 'add' | 'del'>();
      let seed = 42;
      const rnd = () => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      for (let n = 0; n < 400; n++) {
        const k = key(Math.floor(rnd() * 6));
        const op = rnd() < 0.5 ? 'add' : 'del';
        last.set(k.containerId, op);
        ops.push(op === 'add' ? h.daemon.allocate(k) : h.daemon.release(k));
      }
      await Promise.all(ops);
      const list = h.daemon.list();
      const held = new Set(list.map((a) => a.containerId));
      for (const [cid, op] of last) assert.equal(held.has(cid), op === 'add', `${cid}: last op was ${op}`);
      assert.equal(new Set(list.map((a) => a.ip)).size, list.length, 'an IP is held by two keys');
      // The checkpoint (snapshot + journal, as a restart reads it) agrees with memory.
      const cp = await loadCheckpoint(h.checkpointPath);
      assert.equal(cp.kind, 'ok');
      assert.deepEqual(
        (cp.kind === 'ok' ? cp.data.allocations : [])
          .map((a: { containerId: string; ip: string }) => `${a.containerId}=${a.ip}`)
          .sort(),
        list.map((a) => `${a.containerId}=${a.ip}`).sort(),
      );
    } finally {
      await h.close();
    }
  });

  test('restart: allocations come back from the checkpoint; cloud drift is repaired', async () => {
    const first = await startHarness();
    const provider = first.provider;
    await first.daemon.reconcileNow();
    const held: Allocation[] = [];
    for (let n = 0; n < 5; n++) held.push(await first.daemon.allocate(key(n)));
    await first.daemon.release(key(4));
    await first.daemon.stop();
    // Out-of-band: someone removed c0's IP from the interface, and added one we never saw.
    const primary = provider.interfaces[0];
    assert.ok(primary);
    primary.secondaryIps = primary.secondaryIps.filter((ip) => ip !== held[0]?.ip);
    primary.secondaryIps.push('10.1.0.250');
    const second = await startHarness({ provider, dir: first.dir });
    try {
      const list = second.daemon.list();
      assert.deepEqual(
        list.map((a) => a.containerId).sort(),
        ['c1', 'c2', 'c3'],
        'c0 was dropped: its IP is gone',
      );
      for (const a of list) assert.equal(a.ip, held.find((h) => h.containerId === a.containerId)?.ip);
      const st = second.daemon.status();
      assert.equal(st.cooling, 1, 'the released IP is still cooling');
      const again = await second.daemon.allocate(key(2));
      assert.equal(again.ip, held[2]?.ip, 'ADD after restart returns the same IP');
    } finally {
      await second.close();
      await first.close();
    }
  });

  test('a corrupt checkpoint is moved aside and the pool rebuilt from the cloud', async () => {
    const first = await startHarness();
    await first.daemon.reconcileNow();
    await first.daemon.allocate(key(1));
    await first.daemon.stop();
    const good = await readFile(first.checkpointPath, 'utf8');
    await writeFile(first.checkpointPath, good.slice(0, Math.floor(good.length / 2)));
    const second = await startHarness({ provider: first.provider, dir: first.dir });
    try {
      assert.equal(second.daemon.list().length, 0);
      // The first daemon may have grown the pool before it stopped: count what the cloud has.
      assert.equal(
        second.daemon.status().total,
        first.provider.allSecondaryIps().length,
        'every IP on the interfaces is known (free)',
      );
      const names = await readdir(dirname(first.checkpointPath));
      assert.ok(
        names.some((n) => n.startsWith('checkpoint.json.corrupt-')),
        names.join(','),
      );
      const fresh = JSON.parse(await readFile(first.checkpointPath, 'utf8'));
      assert.equal(fresh.version, 1, 'a fresh, valid checkpoint was written');
    } finally {
      await second.close();
      await first.close();
    }
  });

  test('a failed checkpoint write fails the allocation and leaks nothing', async () => {
    let fail = false;
    const h = await startHarness({
      daemon: {
        beforeCheckpointRename: () => {
          if (fail) throw new Error('disk full');
        },
        beforeJournalSync: () => {
          if (fail) throw new Error('disk full');
        },
      },
    });
    try {
      await h.daemon.reconcileNow();
      fail = true;
      await assert.rejects(h.daemon.allocate(key(1)), /disk full/);
      assert.equal(h.daemon.list().length, 0);
      assert.equal(h.daemon.status().free, 9, 'the IP went straight back to free');
      fail = false;
      const a = await h.daemon.allocate(key(1));
      assert.ok(a.ip);
    } finally {
      await h.close();
    }
  });

  test('node setup runs before IPs of a new interface are handed out', async () => {
    const calls: number[] = [];
    let failSetup = true;
    const h = await startHarness({
      pool: { warmEniTarget: 0, allocateWaitMs: 300 },
      realClock: true,
      providerOptions: { primarySecondaryIps: 9 },
      daemon: {
        nodeSetup: {
          async reconcile(_node, interfaces) {
            calls.push(interfaces.length);
            if (failSetup && interfaces.length > 1) throw new Error('ip link failed');
          },
        },
      },
    });
    try {
      for (let n = 0; n < 9; n++) await h.daemon.allocate(key(n));
      // The 10th needs a new interface; its setup fails, so its IPs must not be used.
      const err = await expectNoIp(h.daemon.allocate(key(9)), 'pool-growing');
      assert.match(err.message, /node setup failed for interface\(s\) eni-\w+ \(ip link failed\)/);
      assert.equal(h.provider.interfaces.length, 2);
      failSetup = false;
      const a = await h.daemon.allocate(key(9));
      assert.equal(a.deviceIndex, 1);
      assert.ok(calls.length >= 3, `setup calls ${calls}`);
    } finally {
      await h.close();
    }
  });

  test('a burst on a node whose new interfaces are still in node setup: every interface the node has room for is created meanwhile, none of their IPs is handed out before setup, and a waiting pod hears "retry", not "instance limit"', async () => {
    let visible = false;
    const h = await startHarness({
      pool: { warmEniTarget: 1, allocateWaitMs: 300, burstWindowMs: 10_000, shrinkDelayMs: 60_000 },
      realClock: true,
      providerOptions: { primarySecondaryIps: 9 },
      daemon: {
        nodeSetup: {
          async reconcile(_node, interfaces) {
            if (interfaces.length > 1 && !visible)
              throw new Error('attached interface(s) not visible on the node yet');
          },
        },
      },
    });
    try {
      await h.daemon.reconcileNow();
      // 9 pods within a moment on an m5.large-sized node (3 interfaces x 9 pod IPs): the primary's.
      await Promise.all(Array.from({ length: 9 }, (_, n) => h.daemon.allocate(key(n))));
      // The 10th waits while the second interface is in setup; the pool keeps growing meanwhile
      // (it counts the one in setup as capacity on the way) and the node fills its 3 interfaces.
      await expectNoIp(h.daemon.allocate(key(9)), 'pool-growing');
      await h.daemon.reconcileNow();
      assert.equal(h.provider.interfaces.length, 3);
      // Full node, two interfaces in setup: still "retry", never "instance limit".
      const err = await expectNoIp(h.daemon.allocate(key(9)), 'pool-growing');
      assert.match(err.message, /become usable once they show up in the node|node setup failed/);
      visible = true;
      const a = await h.daemon.allocate(key(9));
      assert.equal(a.deviceIndex, 1);
    } finally {
      await h.close();
    }
  });

  test('an interface not yet visible in the node is set up again within a second, not at the next tick', async () => {
    let failures = 0;
    const h = await startHarness({
      // reconcile tick 60 s: only the setup retry can make the new interface usable in time
      pool: { warmEniTarget: 0, allocateWaitMs: 3000, reconcileIntervalMs: 60_000 },
      realClock: true,
      providerOptions: { primarySecondaryIps: 9 },
      daemon: {
        nodeSetup: {
          async reconcile(_node, interfaces) {
            // The hot-plugged NIC appears in the node after two looks (as after a second or so).
            if (interfaces.length > 1 && failures < 2) {
              failures++;
              throw new Error('attached interface(s) not visible on the node yet');
            }
          },
        },
      },
    });
    try {
      for (let n = 0; n < 9; n++) await h.daemon.allocate(key(n));
      const started = Date.now();
      const a = await h.daemon.allocate(key(9));
      assert.equal(a.deviceIndex, 1);
      assert.equal(failures, 2);
      assert.ok(Date.now() - started < 2500, `served after ${Date.now() - started} ms`);
    } finally {
      await h.close();
    }
  });

  test("stop also stops node setup's own timer (its drift repair)", async () => {
    let stops = 0;
    const h = await startHarness({
      daemon: { nodeSetup: { reconcile: async () => {}, stop: () => void stops++ } },
    });
    await h.daemon.reconcileNow();
    assert.equal(stops, 0);
    await h.close();
    assert.equal(stops, 1);
  });

  test('stop drains: waiting allocations are refused as retryable, later calls too', async () => {
    const h = await startHarness({
      pool: { warmEniTarget: 0, allocateWaitMs: 5000 },
      providerOptions: { latencyMs: 200 },
      realClock: true,
    });
    const pending = expectNoIp(h.daemon.allocate(key(1)), 'shutting-down');
    await new Promise((r) => setTimeout(r, 20));
    await h.daemon.stop();
    await pending;
    await expectNoIp(h.daemon.allocate(key(2)), 'shutting-down');
    await h.close();
  });
});
