// The daemon recovering running pods' IPs from their host routes (route-recovery.ts), on the
// in-memory cloud with an injected route table. The real kernel reading: test/e2e/route-recovery.test.ts.
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import type { Allocation } from '../../../../src/ipam-daemon/api-types.ts';
import { hostVethName } from '../../../../src/netutils/names.ts';
import type { PodHostRoute } from '../../../../src/netutils/pod-routes.ts';
import { type Harness, startHarness } from '../harness.ts';

const key = (n: number) => ({ containerId: `c${n}`, ifName: 'eth0' });

/** A first daemon hands out `pods` IPs; the kernel routes them to each pod's veth. */
async function runningPods(
  pods: number,
): Promise<{ first: Harness; held: Allocation[]; routes: PodHostRoute[] }> {
  const first = await startHarness();
  await first.daemon.reconcileNow();
  const held: Allocation[] = [];
  for (let n = 0; n < pods; n++) held.push(await first.daemon.allocate(key(n)));
  await first.daemon.stop();
  const routes = held.map((a) => ({ ip: a.ip, hostVeth: hostVethName(a.containerId, a.ifName) }));
  return { first, held, routes };
}

async function allocateAll(h: Harness, from: number): Promise<Allocation[]> {
  const out: Allocation[] = [];
  for (let n = from; ; n++) {
    try {
      out.push(await h.daemon.allocate(key(n)));
    } catch {
      return out;
    }
  }
}

describe('Daemon: recovering running pods from their host routes', () => {
  for (const lost of ['corrupt', 'missing'] as const) {
    test(`checkpoint ${lost}: routed IPs are held and never handed to a new pod`, async () => {
      const { first, held, routes } = await runningPods(4);
      if (lost === 'corrupt') await writeFile(first.checkpointPath, '{"version":1,"instanceId":');
      else await rm(first.checkpointPath);
      let table = [...routes];
      const second = await startHarness({
        provider: first.provider,
        dir: first.dir,
        pool: { allocateWaitMs: 200 },
        daemon: { podRoutes: async () => table },
      });
      try {
        const list = second.daemon.list();
        assert.deepEqual(list.map((a) => a.ip).sort(), held.map((a) => a.ip).sort());
        for (const a of list) {
          assert.equal(a.recoveredFrom, hostVethName(`c${held.findIndex((h) => h.ip === a.ip)}`, 'eth0'));
          assert.match(a.containerId, /^recovered-vpc[0-9a-f]{11}-/);
        }
        // Fill the node (27 pod IPs on an m5.large): none of the recovered IPs comes back.
        const fresh = await allocateAll(second, 100);
        assert.equal(fresh.length, 27 - held.length, 'every other IP was handed out');
        const heldIps = new Set(held.map((a) => a.ip));
        assert.deepEqual(
          fresh.filter((a) => heldIps.has(a.ip)),
          [],
        );
        // The checkpoint now carries them, so a restart keeps them even before reading routes.
        const cp = JSON.parse(await readFile(first.checkpointPath, 'utf8'));
        assert.equal(
          cp.allocations.filter((a: { recoveredFrom?: string }) => a.recoveredFrom).length,
          held.length,
        );
        // Pod c0 is deleted: its veth and route go; the loop releases it into cooldown, then it is free.
        table = table.filter((r) => r.ip !== held[0]?.ip);
        await second.daemon.release({ containerId: 'c100', ifName: 'eth0' });
        await second.daemon.reconcileNow();
        assert.equal(
          second.daemon.list().some((a) => a.ip === held[0]?.ip),
          false,
          'released when its route disappeared',
        );
        assert.equal(second.daemon.status().cooling, 2);
        second.clock.advance(31_000);
        await second.daemon.reconcileNow();
        const reused = await allocateAll(second, 200);
        assert.deepEqual(reused.map((a) => a.ip).sort(), [held[0]?.ip, fresh[0]?.ip].sort());
        // Still routed: still held.
        for (const a of held.slice(1)) assert.ok(second.daemon.list().some((x) => x.ip === a.ip));
      } finally {
        await second.close();
        await first.close();
      }
    });
  }

  test("the pod's own DEL (its real key names its veth) releases a recovered entry at once", async () => {
    const { first, held, routes } = await runningPods(2);
    await rm(first.checkpointPath);
    const second = await startHarness({
      provider: first.provider,
      dir: first.dir,
      daemon: { podRoutes: async () => routes },
    });
    try {
      const r = await second.daemon.release(key(1));
      assert.equal(r.released, held[1]?.ip);
      assert.deepEqual(
        second.daemon.list().map((a) => a.ip),
        [held[0]?.ip],
      );
      // CNI GC knows nothing of recovered keys: it must not release them.
      const gc = await second.daemon.gc([]);
      assert.deepEqual(gc.released, []);
      assert.equal(second.daemon.list().length, 1);
    } finally {
      await second.close();
      await first.close();
    }
  });

  test('a valid checkpoint out of step with the kernel is repaired too (recovery runs on every start)', async () => {
    const { first, held, routes } = await runningPods(2);
    // The checkpoint says c1 released its IP (cooling); the kernel still routes it to c1's veth.
    const cp = JSON.parse(await readFile(first.checkpointPath, 'utf8'));
    cp.allocations = cp.allocations.filter((a: { containerId: string }) => a.containerId !== 'c1');
    cp.cooling.push({ ip: held[1]?.ip, coolUntil: 0 });
    await writeFile(first.checkpointPath, JSON.stringify(cp));
    const second = await startHarness({
      provider: first.provider,
      dir: first.dir,
      daemon: { podRoutes: async () => routes },
    });
    try {
      const list = second.daemon.list();
      assert.equal(list.find((a) => a.containerId === 'c0')?.ip, held[0]?.ip, 'c0 from the checkpoint');
      assert.equal(list.find((a) => a.ip === held[1]?.ip)?.recoveredFrom, routes[1]?.hostVeth);
    } finally {
      await second.close();
      await first.close();
    }
  });

  test('without a trustworthy checkpoint, unreadable routes stop the start; with one, they do not', async () => {
    const { first } = await runningPods(1);
    const failing = async (): Promise<PodHostRoute[]> => {
      throw new Error('ip: not found');
    };
    // Valid checkpoint: start, trusting it.
    const ok = await startHarness({
      provider: first.provider,
      dir: first.dir,
      daemon: { podRoutes: failing },
    });
    assert.equal(ok.daemon.list().length, 1);
    await ok.daemon.stop();
    await rm(first.checkpointPath);
    await assert.rejects(
      startHarness({ provider: first.provider, dir: first.dir, daemon: { podRoutes: failing } }),
      /checkpoint missing and the pods' host routes cannot be read \(ip: not found\); refusing to start/,
    );
    await first.close();
  });

  test('routes to IPs that are not on this node are ignored', async () => {
    const { first } = await runningPods(1);
    await rm(first.checkpointPath);
    const second = await startHarness({
      provider: first.provider,
      dir: first.dir,
      daemon: { podRoutes: async () => [{ ip: '192.0.2.7', hostVeth: 'vpc0123456789a' }] },
    });
    try {
      assert.deepEqual(second.daemon.list(), []);
      const st = second.daemon.status();
      assert.equal(st.assigned, 0);
      assert.ok(st.free > 0, 'the routes held nothing back');
    } finally {
      await second.close();
      await first.close();
    }
  });
});
