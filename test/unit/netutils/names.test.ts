import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HOST_VETH_PREFIX, hostVethName, vethMacs } from '../../../src/netutils/names.ts';
import { validateIfName, validateMac } from '../../../src/netutils/validate.ts';

describe('veth names and MACs', () => {
  test('stable, valid, within IFNAMSIZ', () => {
    const a = hostVethName('abc123', 'eth0');
    assert.equal(a, hostVethName('abc123', 'eth0'));
    assert.ok(a.startsWith(HOST_VETH_PREFIX));
    assert.ok(a.length <= 15);
    validateIfName(a);
  });

  test('distinct for different containers and interfaces (10k ids, no collisions)', () => {
    const names = new Set<string>();
    for (let i = 0; i < 10_000; i++) names.add(hostVethName(`container-${i}`, 'eth0'));
    names.add(hostVethName('container-0', 'eth1'));
    assert.equal(names.size, 10_001);
  });

  test('MACs are unicast, locally administered, and differ between ends', () => {
    const { host, pod } = vethMacs('abc', 'eth0');
    validateMac(host);
    validateMac(pod);
    assert.notEqual(host, pod);
    for (const mac of [host, pod]) {
      const first = Number.parseInt(mac.slice(0, 2), 16);
      assert.equal(first & 1, 0, 'unicast');
      assert.equal(first & 2, 2, 'locally administered');
    }
  });
});
