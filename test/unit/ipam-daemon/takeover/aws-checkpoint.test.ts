import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAwsCheckpoint } from '../../../../src/ipam-daemon/takeover/aws-checkpoint.ts';

// Shaped as the AWS daemon writes it (Go's encoding/json of datastore.CheckpointData).
const entry = (over: Record<string, unknown> = {}) => ({
  networkName: 'aws-cni',
  containerID: 'c0ffee01',
  ifName: 'eth0',
  ipv4: '10.0.1.10',
  allocationTimestamp: 1_764_581_400_123_456_000,
  metadata: { k8sPodNamespace: 'default', k8sPodName: 'web-0' },
  ...over,
});
const doc = (allocations: unknown) => JSON.stringify({ version: 'vpc-cni-ipam/1', allocations });

describe('AWS VPC CNI checkpoint (pure parse)', () => {
  test('an entry becomes an adoptable allocation with its pod and time', () => {
    const r = parseAwsCheckpoint(doc([entry()]));
    assert.ok(r.ok);
    assert.deepEqual(r.entries, [
      {
        containerId: 'c0ffee01',
        ifName: 'eth0',
        ip: '10.0.1.10',
        networkName: 'aws-cni',
        podNamespace: 'default',
        podName: 'web-0',
        assignedAt: '2025-12-01T09:30:00.123Z',
      },
    ]);
    assert.deepEqual(r.skipped, []);
  });

  test('a node with no pods: allocations null (a nil Go slice) or empty', () => {
    for (const a of [null, []]) {
      const r = parseAwsCheckpoint(doc(a));
      assert.ok(r.ok);
      assert.deepEqual(r.entries, []);
    }
  });

  test('unusable files say why instead of throwing', () => {
    const cases: Array<[string, RegExp]> = [
      ['{', /not JSON/],
      ['[]', /not a JSON object/],
      [JSON.stringify({ version: 'vpc-cni-ipam/2', allocations: [] }), /version "vpc-cni-ipam\/2"/],
      [JSON.stringify({ allocations: [] }), /version undefined/],
      [JSON.stringify({ version: 'vpc-cni-ipam/1', allocations: {} }), /not an array/],
      ['x'.repeat((16 << 20) + 1), /larger than/],
    ];
    for (const [text, why] of cases) {
      const r = parseAwsCheckpoint(text);
      assert.equal(r.ok, false, text.slice(0, 40));
      if (!r.ok) assert.match(r.reason, why);
    }
  });

  test('bad entries are left out with a reason; the good ones stay', () => {
    const r = parseAwsCheckpoint(
      doc([
        entry(),
        entry({ containerID: 'c2', ipv4: '10.0.1.300' }),
        entry({ containerID: 'c3', ipv4: undefined, ipv6: '2001:db8::5' }),
        entry({ containerID: '../../etc', ipv4: '10.0.1.13' }),
        entry({ containerID: 'c5', ifName: 'a/b', ipv4: '10.0.1.14' }),
        'garbage',
        entry({
          containerID: 'c6',
          ipv4: '10.0.1.15',
          metadata: { k8sPodNamespace: 'Bad_NS', k8sPodName: 'x' },
        }),
      ]),
    );
    assert.ok(r.ok);
    assert.deepEqual(
      r.entries.map((e) => [e.containerId, e.ip, e.podName]),
      [
        ['c0ffee01', '10.0.1.10', 'web-0'],
        ['c6', '10.0.1.15', undefined],
      ],
    );
    assert.equal(r.skipped.length, 5);
    assert.match(r.skipped.join('\n'), /10\.0\.1\.300.*not an IPv4/);
    assert.match(r.skipped.join('\n'), /IPv6 allocation 2001:db8::5/);
    assert.match(r.skipped.join('\n'), /containerId must be/);
    assert.match(r.skipped.join('\n'), /ifName must be/);
    assert.match(r.skipped.join('\n'), /allocations\[5\]: not an object/);
  });

  test('one IP claimed twice, or one attachment twice: every copy is left out', () => {
    const r = parseAwsCheckpoint(
      doc([
        entry({ containerID: 'a', ipv4: '10.0.1.20' }),
        entry({ containerID: 'b', ipv4: '10.0.1.20' }),
        entry({ containerID: 'c', ipv4: '10.0.1.21' }),
        entry({ containerID: 'c', ipv4: '10.0.1.22' }),
        entry({ containerID: 'd', ipv4: '10.0.1.23' }),
      ]),
    );
    assert.ok(r.ok);
    assert.deepEqual(
      r.entries.map((e) => e.containerId),
      ['d'],
    );
    assert.equal(r.skipped.length, 4);
  });

  test('an unusable timestamp leaves assignedAt unset', () => {
    const r = parseAwsCheckpoint(
      doc([
        entry({ allocationTimestamp: 'soon' }),
        entry({ containerID: 'z', ipv4: '10.0.1.2', allocationTimestamp: 0 }),
      ]),
    );
    assert.ok(r.ok);
    assert.equal(r.entries[0]?.assignedAt, undefined);
    assert.equal(r.entries[1]?.assignedAt, undefined);
  });
});
