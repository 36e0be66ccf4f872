import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkNetPlan, ipArgv, type NetOp, TABLE_MAIN } from '../../../src/cni/wiring/net-ops.ts';
import { planHostCleanup, planVethAdd, vethDelPlan, vethNetPlan } from '../../../src/cni/wiring/veth.ts';

describe('wiring plan as data (net-ops)', () => {
  test('each op renders as the ip line that makes the same change', () => {
    const cases: Array<[NetOp, string]> = [
      [
        {
          op: 'veth',
          name: 'vpc1',
          mac: '02:00:00:00:00:01',
          mtu: 9001,
          peer: 'eth0',
          peerMac: '06:00:00:00:00:01',
          peerNetns: '/run/netns/p',
        },
        'link add name vpc1 address 02:00:00:00:00:01 mtu 9001 type veth peer name eth0 address 06:00:00:00:00:01 mtu 9001 netns /run/netns/p',
      ],
      [{ op: 'up', dev: 'eth0' }, 'link set dev eth0 up'],
      [{ op: 'addr', dev: 'eth0', cidr: '10.0.0.5/32' }, 'addr add 10.0.0.5/32 dev eth0'],
      [
        { op: 'route', dst: '10.0.0.5/32', dev: 'vpc1', scopeLink: true, proto: 118, replace: true },
        'route replace 10.0.0.5/32 dev vpc1 scope link proto 118',
      ],
      [
        { op: 'route', dst: '0.0.0.0/0', via: '169.254.1.1', dev: 'eth0' },
        'route add default via 169.254.1.1 dev eth0',
      ],
      [
        { op: 'rule', to: '10.0.0.5/32', table: TABLE_MAIN, priority: 512, proto: 118 },
        'rule add to 10.0.0.5/32 lookup main priority 512 protocol 118',
      ],
      [
        { op: 'rule', from: '10.0.0.5/32', table: 3, priority: 1536 },
        'rule add from 10.0.0.5/32 lookup 3 priority 1536',
      ],
      [
        { op: 'neigh', dev: 'eth0', ip: '169.254.1.1', mac: '02:00:00:00:00:01' },
        'neigh add 169.254.1.1 lladdr 02:00:00:00:00:01 dev eth0 nud permanent',
      ],
      [{ op: 'linkDel', dev: 'vpc1' }, 'link del dev vpc1'],
      [
        { op: 'ruleDel', to: '10.0.0.5/32', table: TABLE_MAIN, priority: 512 },
        'rule del to 10.0.0.5/32 lookup main priority 512',
      ],
      [{ op: 'ruleDel', from: '10.0.0.5/32', priority: 1536 }, 'rule del from 10.0.0.5/32 priority 1536'],
      [{ op: 'routeDel', dst: '10.0.0.5/32', dev: 'vpc1' }, 'route del 10.0.0.5/32 dev vpc1 table main'],
    ];
    for (const [op, line] of cases) assert.equal(ipArgv(op).join(' '), line);
  });

  test('the veth plan for the shim: pair + host side in the node, pod side in its netns, same ops as the batches', () => {
    const p = planVethAdd({
      containerId: 'c1',
      ifName: 'eth0',
      netns: '/run/netns/p1',
      ip: '10.64.1.9',
      routeTable: 2,
      mtu: 1500,
    });
    const plan = vethNetPlan(p, '/run/netns/p1');
    assert.equal(plan.steps.length, 2);
    assert.equal(plan.steps[0]?.netns, undefined);
    assert.deepEqual(plan.steps[0]?.ops.map(ipArgv), [...p.linkLines, ...p.hostLines]);
    assert.equal(plan.steps[1]?.netns, '/run/netns/p1');
    assert.deepEqual(plan.steps[1]?.ops.map(ipArgv), p.podLines);
    checkNetPlan(plan);
  });

  /** A DEL plan's first step: the IP's rules, only while the IP routes to this veth or nowhere. */
  const guardedRuleDels = {
    onlyIfRoute: { dst: '10.64.1.9/32', devs: ['vpc0123456789a'] },
    ops: [
      { op: 'ruleDel', to: '10.64.1.9/32', table: TABLE_MAIN, priority: 512 },
      { op: 'ruleDel', from: '10.64.1.9/32', priority: 1536 },
    ],
  };

  test("the DEL plan for the shim: the IP's rules only while it routes to this veth or nowhere, then the veth; node side only", () => {
    const plan = vethDelPlan('vpc0123456789a', '10.64.1.9');
    assert.deepEqual(plan, {
      steps: [guardedRuleDels, { ops: [{ op: 'linkDel', dev: 'vpc0123456789a' }] }],
    });
    // The same deletions, in the same order, as the daemon-side `ip -batch` cleanup.
    assert.deepEqual(
      plan.steps.flatMap((s) => s.ops.map(ipArgv)),
      planHostCleanup('vpc0123456789a', '10.64.1.9'),
    );
    assert.ok(
      plan.steps.every((s) => s.netns === undefined),
      'nothing in the pod netns (it may be gone)',
    );
    checkNetPlan(plan);
  });

  test('the DEL plan that leaves the veth (plan version 3): the same guarded rules, then the /32 route through this veth; no link deleted', () => {
    const plan = vethDelPlan('vpc0123456789a', '10.64.1.9', true);
    assert.deepEqual(plan, {
      steps: [guardedRuleDels, { ops: [{ op: 'routeDel', dst: '10.64.1.9/32', dev: 'vpc0123456789a' }] }],
    });
    assert.ok(!plan.steps.some((s) => s.ops.some((o) => o.op === 'linkDel' || o.op === 'veth')));
    assert.ok(plan.steps.every((s) => s.netns === undefined));
    checkNetPlan(plan);
  });

  test('a malformed plan is refused before it leaves the daemon', () => {
    const bad: NetOp[] = [
      { op: 'up', dev: 'a b' },
      { op: 'up', dev: 'x'.repeat(16) },
      { op: 'addr', dev: 'eth0', cidr: '10.0.0.5' },
      { op: 'route', dst: 'default', dev: 'eth0' },
      { op: 'route', dst: '0.0.0.0/0', dev: 'eth0', via: 'gw' },
      { op: 'rule', table: 3, priority: 1 },
      { op: 'rule', from: '10.0.0.1/32', to: '10.0.0.2/32', table: 3, priority: 1 },
      { op: 'rule', to: '10.0.0.1/32', table: 0, priority: 1 },
      { op: 'neigh', dev: 'eth0', ip: '169.254.1.1', mac: 'zz' },
      { op: 'linkDel', dev: 'a;b' },
      { op: 'routeDel', dst: '10.0.0.1', dev: 'vpc1' },
      { op: 'routeDel', dst: '10.0.0.1/32', dev: 'a b' },
      { op: 'ruleDel', priority: 512 },
      { op: 'ruleDel', to: '10.0.0.1', priority: 512 },
      { op: 'ruleDel', from: '10.0.0.1/32', table: 0, priority: 512 },
      { op: 'ruleDel', from: '10.0.0.1/32', priority: 1.5 },
      {
        op: 'veth',
        name: 'v',
        mac: '02:00:00:00:00:01',
        mtu: 20,
        peer: 'eth0',
        peerMac: '06:00:00:00:00:01',
        peerNetns: '/p',
      },
    ];
    for (const op of bad)
      assert.throws(() => checkNetPlan({ steps: [{ ops: [op] }] }), /bad/, JSON.stringify(op));
    assert.throws(() => checkNetPlan({ steps: [{ netns: 'rel', ops: [] }] }), /absolute/);
    for (const onlyIfRoute of [
      { dst: '10.0.0.1', devs: ['vpc1'] },
      { dst: '10.0.0.1/32', devs: [] },
      { dst: '10.0.0.1/32', devs: ['bad name'] },
    ]) {
      assert.throws(() => checkNetPlan({ steps: [{ onlyIfRoute, ops: [] }] }), /onlyIfRoute/);
    }
  });
});
