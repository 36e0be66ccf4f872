// planResync (pure): what the drift resync repairs, what it leaves to the daemon's own recent
// changes, and when it distrusts a listing. Table cases, then seeded random states checked
// against the invariants (never drop an assigned IP, never add a held or primary IP, adds only on
// managed interfaces).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type KnownInterface,
  type ObservedInterface,
  planResync,
  plansAdds,
  type RecentChanges,
  type ResyncAction,
} from '../../../src/ipam-daemon/resync-plan.ts';

const NOW = 1_000_000;
const GRACE = 30_000;

function recent(over: Partial<Record<keyof RecentChanges, Record<string, number>>> = {}): RecentChanges {
  const m = (r?: Record<string, number>) => new Map(Object.entries(r ?? {}));
  return {
    assignedIps: m(over.assignedIps),
    unassignedIps: m(over.unassignedIps),
    createdInterfaces: m(over.createdInterfaces),
    deletedInterfaces: m(over.deletedInterfaces),
  };
}

function primary(ips: KnownInterface['ips'] = []): KnownInterface {
  return {
    id: 'eni-0',
    mac: '02:00:00:00:00:00',
    deviceIndex: 0,
    primaryIp: '10.0.0.10',
    managed: true,
    draining: false,
    gone: false,
    ips,
  };
}

function secondary(over: Partial<KnownInterface> = {}): KnownInterface {
  return {
    id: 'eni-1',
    mac: '02:00:00:00:00:01',
    deviceIndex: 1,
    primaryIp: '10.0.1.10',
    managed: true,
    draining: false,
    gone: false,
    ips: [],
    ...over,
  };
}

/** The cloud's view of a known interface: its primary + the IPs listed. */
function seen(k: KnownInterface, ips: string[], over: Partial<ObservedInterface> = {}): ObservedInterface {
  return { id: k.id, mac: k.mac, deviceIndex: k.deviceIndex, ips: [k.primaryIp, ...ips], ...over };
}

function run(known: KnownInterface[], observed: ObservedInterface[], r: RecentChanges = recent()) {
  return planResync(known, observed, r, NOW, GRACE);
}

