// The daemon recovering running pods' IPs from the kernel after losing its checkpoint, with real
// host routes: pods wired in a throwaway "node" netns with the plugin's own veth plan, the route
// reader run inside that netns (`ip netns exec`, as the daemon runs in the node's netns), the
// daemon itself on the in-memory cloud. Needs root and iproute2; fails (never skips) without them.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { cleanupHost, planVethAdd } from '../../src/cni/wiring/veth.ts';
import type { Allocation } from '../../src/ipam-daemon/api-types.ts';
import { type Runner, spawnRunner } from '../../src/netutils/exec.ts';
import { createIpTool } from '../../src/netutils/ip.ts';
import { hostVethName } from '../../src/netutils/names.ts';
import { listPodHostRoutes } from '../../src/netutils/pod-routes.ts';
import { Cleanup, createNetns, ipBatch, requireNetnsPrivileges, runPrefix } from '../helpers/netns.ts';
import { type Harness, startHarness } from '../unit/ipam-daemon/harness.ts';

const key = (n: number) => ({ containerId: `rr${n}`, ifName: 'eth0' });

describe('route recovery on a real netns', () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const nodeNs = `${prefix}-rrnode`;
  // The daemon's reader, unchanged, with `ip` started inside the node netns.
  const inNode: Runner = (file, args, options) =>
    spawnRunner('ip', ['netns', 'exec', nodeNs, file, ...args], options);
  const readRoutes = () => listPodHostRoutes(createIpTool(inNode));
  let first: Harness;
  const held: Allocation[] = [];

  async function wirePod(a: Allocation, n: number): Promise<void> {
    const podNs = `${prefix}-rrpod${n}`;
    const podPath = await createNetns(podNs, cleanup);
    const plan = planVethAdd({ ...key(n), netns: podPath, ip: a.ip, routeTable: a.routeTable, mtu: 1500 });
    await ipBatch(
      nodeNs,
      [...plan.linkLines, ...plan.hostLines].map((l) => l.join(' ')),
    );
    await ipBatch(
      podNs,
      plan.podLines.map((l) => l.join(' ')),
    );
  }

  before(async () => {
    requireNetnsPrivileges(['ip']);
    await createNetns(nodeNs, cleanup);
    first = await startHarness();
    cleanup.add('first daemon', () => first.close());
    await first.daemon.reconcileNow();
    for (let n = 0; n < 3; n++) held.push(await first.daemon.allocate(key(n)));
    for (const [n, a] of held.entries()) await wirePod(a, n);
    await first.daemon.stop();
  });

  after(async () => {
    const errors = await cleanup.run();
    assert.deepEqual(errors, []);
  });

  test('the reader sees exactly the pods wired in its own netns', async () => {
    const routes = await readRoutes();
    assert.deepEqual(
      routes.map((r) => `${r.ip} ${r.hostVeth}`).sort(),
      held.map((a, n) => `${a.ip} ${hostVethName(key(n).containerId, 'eth0')}`).sort(),
    );
    // The root netns (where this test runs) does not have them: the reading is per netns.
    const here = await listPodHostRoutes(createIpTool(spawnRunner));
    const ours = new Set(held.map((_, n) => hostVethName(key(n).containerId, 'eth0')));
    assert.deepEqual(
      here.filter((r) => ours.has(r.hostVeth)),
      [],
    );
  });

  test('corrupt checkpoint: running pods keep their IPs; a DEL (veth gone) frees one after the cooldown', async () => {
    await writeFile(first.checkpointPath, '{"version":1,"allocations":[{"ip":');
    const second = await startHarness({
      provider: first.provider,
      dir: first.dir,
      pool: { allocateWaitMs: 200 },
      daemon: { podRoutes: readRoutes },
    });
    try {
      assert.deepEqual(
        second.daemon
          .list()
          .map((a) => a.ip)
          .sort(),
        held.map((a) => a.ip).sort(),
      );
      const fresh: Allocation[] = [];
      for (let n = 100; ; n++) {
        try {
          fresh.push(await second.daemon.allocate(key(n)));
        } catch {
          break;
        }
      }
      assert.equal(fresh.length, 27 - held.length);
      assert.deepEqual(
        fresh.filter((f) => held.some((h) => h.ip === f.ip)),
        [],
        'no running pod shares its IP with a new one',
      );
      // Pod rr0 goes: the plugin's DEL host cleanup (rules, then the veth and with it the route).
      const problems = await cleanupHost(
        createIpTool(inNode),
        hostVethName('rr0', 'eth0'),
        held[0]?.ip ?? null,
      );
      assert.deepEqual(problems, []);
      await second.daemon.reconcileNow();
      assert.equal(
        second.daemon.list().some((a) => a.ip === held[0]?.ip),
        false,
      );
      assert.equal(second.daemon.status().cooling, 1, 'released into cooldown, not straight to a new pod');
      second.clock.advance(31_000);
      await second.daemon.reconcileNow();
      assert.equal((await second.daemon.allocate(key(500))).ip, held[0]?.ip);
      for (const a of held.slice(1)) assert.ok(second.daemon.list().some((x) => x.ip === a.ip));
    } finally {
      await second.close();
    }
  });
});
