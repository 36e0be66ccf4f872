// Two (and more) janitors racing for the Lease through the real client against the real
// kube-apiserver (cluster/control-plane.ts: Debian etcd + kube-apiserver v1.34.4 built from the Go
// module proxy): exactly one leads, the others follow; a follower takes over only after expiry; a
// leader that steps down hands over at once. Optimistic concurrency (409 on create and on a stale
// replace) and MicroTime parsing are the real server's.
// The last test runs real timers, with the leader cut off from the server by a TCP relay
// (test/helpers/kube-apiserver.ts) as a crashed or partitioned replica is.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CoordinationV1Api, KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { type ControlPlane, startControlPlane } from '../../../cluster/control-plane.ts';
import { LeaseElector } from '../../../src/janitor/lease-elector.ts';
import { TcpRelay, until } from '../../helpers/kube-apiserver.ts';

const logger = pino({ level: 'silent' });

function electorFor(api: CoordinationV1Api) {
  return (identity: string, leaseName: string, now: () => number, durationSeconds = 10): LeaseElector =>
    new LeaseElector({
      api,
      namespace: 'kube-system',
      name: leaseName,
      identity,
      leaseDurationSeconds: durationSeconds,
      renewDeadlineMs: durationSeconds * 700,
      retryPeriodMs: 50,
      logger,
      now,
    });
}

