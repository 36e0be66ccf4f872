// CNI GC and the pod watcher's release (daemon/gc.ts): only the GC's own network, never an
// allocation young enough to be an ADD in flight, never one whose pod is still wired on the node
// (a host route to its IP, or its host veth). On the in-memory cloud with injected route and link
// tables; the plugin's side is in test/unit/cni, the real kernel in test/e2e.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { deferredReleaseDir, writeDeferredRelease } from '../../../../src/cni/deferred-release.ts';
import type { AllocateRequest, GcResponse } from '../../../../src/ipam-daemon/api-types.ts';
import { DEFERRED_CHECK_MS } from '../../../../src/ipam-daemon/daemon/pool-loop.ts';
import { hostVethName } from '../../../../src/netutils/names.ts';
import { call, type Harness, startHarness, startWiredHarness } from '../harness.ts';

const pod = (n: number, network?: string): AllocateRequest => ({
  containerId: `c${n}`,
  ifName: 'eth0',
  podNamespace: 'default',
  podName: `p${n}`,
  ...(network ? { network } : {}),
});
const ids = (r: GcResponse) => r.released.map((k) => k.containerId).sort();
const held = (h: Harness) =>
  h.daemon
    .list()
    .map((a) => a.containerId)
    .sort();

describe('CNI GC', () => {
  test("releases what its network's runtime no longer lists, once past the grace period", async () => {
    const h = await startHarness();
    try {
      await h.daemon.reconcileNow();
      for (let n = 0; n < 4; n++) await h.daemon.allocate(pod(n, 'vpc-ipam'));
      h.clock.advance(61_000);
      const r = await h.daemon.gc([pod(1), pod(3)], 'vpc-ipam');
      assert.deepEqual(ids(r), ['c0', 'c2']);
      assert.deepEqual(held(h), ['c1', 'c3']);
    } finally {
      await h.close();
    }
  });

  test("another network's allocations (Multus, a second runtime) and unrecorded ones are left alone", async () => {
    const h = await startHarness();
    try {
      await h.daemon.reconcileNow();
      await h.daemon.allocate(pod(0, 'vpc-ipam'));
      await h.daemon.allocate(pod(1, 'second-net'));
      await h.daemon.allocate(pod(2)); // made before networks were recorded
      h.clock.advance(61_000);
      const r = await h.daemon.gc([], 'second-net');
      assert.deepEqual(ids(r), ['c1'], "only second-net's");
      assert.deepEqual(held(h), ['c0', 'c2']);
      assert.deepEqual(
        ids(await h.daemon.gc([])),
        ['c2'],
        'a GC naming no network takes only unrecorded ones',
      );
      assert.deepEqual(held(h), ['c0']);
    } finally {
      await h.close();
    }
  });

  test('an allocation younger than the grace period (an ADD in flight) is kept', async () => {
    const h = await startHarness({ daemon: { gcGraceMs: 30_000 } });
    try {
      await h.daemon.reconcileNow();
      await h.daemon.allocate(pod(0, 'n'));
      h.clock.advance(29_000);
      const r = await h.daemon.gc([], 'n');
      assert.deepEqual(ids(r), []);
      assert.equal(r.kept?.young, 1);
      h.clock.advance(2_000);
      assert.deepEqual(ids(await h.daemon.gc([], 'n')), ['c0']);
    } finally {
      await h.close();
    }
  });

  test('an allocation whose host route or host veth still exists is kept; unreadable wiring keeps all', async () => {
    const { h, wiring } = await startWiredHarness();
    try {
      await h.daemon.reconcileNow();
      const a0 = await h.daemon.allocate(pod(0, 'n'));
      await h.daemon.allocate(pod(1, 'n'));
      await h.daemon.allocate(pod(2, 'n'));
      wiring.routes = [{ ip: a0.ip, hostVeth: hostVethName('c0', 'eth0') }];
      wiring.links = [hostVethName('c1', 'eth0')];
      h.clock.advance(61_000);
      const r = await h.daemon.gc([], 'n');
      assert.deepEqual(ids(r), ['c2'], 'only the one with neither a route nor a veth');
      assert.equal(r.kept?.wired, 2);
      wiring.unreadable = true;
      const u = await h.daemon.gc([], 'n');
      assert.deepEqual(ids(u), []);
      assert.equal(u.kept?.unverified, 2);
      wiring.unreadable = false;
      wiring.routes = [];
      wiring.links = [];
      assert.deepEqual(ids(await h.daemon.gc([], 'n')), ['c0', 'c1'], 'released once the pods are unwired');
    } finally {
      await h.close();
    }
  });

  test('a GC listing 5,000 attachments fits through the socket', async () => {
    const h = await startHarness({ socket: true });
    try {
      await h.daemon.reconcileNow();
      await h.daemon.allocate(pod(0, 'n'));
      const validAttachments = Array.from({ length: 5000 }, (_, n) => ({
        containerId: `${n.toString(16).padStart(8, '0')}${'f'.repeat(56)}`,
        ifName: 'eth0',
      }));
      validAttachments.push({ containerId: 'c0', ifName: 'eth0' });
      const r = await call(h.socketPath, 'POST', '/v1/gc', { validAttachments, network: 'n' });
      assert.equal(r.status, 200, r.text.slice(0, 200));
      assert.deepEqual((r.body as GcResponse).released, []);
      assert.deepEqual(held(h), ['c0']);
    } finally {
      await h.close();
    }
  });
});

