import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidMac, normalizeMac } from '../../../../src/providers/aws/mac.ts';

test('valid MACs pass through, lower-cased', () => {
  assert.equal(normalizeMac('0E:1A:2B:3C:4D:5E', 'eni-1'), '0e:1a:2b:3c:4d:5e');
});

test("moto's decimal+'02x' octets are repaired to the bytes it meant", () => {
  assert.equal(normalizeMac('02:00:00:24002x:18302x:19302x', 'eni-1'), '02:00:00:f0:b7:c1');
  assert.equal(normalizeMac('02:00:00:002x:502x:25502x', 'eni-1'), '02:00:00:00:05:ff');
});

test('anything else unparsable gets a stable, unicast, locally administered MAC from the id', () => {
  for (const raw of [undefined, '', 'garbage', '02:00:00:99902x:1:2']) {
    const a = normalizeMac(raw, 'eni-0abc');
    assert.ok(isValidMac(a), a);
    assert.equal(a, normalizeMac(raw, 'eni-0abc'));
    const first = Number.parseInt(a.slice(0, 2), 16);
    assert.equal(first & 1, 0, 'unicast');
    assert.equal(first & 2, 2, 'locally administered');
  }
  assert.notEqual(normalizeMac('', 'eni-0abc'), normalizeMac('', 'eni-0abd'));
});
