// The drift resync on the in-memory cloud: IPs and interfaces added or removed behind the daemon's
// back are repaired from instance metadata (no API call), a pod whose IP vanished keeps its record
// but the IP is never handed out again, the daemon's own recent changes win over a lagging
// listing, an unknown interface is judged from the API, a NotFound triggers an API resync at once,
// and unreadable metadata falls back to the API at a tenth of the rate.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PoolStatus } from '../../../../src/ipam-daemon/api-types.ts';
import { DaemonCore } from '../../../../src/ipam-daemon/daemon/core.ts';
import { DriftResync } from '../../../../src/ipam-daemon/daemon/drift-resync.ts';
import type { DriftEvent } from '../../../../src/ipam-daemon/daemon.ts';
import { DaemonMetrics } from '../../../../src/ipam-daemon/metrics.ts';
import { OWNER_TAGS } from '../../../../src/providers/types.ts';
import { MemoryProvider } from '../../../fakes/memory-provider.ts';
import { type Harness, ManualClock, poolConfig, quietLogger, startHarness } from '../harness.ts';

const MIN = 60_000;
const key = (n: number) => ({ containerId: `c${n}`, ifName: 'eth0' });

async function start(opts: Parameters<typeof startHarness>[0] = {}) {
  const h = await startHarness({
    ...opts,
    pool: {
      warmEniTarget: 0,
      warmIpTarget: 4,
      minGrowStep: 1,
      shrinkDelayMs: 3_600_000,
      resyncIntervalMs: MIN,
      ...opts.pool,
    },
  });
  const drift: DriftEvent[] = [];
  h.daemon.on('drift', (e: DriftEvent) => drift.push(e));
  await h.daemon.reconcileNow();
  return { h, drift };
}

/** Let the resync interval pass and run the loop. */
async function tick(h: Harness, ms = MIN): Promise<void> {
  h.clock.advance(ms);
  await h.daemon.reconcileNow();
}

function ipsOf(st: PoolStatus, interfaceId: string) {
  return st.interfaces.find((i) => i.interfaceId === interfaceId)?.ips ?? [];
}

/** Allocate, asserting the IP is on the cloud right then (never an address the node lost). */
async function allocateChecked(h: Harness, n: number): Promise<string> {
  const a = await h.daemon.allocate(key(n));
  assert.ok(h.provider.allSecondaryIps().includes(a.ip), `${a.ip} handed to c${n} is not on the node`);
  return a.ip;
}

function assertUnique(h: Harness): void {
  const ips = h.daemon.list().map((a) => a.ip);
  assert.equal(new Set(ips).size, ips.length, `one IP held twice: ${ips.join(' ')}`);
}

