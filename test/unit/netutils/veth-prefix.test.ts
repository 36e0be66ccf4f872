// AWS_VPC_K8S_CNI_VETHPREFIX (issue 13): one prefix threads through the plugin's names (conflist
// vethPrefix), its GC, the daemon's route recovery and node setup's rules (plan-aws-knobs.test.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../../src/cni/config.ts';
import { planGc } from '../../../src/cni/plugin.ts';
import { planVethAdd } from '../../../src/cni/wiring/veth.ts';
import { loadConfig } from '../../../src/ipam-daemon/config.ts';
import { hostVethName, hostVethPattern, validateVethPrefix } from '../../../src/netutils/names.ts';
import { parsePodHostRoutes } from '../../../src/netutils/pod-routes.ts';

describe('host veth prefix', () => {
  test('accepted as the AWS plugin accepts it: 1-4 characters, not eth/vlan/lo', () => {
    for (const ok of ['eni', 'vpc', 'cali', 'a1']) assert.equal(validateVethPrefix(ok), ok);
    for (const bad of ['', 'toolong', 'eth', 'vlan', 'lo', 'a-b', 'a b']) {
      assert.throws(() => validateVethPrefix(bad), bad);
    }
    assert.equal(loadConfig({}).vethPrefix, 'vpc');
    assert.equal(loadConfig({ AWS_VPC_K8S_CNI_VETHPREFIX: 'eni' }).vethPrefix, 'eni');
    assert.throws(
      () => loadConfig({ AWS_VPC_K8S_CNI_VETHPREFIX: 'eth' }),
      /AWS_VPC_K8S_CNI_VETHPREFIX="eth"/,
    );
  });

  test('names fit IFNAMSIZ with a 4-character prefix; the pattern takes exactly those names', () => {
    const name = hostVethName('c1', 'eth0', 'cali');
    assert.match(name, /^cali[0-9a-f]{11}$/);
    assert.ok(name.length <= 15);
    const p = hostVethPattern(['vpc', 'eni']);
    assert.ok(p.test(hostVethName('c1', 'eth0')) && p.test(hostVethName('c1', 'eth0', 'eni')));
    assert.ok(!p.test(name) && !p.test('eni123') && !p.test('eth0'));
  });

  test('the plugin names, plans and garbage-collects with the conflist prefix', () => {
    const conf = parseConfig({ cniVersion: '1.0.0', name: 'vpc', type: 'vpc-cni', vethPrefix: 'eni' });
    assert.equal(conf.vethPrefix, 'eni');
    assert.equal(parseConfig({ cniVersion: '1.0.0', name: 'vpc' }).vethPrefix, 'vpc');
    assert.throws(() => parseConfig({ cniVersion: '1.0.0', name: 'vpc', vethPrefix: 'vlan' }), /vethPrefix/);
    const plan = planVethAdd({
      containerId: 'c1',
      ifName: 'eth0',
      netns: '/run/netns/p',
      ip: '10.0.0.5',
      routeTable: 0,
      mtu: 1500,
      vethPrefix: 'eni',
    });
    assert.equal(plan.hostName, hostVethName('c1', 'eth0', 'eni'));
    assert.ok(plan.hostLines.some((l) => l.includes(plan.hostName)));
    const dead = hostVethName('dead', 'eth0', 'eni');
    const gc = planGc([], [{ ifname: dead }, { ifname: hostVethName('other', 'eth0') }], [], [], 'eni');
    assert.deepEqual(gc.staleLinks, [dead], 'only veths with its own prefix');
  });

  test("route recovery reads /32 routes on every listed prefix's veths", () => {
    const rows = [
      { dst: '10.0.0.1', dev: hostVethName('a', 'eth0') },
      { dst: '10.0.0.2', dev: hostVethName('b', 'eth0', 'eni') },
      { dst: '10.0.0.3', dev: 'eth1' },
    ];
    assert.deepEqual(
      parsePodHostRoutes(rows).map((r) => r.ip),
      ['10.0.0.1'],
    );
    assert.deepEqual(
      parsePodHostRoutes(rows, ['vpc', 'eni']).map((r) => r.ip),
      ['10.0.0.1', '10.0.0.2'],
    );
  });
});
