// The sweep of host veths a DEL left (daemon/veth-sweep.ts), on the in-memory cloud with an
// injected link table: the IP stays cooling until its old veth is seen gone, only the very veth
// (name AND ifindex) is deleted, and a restarted daemon deletes the veths of our prefix no pod
// holds before it serves. The injected table also makes the deletion fail, which the kernel does not
// do on demand. On real namespaces, through the shim: test/e2e/veth-sweep.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LeftVeth } from '../../../../src/cni/plugin.ts';
import type { VethLinks } from '../../../../src/netutils/host-veths.ts';
import { hostVethName } from '../../../../src/netutils/names.ts';
import { type Harness, startHarness } from '../harness.ts';

/** The node's veth links as the daemon reads and deletes them; `failDel` makes deletion fail. */
function fakeLinks(initial: Array<{ name: string; index: number }> = []) {
  const table = { links: [...initial], failDel: false, deleted: [] as string[] };
  const links: VethLinks = {
    list: async () => table.links.map((l) => ({ ...l })),
    del: async (names) => {
      if (table.failDel) return names.map((n) => `Cannot delete ${n}: Operation not permitted`);
      table.deleted.push(...names);
      table.links = table.links.filter((l) => !names.includes(l.name));
      return [];
    },
  };
  return { table, links };
}

const COOLDOWN = 1000;

/** A daemon with this cooldown whose veth links are the fake's. */
async function sweepHarness(cooldownMs: number) {
  const k = fakeLinks();
  const h = await startHarness({ pool: { cooldownMs }, daemon: { vethLinks: k.links } });
  return { k, h };
}

function stateOf(h: Harness, ip: string): string | undefined {
  return h.daemon
    .status()
    .interfaces?.flatMap((i) => i.ips ?? [])
    .find((s) => s.ip === ip)?.state;
}

/** An allocation, then what a DEL through the shim does: leave the veth, release the IP. */
async function delLeavingVeth(h: Harness, id: string, ifindex: number): Promise<LeftVeth> {
  const a = await h.daemon.allocate({ containerId: id, ifName: 'eth0' });
  const v = { containerId: id, ifName: 'eth0', hostName: hostVethName(id, 'eth0'), ifindex, ip: a.ip };
  h.daemon.veths.leave(v);
  await h.daemon.release({ containerId: id, ifName: 'eth0' });
  return v;
}