describe('drift resync', () => {
  test('a free IP removed and one added out of band: repaired from metadata, no API call', async () => {
    const { h, drift } = await start();
    try {
      const eni0 = h.provider.interfaces[0]!.id;
      const before = [...h.provider.interfaces[0]!.secondaryIps];
      assert.equal(before.length, 4);
      const gone = before[1]!;
      h.provider.removeIpOutOfBand(gone);
      const added = h.provider.addIpOutOfBand(eni0);
      const listCalls = h.provider.calls.listInterfaces;
      await tick(h, MIN - 1);
      assert.equal(h.provider.calls.listInterfacesFromMetadata ?? 0, 0, 'not before the interval');
      await tick(h, 1);
      assert.equal(h.provider.calls.listInterfacesFromMetadata, 1);
      assert.equal(h.provider.calls.listInterfaces, listCalls, 'no API listing');
      const ips = ipsOf(h.daemon.status(), eni0);
      assert.ok(!ips.some((s) => s.ip === gone), 'the removed IP left the pool');
      assert.deepEqual(
        ips.find((s) => s.ip === added),
        { ip: added, state: 'free' },
      );
      assert.deepEqual(
        drift.map((d) => [d.kind, d.ip, d.source]),
        [
          ['ip-removed', gone, 'metadata'],
          ['ip-added', added, 'metadata'],
        ],
      );
      for (let n = 0; n < 8; n++) await allocateChecked(h, n);
      assertUnique(h);
      // In sync now: another resync repairs nothing.
      await tick(h);
      assert.equal(drift.length, 2);
    } finally {
      await h.close();
    }
  });

  test("an assigned IP removed: the pod keeps its record, the IP is never handed out, and leaves the pool at the pod's release", async () => {
    const { h, drift } = await start({ pool: { cooldownMs: 30_000 } });
    try {
      const eni0 = h.provider.interfaces[0]!.id;
      const ipA = await allocateChecked(h, 1);
      h.provider.removeIpOutOfBand(ipA);
      await tick(h);
      assert.deepEqual(
        drift.map((d) => [d.kind, d.ip, d.key]),
        [['ip-lost', ipA, 'c1/eth0']],
      );
      assert.match(drift[0]!.message, /lost its address/);
      let st = h.daemon.status();
      assert.equal(st.lost, 1);
      assert.deepEqual(
        ipsOf(st, eni0).find((s) => s.ip === ipA),
        { ip: ipA, state: 'assigned', lost: true },
      );
      assert.equal(h.daemon.get(key(1))?.ip, ipA, 'the running pod keeps its allocation');
      for (let n = 2; n < 12; n++) assert.notEqual(await allocateChecked(h, n), ipA);
      assertUnique(h);
      assert.equal((await h.daemon.release(key(1))).released, ipA);
      st = h.daemon.status();
      assert.ok(!ipsOf(st, eni0).some((s) => s.ip === ipA), 'dropped, not cooling');
      assert.equal(st.lost, 0);
      await tick(h);
      assert.ok(!ipsOf(h.daemon.status(), eni0).some((s) => s.ip === ipA), 'still not on the cloud');
    } finally {
      await h.close();
    }
  });

  test('a lost IP the cloud has back is regained; its release cools down as usual', async () => {
    const { h, drift } = await start({ pool: { cooldownMs: 30_000 } });
    try {
      const eni0 = h.provider.interfaces[0]!.id;
      const ipB = await allocateChecked(h, 1);
      h.provider.removeIpOutOfBand(ipB);
      await tick(h);
      h.provider.putIpBackOutOfBand(eni0, ipB);
      await tick(h);
      assert.deepEqual(
        drift.map((d) => d.kind),
        ['ip-lost', 'ip-regained'],
      );
      assert.equal(h.daemon.status().lost, 0);
      await h.daemon.release(key(1));
      assert.equal(ipsOf(h.daemon.status(), eni0).find((s) => s.ip === ipB)?.state, 'cooling');
    } finally {
      await h.close();
    }
  });

  test("IMDS lag: the daemon's own fresh assigns are not dropped, fresh unassigns not re-added", async () => {
    const { h, drift } = await start({
      pool: { resyncIntervalMs: 10_000, shrinkDelayMs: 0, cooldownMs: 0 },
      daemon: { resync: { graceMs: 30_000 } },
    });
    try {
      const eni0 = h.provider.interfaces[0]!.id;
      h.provider.freezeMetadata(); // metadata keeps listing the 4 IPs of now
      for (let n = 0; n < 4; n++) await allocateChecked(h, n);
      await h.daemon.reconcileNow(); // grows by 4 through the API
      assert.equal(h.provider.interfaces[0]!.secondaryIps.length, 8);
      await tick(h, 10_000); // resync from the stale metadata
      assert.equal(h.provider.calls.listInterfacesFromMetadata, 1);
      assert.equal(ipsOf(h.daemon.status(), eni0).length, 8, 'fresh IPs kept');
      assert.deepEqual(drift, []);
      // Now the other way: metadata lists 8, the daemon gives 4 back.
      h.provider.thawMetadata();
      h.provider.freezeMetadata();
      for (let n = 0; n < 4; n++) await h.daemon.release(key(n));
      await h.daemon.reconcileNow();
      assert.equal(h.provider.interfaces[0]!.secondaryIps.length, 4, 'shrunk through the API');
      await tick(h, 10_000);
      assert.equal(ipsOf(h.daemon.status(), eni0).length, 4, 'not re-added from the stale listing');
      assert.deepEqual(drift, []);
      h.provider.thawMetadata();
      await tick(h, 10_000);
      assert.deepEqual(drift, [], 'metadata caught up: in sync');
    } finally {
      await h.close();
    }
  });

  test('an interface removed with a pod on it: free IPs dropped, the pod lost, nothing handed out from it, forgotten after the release', async () => {
    const { h, drift } = await start();
    try {
      for (let n = 0; n < 10; n++) await allocateChecked(h, n);
      await h.daemon.reconcileNow();
      const eni1 = h.provider.interfaces.find((i) => i.deviceIndex === 1)!;
      const onEni1 = h.daemon.list().filter((a) => a.interfaceId === eni1.id);
      assert.equal(onEni1.length, 1);
      h.provider.removeInterfaceOutOfBand(eni1.id);
      await tick(h);
      assert.deepEqual([...new Set(drift.map((d) => d.kind))].sort(), [
        'interface-removed',
        'ip-lost',
        'ip-removed',
      ]);
      const lost = drift.find((d) => d.kind === 'ip-lost');
      assert.equal(lost?.ip, onEni1[0]!.ip);
      const st = h.daemon.status();
      const rec = st.interfaces.find((i) => i.interfaceId === eni1.id);
      assert.equal(rec?.gone, true);
      assert.deepEqual(rec?.ips, [{ ip: onEni1[0]!.ip, state: 'assigned', lost: true }]);
      for (let n = 10; n < 16; n++) {
        const ip = await allocateChecked(h, n);
        assert.notEqual(h.daemon.get(key(n))?.interfaceId, eni1.id, `${ip} came from the gone interface`);
      }
      assertUnique(h);
      await h.daemon.release(onEni1[0]!);
      await tick(h);
      assert.ok(!h.daemon.status().interfaces.some((i) => i.interfaceId === eni1.id), 'forgotten');
    } finally {
      await h.close();
    }
  });

  test('an interface attached out of band: judged from the API, used only when ours', async () => {
    const { h, drift } = await start();
    try {
      const ours = h.provider.addInterfaceOutOfBand({
        secondaryIps: 3,
        tags: {
          [OWNER_TAGS.managedBy]: 'vpc-ipam',
          [OWNER_TAGS.clusterName]: 'test',
          [OWNER_TAGS.instanceId]: h.provider.node.instanceId,
        },
      });
      const theirs = h.provider.addInterfaceOutOfBand({ secondaryIps: 2 });
      const listCalls = h.provider.calls.listInterfaces ?? 0;
      await tick(h);
      assert.equal(h.provider.calls.listInterfaces, listCalls + 1, 'one API listing to judge them');
      const st = h.daemon.status();
      assert.deepEqual(
        ipsOf(st, ours.id)
          .map((s) => s.ip)
          .sort(),
        [...ours.secondaryIps].sort(),
      );
      assert.ok(
        st.interfaces.some((i) => i.interfaceId === theirs.id && i.total === 0),
        'known, lends nothing',
      );
      assert.deepEqual(
        drift.map((d) => [d.kind, d.interfaceId, d.source]),
        [
          ['interface-added', ours.id, 'api'],
          ['interface-added', theirs.id, 'api'],
        ],
      );
      assert.match(drift[1]!.message, /not ours/);
    } finally {
      await h.close();
    }
  });

  test('a NotFound from the cloud triggers an API resync at once, and the pool grows elsewhere', async () => {
    const { h, drift } = await start({ pool: { allocateWaitMs: 2000 } });
    try {
      for (let n = 0; n < 10; n++) await allocateChecked(h, n);
      await h.daemon.reconcileNow();
      const eni1 = h.provider.interfaces.find((i) => i.deviceIndex === 1)!;
      // The pod on eni-1 goes; then eni-1 vanishes while the daemon still counts on it.
      const pod = h.daemon.list().find((a) => a.interfaceId === eni1.id)!;
      await h.daemon.release(pod);
      h.provider.removeInterfaceOutOfBand(eni1.id);
      // Past the grace of the daemon's own create, before the periodic resync is due.
      h.clock.advance(31_000);
      const metaCalls = h.provider.calls.listInterfacesFromMetadata ?? 0;
      // Demand that makes the engine assign on eni-1 (it has room): NotFound. (Until a resync
      // notices, eni-1's stale IPs can still be handed out: that window is the resync's to close.)
      const allocs = Promise.all([10, 11, 12, 13, 14, 15].map((n) => h.daemon.allocate(key(n))));
      await h.daemon.reconcileNow();
      await allocs;
      assert.ok(
        drift.some((d) => d.kind === 'interface-removed' && d.interfaceId === eni1.id && d.source === 'api'),
      );
      assert.equal(h.provider.calls.listInterfacesFromMetadata ?? 0, metaCalls, 'the API, not metadata');
      // Gone: forgotten, or kept only for pods that got one of its stale IPs before the NotFound.
      const rec = h.daemon.status().interfaces.find((i) => i.interfaceId === eni1.id);
      assert.ok(
        rec === undefined || (rec.gone === true && rec.ips?.every((s) => s.state === 'assigned' && s.lost)),
        JSON.stringify(rec),
      );
      // Converged: new pods get addresses the node has.
      for (let n = 20; n < 24; n++) await allocateChecked(h, n);
      assertUnique(h);
    } finally {
      await h.close();
    }
  });

  test('unreadable metadata: the API is listed every 10th interval only', async () => {
    const { h } = await start();
    try {
      h.provider.metadataFails = true;
      const base = h.provider.calls.listInterfaces ?? 0;
      for (let i = 1; i <= 9; i++) await tick(h);
      assert.equal(h.provider.calls.listInterfacesFromMetadata, 9);
      assert.equal(h.provider.calls.listInterfaces ?? 0, base, 'no API listing within 10 intervals');
      await tick(h);
      assert.equal(h.provider.calls.listInterfaces, base + 1);
    } finally {
      await h.close();
    }
  });

  test('a provider without metadata is resynced from the API every 10th interval', async () => {
    const provider = new MemoryProvider();
    (provider as { listInterfacesFromMetadata?: unknown }).listInterfacesFromMetadata = undefined;
    const { h, drift } = await start({ provider });
    try {
      const gone = h.provider.interfaces[0]!.secondaryIps[0]!;
      h.provider.removeIpOutOfBand(gone);
      for (let i = 1; i <= 9; i++) await tick(h);
      assert.equal(drift.length, 0);
      await tick(h);
      assert.deepEqual(
        drift.map((d) => [d.kind, d.source]),
        [['ip-removed', 'api']],
      );
    } finally {
      await h.close();
    }
  });

  test('resync off (interval 0): nothing is listed', async () => {
    const { h } = await start({ pool: { resyncIntervalMs: 0 } });
    try {
      h.provider.removeIpOutOfBand(h.provider.interfaces[0]!.secondaryIps[0]!);
      const base = h.provider.calls.listInterfaces;
      for (let i = 0; i < 12; i++) await tick(h);
      assert.equal(h.provider.calls.listInterfacesFromMetadata ?? 0, 0);
      assert.equal(h.provider.calls.listInterfaces, base);
    } finally {
      await h.close();
    }
  });

  test('metrics count repairs by kind and resyncs by source', async () => {
    const { h } = await start();
    const metrics = new DaemonMetrics();
    metrics.attach(h.daemon);
    try {
      h.provider.removeIpOutOfBand(h.provider.interfaces[0]!.secondaryIps[0]!);
      h.provider.removeIpOutOfBand(h.provider.interfaces[0]!.secondaryIps[0]!);
      h.provider.addIpOutOfBand(h.provider.interfaces[0]!.id);
      await tick(h);
      const text = await metrics.registry.metrics();
      assert.match(text, /vpc_ipam_drift_repairs_total\{kind="ip-removed"\} 2/);
      assert.match(text, /vpc_ipam_drift_repairs_total\{kind="ip-added"\} 1/);
      assert.match(text, /vpc_ipam_resyncs_total\{source="metadata",outcome="ok"\} 1/);
    } finally {
      await h.close();
    }
  });
});