describe('janitor lease election against the real kube-apiserver', { timeout: 300_000 }, () => {
  let cp: ControlPlane;
  let dir: string;
  let api: CoordinationV1Api;
  let elector: ReturnType<typeof electorFor>;
  let n = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vpc-ipam-lease-'));
    cp = await startControlPlane({ dir });
    const kc = new KubeConfig();
    kc.loadFromFile(cp.adminKubeconfig);
    api = kc.makeApiClient(CoordinationV1Api);
    elector = electorFor(api);
  });
  after(async () => {
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const leaseSpec = async (name: string) =>
    (await api.readNamespacedLease({ name, namespace: 'kube-system' })).spec as {
      holderIdentity: string;
      leaseTransitions: number;
      renewTime: Date | string;
    };

  test('five replicas starting together: exactly one wins, via optimistic concurrency', async () => {
    const lease = `race-${n++}`;
    const clock = { t: 1_000_000 };
    const replicas = ['a', 'b', 'c', 'd', 'e'].map((id) => elector(id, lease, () => clock.t));
    const results = await Promise.all(replicas.map((r) => r.tryOnce()));
    assert.equal(results.filter(Boolean).length, 1, `leaders: ${results}`);
    const winner = replicas[results.indexOf(true)]!;
    const spec = await leaseSpec(lease);
    assert.equal(spec.holderIdentity, ['a', 'b', 'c', 'd', 'e'][results.indexOf(true)]);
    // The losers got 409 AlreadyExists from create; a second round keeps them followers.
    const again = await Promise.all(replicas.map((r) => r.tryOnce()));
    assert.deepEqual(again, results);
    assert.ok(winner.isLeader());
  });

  test('concurrent takeover of an expired lease: one replace wins, the other gets 409', async () => {
    const lease = `takeover-${n++}`;
    const clock = { t: 2_000_000 };
    const old = elector('old', lease, () => clock.t, 2);
    assert.equal(await old.tryOnce(), true);
    const b = elector('b', lease, () => clock.t, 2);
    const c = elector('c', lease, () => clock.t, 2);
    // Both observe the lease held by "old" and wait.
    assert.deepEqual(await Promise.all([b.tryOnce(), c.tryOnce()]), [false, false]);
    // "old" dies; by the followers' own clock the lease expires.
    clock.t += 2_001;
    const results = await Promise.all([b.tryOnce(), c.tryOnce()]);
    assert.equal(results.filter(Boolean).length, 1, `takeover results ${results}`);
    const spec = await leaseSpec(lease);
    assert.equal(spec.leaseTransitions, 1);
    assert.equal(spec.holderIdentity, results[0] ? 'b' : 'c');
    // The old leader, back from a pause, finds it lost the lease (renew deadline long passed).
    assert.equal(old.isLeader(), false);
    assert.equal(await old.tryOnce(), false);
  });

  test('a follower waits while the leader renews, and takes over only after expiry', async () => {
    const lease = `expiry-${n++}`;
    const clock = { t: 3_000_000 };
    const leader = elector('leader', lease, () => clock.t, 10);
    const follower = elector('follower', lease, () => clock.t, 10);
    assert.equal(await leader.tryOnce(), true);
    for (let i = 0; i < 5; i++) {
      clock.t += 6_000; // longer than half the lease, but the leader renews every round
      assert.equal(await leader.tryOnce(), true);
      assert.equal(await follower.tryOnce(), false);
    }
    // The leader stops renewing (crashed): the follower waits a full duration of its own clock.
    clock.t += 1_000;
    assert.equal(await follower.tryOnce(), false);
    clock.t += 8_000;
    assert.equal(await follower.tryOnce(), false, 'not expired yet: 9 s < 10 s since the last change');
    clock.t += 1_001;
    assert.equal(await follower.tryOnce(), true);
    assert.equal(follower.isLeader(), true);
    assert.equal(leader.isLeader(), false, 'the crashed leader stopped acting after its renew deadline');
  });

  test('a leader that stops releases the lease; a follower takes over without waiting', async () => {
    const lease = `release-${n++}`;
    const clock = { t: 4_000_000 };
    const a = elector('a', lease, () => clock.t, 30);
    const b = elector('b', lease, () => clock.t, 30);
    assert.equal(await a.tryOnce(), true);
    assert.equal(await b.tryOnce(), false);
    await a.stop();
    assert.equal(a.isLeader(), false);
    assert.equal(await b.tryOnce(), true);
  });

  test('real timers: two running electors, the leader is cut off, the other takes over after expiry', async () => {
    const lease = `live-${n++}`;
    // Margins for a loaded machine: a renewal (GET + PUT through the relay) may take a second or
    // more without a losing its lead, and the takeover is timed from a's last write, not the cut.
    const LEASE_S = 4;
    // "a" reaches the API server through a relay; cutting it is a leader that crashed or lost the
    // network mid-term: none of its lease writes get through, while b's still do.
    const relay = new TcpRelay(cp.apiPort);
    await relay.up();
    const admin = new KubeConfig();
    admin.loadFromFile(cp.adminKubeconfig);
    const viaRelay = new KubeConfig();
    viaRelay.loadFromOptions({
      clusters: admin.clusters.map((c) => ({ ...c, server: relay.url })),
      users: admin.users,
      contexts: admin.contexts,
      currentContext: admin.currentContext,
    });
    const make = (identity: string, coordination: CoordinationV1Api) =>
      new LeaseElector({
        api: coordination,
        namespace: 'kube-system',
        name: lease,
        identity,
        leaseDurationSeconds: LEASE_S,
        renewDeadlineMs: 2500,
        retryPeriodMs: 100,
        logger,
      });
    const a = make('a', viaRelay.makeApiClient(CoordinationV1Api));
    const b = make('b', api);
    a.start();
    await until('a leads', () => a.isLeader(), 30_000);
    b.start();
    let both = 0;
    let following = true;
    const watchOverlap = async (stop: () => boolean, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (!stop() && Date.now() < deadline) {
        if (a.isLeader() && b.isLeader()) both++;
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    try {
      await watchOverlap(() => false, 1000);
      assert.equal(a.isLeader(), true);
      assert.equal(b.isLeader(), false);
      await relay.down();
      // a's last renewal may have been sent well before the cut (a slow PUT), or land just after
      // it (a request the server had read in full): follow the Lease until b holds it and keep
      // the newest renewTime a wrote. b cannot replace a record before it stood a full lease, so
      // a poll every 100 ms sees a's last one.
      let aRenewedAt = 0;
      const followA = (async () => {
        while (following) {
          const spec = await leaseSpec(lease).catch(() => null);
          if (spec && spec.holderIdentity !== 'a') return;
          if (spec) aRenewedAt = Math.max(aRenewedAt, new Date(spec.renewTime).getTime());
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      await watchOverlap(() => b.isLeader(), 30_000);
      const tookOverAt = Date.now();
      assert.equal(b.isLeader(), true, 'b took over');
      assert.equal(a.isLeader(), false, 'a stepped down after its renew deadline');
      assert.equal(both, 0, 'never two leaders at once');
      await followA;
      assert.ok(aRenewedAt > 0, "a's renewTime was read");
      const sinceRenewal = tookOverAt - aRenewedAt;
      assert.ok(
        sinceRenewal >= LEASE_S * 1000 - 50,
        `took over ${sinceRenewal} ms after a's last renewal, before its ${LEASE_S} s lease could expire`,
      );
    } finally {
      following = false;
      await a.stop();
      await b.stop();
      await relay.down();
    }
  });
});