describe('planResync: IPs', () => {
  test('in sync: nothing to do', () => {
    const p0 = primary([
      { ip: '10.0.0.11', state: 'free' },
      { ip: '10.0.0.12', state: 'assigned', key: 'c1/eth0' },
      { ip: '10.0.0.13', state: 'cooling' },
    ]);
    const p = run([p0], [seen(p0, ['10.0.0.11', '10.0.0.12', '10.0.0.13'])]);
    assert.deepEqual(p, { actions: [], deferred: [], distrust: null });
  });

  test('a free or cooling IP gone from the cloud is dropped', () => {
    const p0 = primary([
      { ip: '10.0.0.11', state: 'free' },
      { ip: '10.0.0.13', state: 'cooling' },
      { ip: '10.0.0.14', state: 'free' },
    ]);
    const p = run([p0], [seen(p0, ['10.0.0.14'])]);
    assert.deepEqual(p.actions, [
      { kind: 'drop-ip', interfaceId: 'eni-0', ip: '10.0.0.11', was: 'free' },
      { kind: 'drop-ip', interfaceId: 'eni-0', ip: '10.0.0.13', was: 'cooling' },
    ]);
  });

  test('an assigned IP gone is lost (kept, reported once), and regained when it is back', () => {
    const p0 = primary([{ ip: '10.0.0.12', state: 'assigned', key: 'c1/eth0' }]);
    assert.deepEqual(run([p0], [seen(p0, [])]).actions, [
      { kind: 'lose-ip', interfaceId: 'eni-0', ip: '10.0.0.12', key: 'c1/eth0' },
    ]);
    const lost = primary([{ ip: '10.0.0.12', state: 'assigned', key: 'c1/eth0', lost: true }]);
    assert.deepEqual(run([lost], [seen(lost, [])]).actions, [], 'already reported: no repeat');
    assert.deepEqual(run([lost], [seen(lost, ['10.0.0.12'])]).actions, [
      { kind: 'regain-ip', interfaceId: 'eni-0', ip: '10.0.0.12', key: 'c1/eth0' },
    ]);
  });

  test('an IP the daemon assigned within the grace period is not dropped for being unlisted', () => {
    const p0 = primary([
      { ip: '10.0.0.11', state: 'free' },
      { ip: '10.0.0.12', state: 'assigned', key: 'c1/eth0' },
    ]);
    const fresh = recent({ assignedIps: { '10.0.0.11': NOW - 1000, '10.0.0.12': NOW - GRACE + 1 } });
    const p = run([p0], [seen(p0, [])], fresh);
    assert.deepEqual(p.actions, []);
    assert.deepEqual(
      p.deferred.map((d) => d.what),
      ['10.0.0.11 on eni-0', '10.0.0.12 on eni-0'],
    );
    const old = recent({ assignedIps: { '10.0.0.11': NOW - GRACE, '10.0.0.12': NOW - GRACE - 5 } });
    assert.deepEqual(
      run([p0], [seen(p0, [])], old).actions.map((a) => a.kind),
      ['drop-ip', 'lose-ip'],
      'grace over: repaired',
    );
  });

  test('an IP being released by the daemon is left alone', () => {
    const p0 = primary([{ ip: '10.0.0.11', state: 'releasing' }]);
    assert.deepEqual(run([p0], [seen(p0, [])]).actions, []);
  });

  test('an unknown IP on a managed interface is added as free', () => {
    const p0 = primary([{ ip: '10.0.0.11', state: 'free' }]);
    assert.deepEqual(run([p0], [seen(p0, ['10.0.0.11', '10.0.0.20', '10.0.0.20'])]).actions, [
      { kind: 'add-ip', interfaceId: 'eni-0', ip: '10.0.0.20' },
    ]);
  });

  test('never on an interface we do not manage, never its primary IP', () => {
    const s1 = secondary({ managed: false });
    const p0 = primary();
    assert.deepEqual(run([p0, s1], [seen(p0, []), seen(s1, ['10.0.1.20'])]).actions, []);
    // The known primary, even when the listing does not put it first.
    const odd: ObservedInterface = { ...seen(p0, []), ips: ['10.0.0.30', '10.0.0.10'] };
    assert.deepEqual(run([p0], [odd]).actions, [], 'neither the known primary nor the listed first IP');
  });

  test('an IP the daemon unassigned within the grace period is not re-added', () => {
    const p0 = primary();
    const fresh = recent({ unassignedIps: { '10.0.0.20': NOW - 100 } });
    const p = run([p0], [seen(p0, ['10.0.0.20'])], fresh);
    assert.deepEqual(p.actions, []);
    assert.equal(p.deferred.length, 1);
    const old = recent({ unassignedIps: { '10.0.0.20': NOW - GRACE - 1 } });
    assert.deepEqual(run([p0], [seen(p0, ['10.0.0.20'])], old).actions, [
      { kind: 'add-ip', interfaceId: 'eni-0', ip: '10.0.0.20' },
    ]);
  });

  test('a free IP that moved to another managed interface is dropped there and added here', () => {
    const p0 = primary([{ ip: '10.0.0.11', state: 'free' }]);
    const s1 = secondary();
    assert.deepEqual(run([p0, s1], [seen(p0, []), seen(s1, ['10.0.0.11'])]).actions, [
      { kind: 'drop-ip', interfaceId: 'eni-0', ip: '10.0.0.11', was: 'free' },
      { kind: 'add-ip', interfaceId: 'eni-1', ip: '10.0.0.11' },
    ]);
  });

  test("an unknown IP a pod's host route still claims is held for that pod, never added as free", () => {
    const p0 = primary([{ ip: '10.0.0.11', state: 'free' }]);
    const s1 = secondary();
    const observed = [seen(p0, ['10.0.0.11', '10.0.0.20', '10.0.0.21']), seen(s1, ['10.0.1.20'])];
    const routed = new Map([
      ['10.0.0.20', 'vpc0123456789a'],
      ['10.0.1.20', 'vpc0123456789b'],
      ['10.0.0.11', 'vpc0123456789c'], // already in the pool: start-up recovery's business, not the resync's
    ]);
    const p = planResync([p0, s1], observed, recent(), NOW, GRACE, routed);
    assert.deepEqual(p.actions, [
      { kind: 'hold-ip', interfaceId: 'eni-0', ip: '10.0.0.20', hostVeth: 'vpc0123456789a' },
      { kind: 'add-ip', interfaceId: 'eni-0', ip: '10.0.0.21' },
      { kind: 'hold-ip', interfaceId: 'eni-1', ip: '10.0.1.20', hostVeth: 'vpc0123456789b' },
    ]);
    assert.equal(plansAdds(p), true);
    // Without a route view the same IPs are plain adds (what the daemon plans before reading routes).
    const blind = planResync([p0, s1], observed, recent(), NOW, GRACE);
    assert.deepEqual(
      blind.actions.map((a) => a.kind),
      ['add-ip', 'add-ip', 'add-ip'],
    );
    // A free IP that moved here, routed to a pod: dropped there, held here.
    const moved = planResync(
      [p0, s1],
      [seen(p0, []), seen(s1, ['10.0.0.11'])],
      recent(),
      NOW,
      GRACE,
      new Map([['10.0.0.11', 'vpc0123456789c']]),
    );
    assert.deepEqual(moved.actions, [
      { kind: 'drop-ip', interfaceId: 'eni-0', ip: '10.0.0.11', was: 'free' },
      { kind: 'hold-ip', interfaceId: 'eni-1', ip: '10.0.0.11', hostVeth: 'vpc0123456789c' },
    ]);
  });

  test('routes unreadable: unknown IPs wait (deferred), the other repairs go ahead', () => {
    const p0 = primary([{ ip: '10.0.0.11', state: 'free' }]);
    const p = planResync([p0], [seen(p0, ['10.0.0.20'])], recent(), NOW, GRACE, null);
    assert.deepEqual(p.actions, [{ kind: 'drop-ip', interfaceId: 'eni-0', ip: '10.0.0.11', was: 'free' }]);
    assert.equal(p.deferred.length, 1);
    assert.match(p.deferred[0]?.why ?? '', /host routes cannot be read/);
    assert.equal(plansAdds(p), false);
    assert.equal(plansAdds(run([p0], [seen(p0, ['10.0.0.11'])])), false, 'in sync: no adds');
  });

  test('an assigned IP that moved is lost on its interface and not handed out on the other', () => {
    const p0 = primary([{ ip: '10.0.0.11', state: 'assigned', key: 'c1/eth0' }]);
    const s1 = secondary();
    assert.deepEqual(run([p0, s1], [seen(p0, []), seen(s1, ['10.0.0.11'])]).actions, [
      { kind: 'lose-ip', interfaceId: 'eni-0', ip: '10.0.0.11', key: 'c1/eth0' },
    ]);
  });
});

