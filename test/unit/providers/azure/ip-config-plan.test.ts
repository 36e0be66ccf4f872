import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type IpConfigView, planAdd, planRemove } from '../../../../src/providers/azure/ip-config-plan.ts';
import { LimitExceededError } from '../../../../src/providers/errors.ts';

const nic = (secondaries: string[], extra: IpConfigView[] = []): IpConfigView[] => [
  { name: 'ipconfig1', privateIPAddress: '10.0.0.4', primary: true },
  ...secondaries.map((ip, i) => ({ name: `s${i}`, privateIPAddress: ip, primary: false })),
  ...extra,
];

describe('planAdd', () => {
  test('count: names unique to the request token, nothing else changes', () => {
    const p = planAdd(nic(['10.0.0.5']), { count: 3 }, 'ab12');
    assert.deepEqual(p.add, [
      { name: 'vpc-ipam-ab12-0' },
      { name: 'vpc-ipam-ab12-1' },
      { name: 'vpc-ipam-ab12-2' },
    ]);
    assert.deepEqual(p.names, ['vpc-ipam-ab12-0', 'vpc-ipam-ab12-1', 'vpc-ipam-ab12-2']);
  });

  test('count: a retry recognises configurations a lost response already wrote', () => {
    const current = nic(
      [],
      [
        { name: 'vpc-ipam-ab12-0', privateIPAddress: '10.0.0.9', primary: false },
        { name: 'vpc-ipam-ab12-1', privateIPAddress: '10.0.0.10', primary: false },
      ],
    );
    assert.deepEqual(planAdd(current, { count: 3 }, 'ab12').add, [{ name: 'vpc-ipam-ab12-2' }]);
    assert.deepEqual(planAdd(current, { count: 2 }, 'ab12').add, []);
    assert.equal(planAdd(current, { count: 2 }, 'cd34').add.length, 2, 'another request adds its own');
  });

  test('ips: static configurations only for addresses the NIC lacks; duplicates collapse', () => {
    const p = planAdd(nic(['10.0.0.5']), { ips: ['10.0.0.5', '10.0.0.6', '10.0.0.6'] }, 'x1');
    assert.deepEqual(p.add, [{ name: 'vpc-ipam-x1-1', privateIPAddress: '10.0.0.6' }]);
    assert.deepEqual(p.alreadyPresent, ['10.0.0.5']);
  });

  test('ips: the primary address is never handed out', () => {
    assert.throws(() => planAdd(nic([]), { ips: ['10.0.0.4'] }, 'x1'), /primary/);
  });

  test('256 limit counts the primary; exactly full is allowed, one more is LimitExceeded', () => {
    const full = Array.from({ length: 254 }, (_, i) => `10.0.${1 + (i >> 8)}.${i & 255}`);
    assert.equal(planAdd(nic(full), { count: 1 }, 'a').add.length, 1);
    assert.throws(() => planAdd(nic(full), { count: 2 }, 'a'), LimitExceededError);
    assert.throws(() => planAdd(nic([]), { count: 5 }, 'a', 5), LimitExceededError);
    assert.equal(planAdd(nic([]), { count: 4 }, 'a', 5).add.length, 4);
  });

  test('bad input', () => {
    assert.throws(() => planAdd(nic([]), { count: 0 }, 'a'), RangeError);
    assert.throws(() => planAdd(nic([]), { count: 1.5 }, 'a'), RangeError);
    assert.throws(() => planAdd(nic([]), { ips: [] }, 'a'), RangeError);
    assert.throws(() => planAdd(nic([]), { count: 1 }, 'Bad-Token'), TypeError);
  });
});

describe('planRemove', () => {
  test('drops secondaries holding the addresses; reports the absent ones', () => {
    const p = planRemove(nic(['10.0.0.5', '10.0.0.6', '10.0.0.7']), ['10.0.0.6', '10.0.0.99']);
    assert.deepEqual(p.remove, ['s1']);
    assert.deepEqual(p.absent, ['10.0.0.99']);
  });

  test('refuses the primary address', () => {
    assert.throws(() => planRemove(nic(['10.0.0.5']), ['10.0.0.5', '10.0.0.4']), /primary/);
  });

  test('exhaustive over small NICs: the primary survives and exactly the asked secondaries go', () => {
    const pool = ['10.0.0.5', '10.0.0.6', '10.0.0.7', '10.0.0.8'];
    for (let held = 0; held < 16; held++) {
      for (let asked = 0; asked < 16; asked++) {
        const secondaries = pool.filter((_, i) => held & (1 << i));
        const ask = pool.filter((_, i) => asked & (1 << i));
        const current = nic(secondaries);
        const p = planRemove(current, ask);
        const kept = current.filter((c) => !p.remove.includes(c.name));
        assert.ok(kept.some((c) => c.primary));
        assert.deepEqual(
          kept.filter((c) => !c.primary).map((c) => c.privateIPAddress),
          secondaries.filter((ip) => !ask.includes(ip)),
        );
        assert.deepEqual(
          p.absent,
          ask.filter((ip) => !secondaries.includes(ip)),
        );
      }
    }
  });
});
