import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  goneRecoveries,
  type IpHolder,
  planRecovery,
  recoveredKey,
} from '../../../src/ipam-daemon/route-recovery.ts';
import { validateContainerId, validateIfName } from '../../../src/netutils/validate.ts';

const r = (ip: string, hostVeth: string) => ({ ip, hostVeth });

describe('route recovery (pure)', () => {
  test('routed IPs that are free or cooling are recovered; held, misplaced and foreign ones are not', () => {
    const holders: Record<string, IpHolder> = {
      '10.0.0.1': { state: 'free' },
      '10.0.0.2': { state: 'cooling' },
      '10.0.0.3': { state: 'assigned', key: 'c3/eth0', hostVeth: 'vpc00000000003' },
      '10.0.0.4': { state: 'assigned', key: 'c4/eth0', hostVeth: 'vpc00000000004' },
    };
    const routes = [
      r('10.0.0.1', 'vpc00000000001'),
      r('10.0.0.2', 'vpc00000000002'),
      r('10.0.0.3', 'vpc00000000003'),
      r('10.0.0.4', 'vpc0000000000f'),
      r('10.9.9.9', 'vpc00000000009'),
    ];
    const p = planRecovery(routes, (ip) => holders[ip] ?? { state: 'not-on-node' });
    assert.deepEqual(p.recover, [routes[0], routes[1]]);
    assert.deepEqual(p.held, [routes[2]]);
    assert.deepEqual(p.heldElsewhere, [{ ...routes[3], key: 'c4/eth0', expectedVeth: 'vpc00000000004' }]);
    assert.deepEqual(p.notOnNode, [routes[4]]);
  });

  test('no routes: nothing to recover', () => {
    const p = planRecovery([], () => ({ state: 'free' }));
    assert.deepEqual(p, { recover: [], held: [], heldElsewhere: [], notOnNode: [] });
  });

  test('a recovered entry goes when its route is gone or moved to another veth, not before', () => {
    const entries = [
      { ip: '10.0.0.1', recoveredFrom: 'vpc00000000001' },
      { ip: '10.0.0.2', recoveredFrom: 'vpc00000000002' },
      { ip: '10.0.0.3', recoveredFrom: 'vpc00000000003' },
      { ip: '10.0.0.4' }, // a normal allocation: never released by routes
    ];
    const gone = goneRecoveries(entries, [r('10.0.0.1', 'vpc00000000001'), r('10.0.0.3', 'vpc0000000000f')]);
    assert.deepEqual(
      gone.map((e) => e.ip),
      ['10.0.0.2', '10.0.0.3'],
    );
    assert.deepEqual(
      goneRecoveries(
        entries,
        entries.filter((e) => e.recoveredFrom).map((e) => r(e.ip, e.recoveredFrom as string)),
      ),
      [],
    );
  });

  test('recovered keys are valid CNI keys, distinct per IP, and named after the veth', () => {
    const a = recoveredKey(r('10.0.0.1', 'vpc0123456789a'));
    const b = recoveredKey(r('10.0.0.2', 'vpc0123456789a'));
    validateContainerId(a.containerId);
    validateIfName(a.ifName);
    assert.notEqual(a.containerId, b.containerId);
    assert.match(a.containerId, /vpc0123456789a/);
  });
});