describe('planResync: interfaces', () => {
  test('an interface gone: free/cooling IPs dropped, assigned ones lost, kept while a pod holds one', () => {
    const p0 = primary();
    const s1 = secondary({
      ips: [
        { ip: '10.0.1.11', state: 'free' },
        { ip: '10.0.1.12', state: 'cooling' },
        { ip: '10.0.1.13', state: 'assigned', key: 'c1/eth0' },
      ],
    });
    assert.deepEqual(run([p0, s1], [seen(p0, [])]).actions, [
      { kind: 'drop-ip', interfaceId: 'eni-1', ip: '10.0.1.11', was: 'free' },
      { kind: 'drop-ip', interfaceId: 'eni-1', ip: '10.0.1.12', was: 'cooling' },
      { kind: 'lose-ip', interfaceId: 'eni-1', ip: '10.0.1.13', key: 'c1/eth0' },
      { kind: 'interface-gone', interfaceId: 'eni-1', forget: false },
    ]);
  });

  test('an interface gone with no pod on it is forgotten at once', () => {
    const s1 = secondary({ ips: [{ ip: '10.0.1.11', state: 'free' }] });
    assert.deepEqual(run([primary(), s1], [seen(primary(), [])]).actions, [
      { kind: 'drop-ip', interfaceId: 'eni-1', ip: '10.0.1.11', was: 'free' },
      { kind: 'interface-gone', interfaceId: 'eni-1', forget: true },
    ]);
  });

  test('a gone interface is forgotten once its last pod released its IP, kept before', () => {
    const held = secondary({
      gone: true,
      ips: [{ ip: '10.0.1.13', state: 'assigned', key: 'c1/eth0', lost: true }],
    });
    assert.deepEqual(run([primary(), held], [seen(primary(), [])]).actions, []);
    const empty = secondary({ gone: true });
    assert.deepEqual(run([primary(), empty], [seen(primary(), [])]).actions, [
      { kind: 'forget-interface', interfaceId: 'eni-1' },
    ]);
  });

  test('a gone interface listed again comes back, and its lost IPs with it', () => {
    const s1 = secondary({
      gone: true,
      ips: [{ ip: '10.0.1.13', state: 'assigned', key: 'c1/eth0', lost: true }],
    });
    assert.deepEqual(run([primary(), s1], [seen(primary(), []), seen(s1, ['10.0.1.13'])]).actions, [
      { kind: 'interface-back', interfaceId: 'eni-1' },
      { kind: 'regain-ip', interfaceId: 'eni-1', ip: '10.0.1.13', key: 'c1/eth0' },
    ]);
  });

  test('an interface the daemon created within the grace period is not gone for being unlisted', () => {
    const s1 = secondary({ ips: [{ ip: '10.0.1.11', state: 'free' }] });
    const p = run(
      [primary(), s1],
      [seen(primary(), [])],
      recent({ createdInterfaces: { 'eni-1': NOW - 5000 } }),
    );
    assert.deepEqual(p.actions, []);
    assert.deepEqual(p.deferred, [
      { what: 'interface eni-1', why: 'not listed yet, but the daemon created it recently' },
    ]);
  });

  test('an interface the daemon is deleting is left alone', () => {
    const s1 = secondary({ draining: true, ips: [{ ip: '10.0.1.11', state: 'releasing' }] });
    assert.deepEqual(run([primary(), s1], [seen(primary(), [])]).actions, []);
  });

  test('an unknown interface needs the API; one the daemon deleted recently is still listed: left', () => {
    const other: ObservedInterface = {
      id: 'eni-9',
      mac: '02:00:00:00:00:09',
      deviceIndex: 2,
      ips: ['10.0.9.9'],
    };
    assert.deepEqual(run([primary()], [seen(primary(), []), other]).actions, [
      { kind: 'unknown-interface', id: 'eni-9', mac: '02:00:00:00:00:09', deviceIndex: 2 },
    ]);
    const p = run(
      [primary()],
      [seen(primary(), []), other],
      recent({ deletedInterfaces: { 'eni-9': NOW - 1 } }),
    );
    assert.deepEqual(p.actions, []);
    assert.equal(p.deferred[0]?.what, 'interface eni-9');
  });

  test('ids compare without case (ARM ids); a listing without ids matches by MAC', () => {
    const nic = secondary({
      id: '/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/networkInterfaces/nic1',
    });
    const upper = seen(nic, [], { id: nic.id.toUpperCase() });
    assert.deepEqual(run([primary(), nic], [seen(primary(), []), upper]).actions, []);
    const byMac = seen(nic, ['10.0.1.50'], { id: '' });
    assert.deepEqual(run([primary(), nic], [seen(primary(), [], { id: '' }), byMac]).actions, [
      { kind: 'add-ip', interfaceId: nic.id, ip: '10.0.1.50' },
    ]);
  });
});

