import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CniError,
  compareVersions,
  formatError,
  formatResult,
  mergeResult,
  parseResult,
} from '../../../src/cni/spec.ts';

const ours = {
  cniVersion: '1.0.0',
  interfaces: [
    { name: 'vpcabc', mac: '02:00:00:00:00:01' },
    { name: 'eth0', mac: '06:00:00:00:00:01', sandbox: '/ns' },
  ],
  ips: [{ address: '10.64.1.5/32', gateway: '169.254.1.1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }],
  dns: {},
};

describe('CNI spec I/O', () => {
  test('0.4.0 results carry ip version; 1.x results do not', () => {
    const v04 = formatResult(ours, '0.4.0') as { ips: { version?: string }[]; cniVersion: string };
    assert.equal(v04.cniVersion, '0.4.0');
    assert.equal(v04.ips[0]!.version, '4');
    const v11 = formatResult(ours, '1.1.0') as { ips: { version?: string }[] };
    assert.equal(v11.ips[0]!.version, undefined);
  });

  test('a 0.4.0 prevResult parses into the 1.x shape and round-trips', () => {
    const prev = parseResult(formatResult(ours, '0.4.0'));
    assert.deepEqual(prev.ips, [{ address: '10.64.1.5/32', gateway: '169.254.1.1', interface: 1 }]);
    assert.deepEqual(prev.interfaces, ours.interfaces);
  });

  test('garbage prevResult is a decode error (code 6)', () => {
    for (const bad of [
      null,
      3,
      { ips: 'x' },
      { interfaces: [{}] },
      { ips: [{ gateway: 'x' }] },
      { routes: [{}] },
    ]) {
      assert.throws(
        () => parseResult(bad),
        (e: unknown) => e instanceof CniError && e.code === 6,
      );
    }
  });

  test('a decode error names the list, or the entry and the field it lacks', () => {
    const cases: [unknown, string][] = [
      [{ interfaces: {} }, 'prevResult.interfaces is not a list'],
      [{ interfaces: [{ name: 'a' }, { name: 1 }] }, 'prevResult.interfaces[1] has no name'],
      [{ ips: [{ address: '10.0.0.1/32' }, 'x'] }, 'prevResult.ips[1] has no address'],
      [{ routes: 'x' }, 'prevResult.routes is not a list'],
      [{ routes: [{ gw: '1.1.1.1' }] }, 'prevResult.routes[0] has no dst'],
    ];
    for (const [bad, message] of cases) {
      assert.throws(
        () => parseResult(bad),
        (e: unknown) => e instanceof CniError && e.code === 6 && e.message === message,
        message,
      );
    }
  });

  test('chaining appends our interfaces and re-indexes our IPs', () => {
    const prev = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'other' }],
      ips: [{ address: '192.0.2.1/24', interface: 0 }],
    };
    const merged = mergeResult(prev, ours);
    assert.equal(merged.interfaces?.length, 3);
    assert.deepEqual(
      merged.ips?.map((i) => i.interface),
      [0, 2],
    );
    assert.equal(mergeResult(undefined, ours), ours);
  });

  test('errors are spec-shaped', () => {
    assert.deepEqual(formatError(new CniError(11, 'later', 'why'), '1.0.0'), {
      cniVersion: '1.0.0',
      code: 11,
      msg: 'later',
      details: 'why',
    });
  });

  test('version comparison', () => {
    assert.ok(compareVersions('1.1.0', '1.0.0') > 0);
    assert.ok(compareVersions('0.4.0', '1.0.0') < 0);
    assert.equal(compareVersions('1.0.0', '1.0.0'), 0);
  });
});