describe("never hand out an IP a pod's host route still claims", () => {
  const VETH = 'vpc0123456789a';

  test('a resync that adds IPs re-reads the routes: a routed one is held for its pod, freed when the route goes', async () => {
    let table: Array<{ ip: string; hostVeth: string }> = [];
    let reads = 0;
    const { h, drift } = await start({
      pool: { cooldownMs: 0 },
      daemon: {
        podRoutes: async () => {
          reads++;
          return table;
        },
      },
    });
    try {
      const eni0 = h.provider.interfaces[0]!.id;
      // In sync: a resync with nothing to add does not read the routes.
      const idle = reads;
      await tick(h);
      assert.equal(reads, idle, 'no route read when the resync adds nothing');
      // The cloud lists an address again that a running pod still has (e.g. a restart dropped the
      // lost mark): its host route is on one of our veths.
      const routed = h.provider.addIpOutOfBand(eni0);
      const plain = h.provider.addIpOutOfBand(eni0);
      table = [{ ip: routed, hostVeth: VETH }];
      await tick(h);
      assert.ok(reads > idle, 'the resync re-read the routes before adding');
      assert.deepEqual(
        drift.map((d) => [d.kind, d.ip]),
        [
          ['ip-held', routed],
          ['ip-added', plain],
        ],
      );
      assert.match(drift[0]!.message, new RegExp(`dev ${VETH}.*held for that pod`));
      const held = h.daemon.list().find((a) => a.ip === routed);
      assert.equal(held?.recoveredFrom, VETH, 'held by a recovered entry');
      const got: string[] = [];
      for (let n = 0; n < 20; n++) got.push(await allocateChecked(h, n));
      assert.ok(!got.includes(routed), 'never handed to a new pod');
      assert.ok(got.includes(plain), 'the unrouted one is handed out');
      assertUnique(h);
      // The pod is gone (its DEL removed the veth): the IP is released and can be used.
      table = [];
      await tick(h, 1);
      assert.equal(
        h.daemon.list().find((a) => a.ip === routed),
        undefined,
      );
      await tick(h, 1);
      const next = await allocateChecked(h, 99);
      assert.equal(next, routed, 'the only free IP after the route went');
    } finally {
      await h.close();
    }
  });

  test('routes unreadable during a resync: the unknown IP waits, added once they can be read', async () => {
    let fail = false;
    const { h, drift } = await start({
      daemon: {
        podRoutes: async () => {
          if (fail) throw new Error('ip: netlink error');
          return [];
        },
      },
    });
    try {
      const eni0 = h.provider.interfaces[0]!.id;
      fail = true;
      const ip = h.provider.addIpOutOfBand(eni0);
      await tick(h);
      assert.equal(drift.length, 0, 'nothing added blind');
      assert.equal(
        ipsOf(h.daemon.status(), eni0).find((s) => s.ip === ip),
        undefined,
      );
      fail = false;
      await tick(h);
      assert.deepEqual(
        drift.map((d) => [d.kind, d.ip]),
        [['ip-added', ip]],
      );
    } finally {
      await h.close();
    }
  });

  test('a grow that returns an address a pod route claims: held, never handed out', async () => {
    let table: Array<{ ip: string; hostVeth: string }> = [];
    const { h } = await start({ daemon: { podRoutes: async () => table } });
    try {
      const eni0 = h.provider.interfaces[0]!.id;
      // An address the cloud will hand back on the next assign, still routed to a running pod.
      const back = h.provider.addIpOutOfBand(eni0);
      h.provider.removeIpOutOfBand(back);
      table = [{ ip: back, hostVeth: VETH }];
      // The view is refreshed at the latest when routes are read; start read it empty, so prime it
      // the way the daemon does (a resync that adds IPs) with an unrelated add.
      h.provider.addIpOutOfBand(eni0);
      await tick(h);
      const orig = h.provider.assignIps.bind(h.provider);
      let injected = false;
      h.provider.assignIps = async (id, req) => {
        const ips = await orig(id, req);
        if (injected) return ips;
        injected = true;
        h.provider.putIpBackOutOfBand(id, back);
        return [back, ...ips];
      };
      const got: string[] = [];
      for (let n = 0; n < 20; n++) {
        got.push(await allocateChecked(h, n));
        await h.daemon.reconcileNow();
      }
      assert.ok(injected, 'the grow happened');
      assert.equal(h.daemon.list().find((a) => a.ip === back)?.recoveredFrom, VETH);
      assert.ok(!got.includes(back), 'never handed to a new pod');
      assertUnique(h);
    } finally {
      await h.close();
    }
  });
});