describe("the pod watcher's release", () => {
  test('keeps an allocation whose pod is still wired on the node', async () => {
    const { h, wiring } = await startWiredHarness();
    try {
      await h.daemon.reconcileNow();
      const a = await h.daemon.allocate(pod(0));
      wiring.routes = [{ ip: a.ip, hostVeth: hostVethName('c0', 'eth0') }];
      assert.deepEqual(await h.daemon.releaseIfUnwired(pod(0)), { released: null, kept: true });
      wiring.routes = [];
      wiring.links = [hostVethName('c0', 'eth0')];
      assert.deepEqual(await h.daemon.releaseIfUnwired(pod(0)), { released: null, kept: true });
      wiring.links = [];
      assert.deepEqual(await h.daemon.releaseIfUnwired(pod(0)), { released: a.ip });
      assert.deepEqual(held(h), []);
    } finally {
      await h.close();
    }
  });
});

describe('releases plugins deferred while the daemon was down', () => {
  test('each noted DEL frees its key (only while it holds the noted IP) and its note goes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ipamd-deferred-'));
    const socketPath = join(dir, 'ipamd.sock');
    const h = await startHarness({ daemon: { socketPath } });
    try {
      await h.daemon.reconcileNow();
      const ips = [];
      for (let n = 0; n < 4; n++) ips.push((await h.daemon.allocate(pod(n))).ip);
      // What the plugin's DEL writes when the daemon is unreachable (src/cni/plugin.ts cmdDel).
      await writeDeferredRelease(socketPath, { containerId: 'c0', ifName: 'eth0', ip: ips[0]! });
      await writeDeferredRelease(socketPath, { containerId: 'c1', ifName: 'eth0' }); // IP unknown
      await writeDeferredRelease(socketPath, { containerId: 'c2', ifName: 'eth0', ip: ips[3]! }); // not c2's
      await writeFile(join(deferredReleaseDir(socketPath), 'junk.json'), '{"containerId":"../x"}');
      // The loop looks for notes at most once per DEFERRED_CHECK_MS (a directory read per round
      // would cost a busy node's every event-loop turn of releases).
      await h.daemon.reconcileNow();
      assert.equal(held(h).length, 4, 'not looked for again within DEFERRED_CHECK_MS');
      h.clock.advance(DEFERRED_CHECK_MS);
      await h.daemon.reconcileNow();
      assert.deepEqual(held(h), ['c2', 'c3'], 'c0 and c1 freed; c2 kept (the note names another IP)');
      assert.deepEqual(await readdir(deferredReleaseDir(socketPath)), [], 'every note handled and removed');
      // Freed IPs serve the pool again (after their cooldown), not growth.
      assert.equal(h.daemon.status().assigned, 2);
    } finally {
      await h.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
