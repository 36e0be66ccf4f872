import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  cidrContains,
  firstHost,
  parseIpv4,
  ValidationError,
  validateCidr,
  validateContainerId,
  validateIfName,
  validateMac,
  validateNetnsPath,
} from '../../../src/netutils/validate.ts';

describe('validate', () => {
  test('interface names: IFNAMSIZ and forbidden characters', () => {
    for (const ok of ['eth0', 'a', 'vpc0123456789ab', 'eth0.100', 'net@1'])
      assert.equal(validateIfName(ok), ok);
    for (const bad of ['', '.', '..', 'a/b', 'a b', 'eth:0', 'x'.repeat(16), 'tab\t']) {
      assert.throws(() => validateIfName(bad), ValidationError, bad);
    }
  });

  test('container ids', () => {
    assert.equal(validateContainerId('abc_1.2-3'), 'abc_1.2-3');
    for (const bad of ['', '-x', 'a b', 'a/b', 'x'.repeat(257), 'a;b', '../x']) {
      assert.throws(() => validateContainerId(bad), ValidationError, bad);
    }
  });

  test('netns paths must be absolute and normalised', () => {
    assert.equal(validateNetnsPath('/var/run/netns/x'), '/var/run/netns/x');
    for (const bad of ['relative', '/a/../b', '/a/./b', '/a\0b', '']) {
      assert.throws(() => validateNetnsPath(bad), ValidationError, JSON.stringify(bad));
    }
  });

  test('MACs are lower-cased', () => {
    assert.equal(validateMac('02:AA:bb:00:11:22'), '02:aa:bb:00:11:22');
    assert.throws(() => validateMac('02:aa:bb:00:11'), ValidationError);
  });

  test('IPv4 and CIDR arithmetic', () => {
    assert.equal(parseIpv4('10.0.0.1'), 0x0a000001);
    for (const bad of ['10.0.0', '256.1.1.1', '01.1.1.1', '1.1.1.1.1', 'a.b.c.d'])
      assert.equal(parseIpv4(bad), null);
    assert.equal(validateCidr('10.64.3.7/16'), '10.64.0.0/16');
    assert.equal(validateCidr('0.0.0.0/0'), '0.0.0.0/0');
    assert.throws(() => validateCidr('10.0.0.0/33'), ValidationError);
    assert.equal(firstHost('10.64.1.0/24'), '10.64.1.1');
    assert.equal(firstHost('10.64.1.32/27'), '10.64.1.33');
    assert.ok(cidrContains('10.64.0.0/10', '10.127.255.255'));
    assert.ok(!cidrContains('10.64.0.0/10', '10.128.0.0'));
    assert.ok(cidrContains('0.0.0.0/0', '8.8.8.8'));
  });
});
