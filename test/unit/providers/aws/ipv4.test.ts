import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  cidrContains,
  intToIp,
  ipToInt,
  isIpv4,
  isReservedInSubnet,
  parseCidr,
  pickFreeAddresses,
  subnetGateway,
  usableAddressCount,
} from '../../../../src/providers/aws/ipv4.ts';

describe('ipv4', () => {
  test('parse and format round-trip', () => {
    for (const ip of ['0.0.0.0', '10.64.0.1', '255.255.255.255', '192.168.1.200']) {
      assert.equal(intToIp(ipToInt(ip)), ip);
    }
    assert.equal(ipToInt('10.0.0.1'), 167772161);
  });
  test('rejects non-addresses', () => {
    for (const bad of ['', '10.0.0', '10.0.0.256', '01.2.3.4', '1.2.3.4 ', 'a.b.c.d', '1.2.3.4/32']) {
      assert.equal(isIpv4(bad), false, bad);
    }
    assert.throws(() => ipToInt('10.0.0.256'), /not an IPv4 address/);
    assert.throws(() => parseCidr('10.0.0.0/33'), /not an IPv4 CIDR/);
  });
  test('cidr math', () => {
    assert.deepEqual(parseCidr('10.64.32.7/27'), { network: ipToInt('10.64.32.0'), prefix: 27, size: 32 });
    assert.ok(cidrContains('10.64.32.0/27', '10.64.32.31'));
    assert.ok(!cidrContains('10.64.32.0/27', '10.64.32.32'));
    assert.equal(subnetGateway('10.64.16.0/20'), '10.64.16.1');
    assert.equal(usableAddressCount('10.64.32.0/27'), 27);
  });
  test('AWS reserves the first four and the last address', () => {
    const reserved = [0, 1, 2, 3, 31].map((o) => `10.64.32.${o}`);
    for (let o = 0; o < 32; o++) {
      const ip = `10.64.32.${o}`;
      assert.equal(isReservedInSubnet('10.64.32.0/27', ip), reserved.includes(ip), ip);
    }
  });
  test('pickFreeAddresses skips reserved and taken addresses, lowest first', () => {
    const taken = new Set(['10.64.32.4', '10.64.32.6']);
    assert.deepEqual(pickFreeAddresses('10.64.32.0/27', taken, 3), [
      '10.64.32.5',
      '10.64.32.7',
      '10.64.32.8',
    ]);
    const all = pickFreeAddresses('10.64.32.0/27', new Set(), 100);
    assert.equal(all.length, 27);
    assert.equal(all.at(-1), '10.64.32.30');
  });
});