describe("the daemon's recent-change memory", () => {
  function drift(resyncIntervalMs: number) {
    const clock = new ManualClock();
    const core = new DaemonCore(
      {
        provider: new MemoryProvider(),
        pool: poolConfig({ resyncIntervalMs }),
        clusterName: 'test',
        podSubnetIds: null,
        podSecurityGroupIds: null,
        checkpointPath: '/nonexistent/checkpoint.json',
        logger: quietLogger,
        clock,
      },
      () => true,
    );
    return { clock, d: new DriftResync(core) };
  }

  test('holds one grace period of changes, however long no resync runs', () => {
    const { clock, d } = drift(60_000);
    for (let n = 0; n < 10_000; n++) {
      clock.advance(1000);
      d.noteRecent(d.recent.assignedIps, [`10.0.${n >> 8}.${n & 255}`]);
    }
    assert.ok(d.recentCount() <= 31, `${d.recentCount()} entries for a 30 s grace at one a second`);
  });

  test('with the resync off nothing is kept (nothing would read it)', () => {
    const { clock, d } = drift(0);
    for (let n = 0; n < 100; n++) {
      clock.advance(10);
      d.noteRecent(d.recent.createdInterfaces, [`eni-${n}`]);
    }
    assert.equal(d.recentCount(), 0);
  });
});