describe('veth sweep: a DEL leaves the veth, the IP cools until it is gone', () => {
  test('the IP stays cooling past its cooldown while the old veth exists; free once the sweep deleted it', async () => {
    const { k, h } = await sweepHarness(COOLDOWN);
    try {
      await h.daemon.reconcileNow();
      assert.ok(h.daemon.veths.enabled);
      const v = await delLeavingVeth(h, 'c1', 7);
      k.table.links.push({ name: v.hostName, index: 7 });
      assert.equal(stateOf(h, v.ip), 'cooling');
      k.table.failDel = true;
      h.clock.advance(COOLDOWN * 5);
      await h.daemon.veths.sweep();
      await h.daemon.reconcileNow();
      assert.equal(stateOf(h, v.ip), 'cooling', 'cooldown over, but the veth could not be deleted');
      assert.equal(h.daemon.veths.size, 1);
      k.table.failDel = false;
      h.clock.advance(10_000); // the retry is due
      await h.daemon.veths.sweep();
      await h.daemon.reconcileNow();
      assert.deepEqual(k.table.deleted, [v.hostName]);
      assert.equal(stateOf(h, v.ip), 'free');
      assert.equal(h.daemon.veths.size, 0);
    } finally {
      await h.close();
    }
  });

  test('a veth already gone (netns deleted) is confirmed without deleting anything; not before it is due', async () => {
    const { k, h } = await sweepHarness(COOLDOWN);
    try {
      await h.daemon.reconcileNow();
      const v = await delLeavingVeth(h, 'c2', 9);
      await h.daemon.veths.sweep();
      assert.equal(h.daemon.veths.size, 1, 'not due yet');
      h.clock.advance(COOLDOWN);
      await h.daemon.veths.sweep();
      await h.daemon.reconcileNow();
      assert.deepEqual(k.table.deleted, []);
      assert.equal(h.daemon.veths.size, 0);
      assert.equal(stateOf(h, v.ip), 'free');
    } finally {
      await h.close();
    }
  });

  test('a new veth of the same name (a re-ADD) is not deleted: the ifindex differs', async () => {
    const { k, h } = await sweepHarness(COOLDOWN);
    try {
      await h.daemon.reconcileNow();
      const v = await delLeavingVeth(h, 'c3', 11);
      k.table.links.push({ name: v.hostName, index: 12 });
      h.clock.advance(COOLDOWN);
      await h.daemon.veths.sweep();
      assert.deepEqual(k.table.deleted, []);
      assert.deepEqual(k.table.links, [{ name: v.hostName, index: 12 }]);
      assert.equal(h.daemon.veths.size, 0);
    } finally {
      await h.close();
    }
  });

  test('no cooldown: nothing is left to the sweep (the DEL deletes its veth)', async () => {
    const { h } = await sweepHarness(0);
    try {
      assert.equal(h.daemon.veths.enabled, false);
    } finally {
      await h.close();
    }
  });

  test('restart: veths of our prefix no allocation or route names are deleted before the daemon serves', async () => {
    const first = await startHarness({ pool: { cooldownMs: COOLDOWN } });
    await first.daemon.reconcileNow();
    const kept = await first.daemon.allocate({ containerId: 'live', ifName: 'eth0' });
    const gone = await first.daemon.allocate({ containerId: 'dead', ifName: 'eth0' });
    await first.daemon.release({ containerId: 'dead', ifName: 'eth0' });
    await first.daemon.stop();
    const routed = 'vpc0123456789a';
    const k = fakeLinks([
      { name: hostVethName('live', 'eth0'), index: 3 },
      { name: hostVethName('dead', 'eth0'), index: 4 }, // left by the DEL; the sweep never ran
      { name: routed, index: 5 }, // a running pod's, found by its route
      { name: 'eni0123456789a', index: 6 }, // not our prefix
    ]);
    const second = await startHarness({
      provider: first.provider,
      dir: first.dir,
      pool: { cooldownMs: COOLDOWN },
      daemon: { vethLinks: k.links, podRoutes: async () => [{ ip: '10.99.0.1', hostVeth: routed }] },
    });
    try {
      assert.deepEqual(k.table.deleted, [hostVethName('dead', 'eth0')]);
      assert.equal(second.daemon.get({ containerId: 'live', ifName: 'eth0' })?.ip, kept.ip);
      assert.equal(stateOf(second, gone.ip), 'cooling');
    } finally {
      await second.close();
      await first.close();
    }
  });

  test('restart: when the leftovers cannot be deleted, the cooling IPs stay cooling', async () => {
    const first = await startHarness({ pool: { cooldownMs: COOLDOWN } });
    await first.daemon.reconcileNow();
    const gone = await first.daemon.allocate({ containerId: 'dead', ifName: 'eth0' });
    await first.daemon.release({ containerId: 'dead', ifName: 'eth0' });
    await first.daemon.stop();
    const k = fakeLinks([{ name: hostVethName('dead', 'eth0'), index: 4 }]);
    k.table.failDel = true;
    const second = await startHarness({
      provider: first.provider,
      dir: first.dir,
      pool: { cooldownMs: COOLDOWN },
      daemon: { vethLinks: k.links },
    });
    try {
      second.clock.advance(COOLDOWN * 10);
      await second.daemon.reconcileNow();
      assert.equal(stateOf(second, gone.ip), 'cooling');
      k.table.failDel = false;
      await second.daemon.veths.deleteOrphans();
      await second.daemon.reconcileNow();
      assert.equal(stateOf(second, gone.ip), 'free');
    } finally {
      await second.close();
      await first.close();
    }
  });
});
