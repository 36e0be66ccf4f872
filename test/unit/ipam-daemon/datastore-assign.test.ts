// Datastore.assign picks the free IP of the allocatable interface with the lowest device index,
// the first such IP in the pool's order. Its scan stops early (it runs on every allocation): the
// pick is checked against a full scan over random pools, interface states and churn.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Datastore } from '../../../src/ipam-daemon/datastore.ts';

interface Peek {
  ips: Map<string, { ip: string; state: string; interfaceId: string }>;
  interfaces: Map<string, { deviceIndex: number }>;
  allocatable(id: string): boolean;
}

/** The full scan: every IP, lowest device index, first in order on a tie. */
function fullScan(ds: Datastore): string | undefined {
  const p = ds as unknown as Peek;
  let best: string | undefined;
  let bestIdx = Number.POSITIVE_INFINITY;
  for (const s of p.ips.values()) {
    if (s.state !== 'free' || !p.allocatable(s.interfaceId)) continue;
    const idx = p.interfaces.get(s.interfaceId)?.deviceIndex ?? Number.POSITIVE_INFINITY;
    if (idx < bestIdx) {
      best = s.ip;
      bestIdx = idx;
    }
  }
  return best;
}

test('assign picks what a full scan picks, over 200 random pools with churn', () => {
  let seed = 5;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let round = 0; round < 200; round++) {
    const ds = new Datastore({ cooldownMs: rnd() < 0.5 ? 0 : 30_000, vpcCidrs: ['10.0.0.0/16'] });
    const n = 1 + Math.floor(rnd() * 5);
    const order = Array.from({ length: n }, (_, i) => i).sort(() => rnd() - 0.5);
    for (const [i, dev] of order.entries()) {
      ds.upsertInterface({
        id: `eni-${i}`,
        mac: `02:00:00:00:00:0${i}`,
        deviceIndex: dev,
        subnetId: 'subnet-1',
        subnetCidr: '10.0.0.0/16',
        primaryIp: `10.0.${i}.1`,
        usable: rnd() < 0.8,
        deletable: false,
        draining: rnd() < 0.2,
      });
    }
    // IPs arrive in interleaved batches, so one interface's IPs are not all together.
    let next = 10;
    for (let b = 0; b < 2 * n; b++) {
      const i = Math.floor(rnd() * n);
      ds.addIps(
        `eni-${i}`,
        Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => `10.0.${i}.${next++}`),
      );
    }
    let now = 1_000;
    const held: number[] = [];
    for (let step = 0; step < 40; step++) {
      now += 1_000;
      if (held.length > 0 && rnd() < 0.4) {
        const c = held.splice(Math.floor(rnd() * held.length), 1)[0];
        ds.release({ containerId: `c${c}`, ifName: 'eth0' }, now);
        continue;
      }
      const want = fullScan(ds);
      const got = ds.assign({ containerId: `c${step}`, ifName: 'eth0' }, now);
      assert.equal(got?.ip, want, `round ${round} step ${step}`);
      if (got) held.push(step);
    }
  }
});