describe('planResync: untrusted listings', () => {
  test('an empty listing repairs nothing', () => {
    const p0 = primary([{ ip: '10.0.0.11', state: 'free' }]);
    const p = run([p0], []);
    assert.deepEqual(p.actions, []);
    assert.match(p.distrust ?? '', /no interface/);
  });

  test('a listing without the primary interface repairs nothing', () => {
    const p0 = primary([{ ip: '10.0.0.11', state: 'free' }]);
    const s1 = secondary();
    const p = run([p0, s1], [seen(s1, [])]);
    assert.deepEqual(p.actions, []);
    assert.match(p.distrust ?? '', /primary interface eni-0/);
  });
});

describe('planResync: invariants on random states', () => {
  // Deterministic PRNG (mulberry32) so a failure reproduces.
  function rng(seed: number) {
    let a = seed;
    return () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const STATES = ['free', 'assigned', 'cooling', 'releasing'] as const;

  test('2000 random cases', () => {
    const seenKinds = new Map<string, number>();
    for (let seed = 1; seed <= 2000; seed++) {
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)] as T;
      const pool = Array.from({ length: 12 }, (_, i) => `10.0.5.${i + 20}`);
      const known: KnownInterface[] = [];
      const nIfs = 1 + Math.floor(r() * 3);
      const free = [...pool];
      for (let d = 0; d < nIfs; d++) {
        const ips: KnownInterface['ips'] = [];
        for (let j = 0; j < 3; j++) {
          if (r() < 0.5 || free.length === 0) continue;
          const ip = free.splice(Math.floor(r() * free.length), 1)[0] as string;
          const state = pick(STATES);
          ips.push({
            ip,
            state,
            ...(state === 'assigned' ? { key: `c${ip}/eth0`, ...(r() < 0.3 ? { lost: true } : {}) } : {}),
          });
        }
        known.push({
          id: `eni-${d}`,
          mac: `02:00:00:00:00:0${d}`,
          deviceIndex: d,
          primaryIp: `10.0.9.${d}`,
          managed: d === 0 || r() < 0.7,
          draining: d > 0 && r() < 0.1,
          gone: d > 0 && r() < 0.1,
          ips,
        });
      }
      const observed: ObservedInterface[] = [];
      for (const k of known) {
        if (k.deviceIndex > 0 && r() < 0.2) continue;
        const ips = [k.primaryIp, ...pool.filter(() => r() < 0.25)];
        observed.push({ id: k.id, mac: k.mac, deviceIndex: k.deviceIndex, ips });
      }
      if (r() < 0.2)
        observed.push({ id: 'eni-7', mac: '02:00:00:00:00:07', deviceIndex: 7, ips: ['10.0.9.7'] });
      const rc = recent({
        assignedIps: Object.fromEntries(
          pool.filter(() => r() < 0.15).map((ip) => [ip, NOW - Math.floor(r() * 2 * GRACE)]),
        ),
        unassignedIps: Object.fromEntries(
          pool.filter(() => r() < 0.15).map((ip) => [ip, NOW - Math.floor(r() * 2 * GRACE)]),
        ),
      });
      const routedMode = r();
      const routed =
        routedMode < 0.3
          ? undefined
          : routedMode < 0.4
            ? null
            : new Map(
                pool
                  .filter(() => r() < 0.3)
                  .map((ip) => [ip, `vpc${ip.replaceAll('.', '').padStart(11, '0')}`]),
              );
      const p = planResync(known, observed, rc, NOW, GRACE, routed);
      const where = `seed ${seed}`;
      const stateOf = new Map(known.flatMap((k) => k.ips.map((s) => [s.ip, { k, s }] as const)));
      const dropped = new Set<string>();
      const added = new Set<string>();
      for (const a of p.actions as ResyncAction[]) {
        seenKinds.set(a.kind, (seenKinds.get(a.kind) ?? 0) + 1);
        if (a.kind === 'drop-ip') {
          const cur = stateOf.get(a.ip);
          assert.ok(
            cur && (cur.s.state === 'free' || cur.s.state === 'cooling'),
            `${where}: drops only free/cooling`,
          );
          const at = rc.assignedIps.get(a.ip);
          const ifaceListed = observed.some((o) => o.id === cur.k.id);
          if (ifaceListed) assert.ok(at === undefined || NOW - at >= GRACE, `${where}: no drop within grace`);
          dropped.add(a.ip);
        }
        if (a.kind === 'lose-ip') {
          const cur = stateOf.get(a.ip);
          assert.ok(cur?.s.state === 'assigned' && !cur.s.lost, `${where}: loses only assigned, once`);
        }
        if (a.kind === 'add-ip' || a.kind === 'hold-ip') {
          assert.notEqual(routed, null, `${where}: nothing added while the routes are unreadable`);
          if (a.kind === 'add-ip')
            assert.ok(!routed?.has(a.ip), `${where}: an IP a pod route claims is never added as free`);
          else assert.equal(a.hostVeth, routed?.get(a.ip), `${where}: held for the veth its route is on`);
          const k = known.find((x) => x.id === a.interfaceId);
          assert.ok(k?.managed, `${where}: adds only on managed interfaces`);
          assert.notEqual(a.ip, k.primaryIp, `${where}: never the primary`);
          assert.ok(!stateOf.has(a.ip) || dropped.has(a.ip), `${where}: never an IP the pool still holds`);
          assert.ok(!added.has(a.ip), `${where}: added once`);
          const at = rc.unassignedIps.get(a.ip);
          assert.ok(at === undefined || NOW - at >= GRACE, `${where}: no re-add within grace`);
          added.add(a.ip);
        }
        if (a.kind !== 'unknown-interface' && a.kind !== 'forget-interface') {
          const k = known.find((x) => x.id === a.interfaceId);
          assert.ok(k && !k.draining, `${where}: never touches a draining interface`);
        }
      }
    }
    // The random states reach every kind of repair (the invariants above are not vacuous).
    for (const kind of [
      'drop-ip',
      'lose-ip',
      'regain-ip',
      'add-ip',
      'hold-ip',
      'interface-gone',
      'forget-interface',
      'interface-back',
      'unknown-interface',
    ]) {
      assert.ok((seenKinds.get(kind) ?? 0) > 0, `no ${kind} in 2000 random cases`);
    }
  });
});
