import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpHolder } from '../../../../src/ipam-daemon/route-recovery.ts';
import { planAdoption } from '../../../../src/ipam-daemon/takeover/adopt-plan.ts';
import type { AwsCheckpointEntry } from '../../../../src/ipam-daemon/takeover/aws-checkpoint.ts';

const e = (containerId: string, ip: string): AwsCheckpointEntry => ({
  containerId,
  ifName: 'eth0',
  ip,
  networkName: 'aws-cni',
});

describe('adopting aws-node allocations (pure)', () => {
  test('routed, pooled, unheld entries are adopted with the veth their route names; the rest say why', () => {
    const holders: Record<string, IpHolder> = {
      '10.0.1.5': { state: 'free' },
      '10.0.1.6': { state: 'free' },
      '10.0.1.7': { state: 'assigned', key: 'other/eth0', hostVeth: 'vpc00000000007' },
      '10.0.1.8': { state: 'cooling' },
      '10.0.1.9': { state: 'free' },
      '10.0.1.10': { state: 'releasing' },
    };
    const routes = [
      { ip: '10.0.1.5', hostVeth: 'eni0123456789a' },
      { ip: '10.0.1.8', hostVeth: 'eni0123456789b' },
      { ip: '10.0.1.9', hostVeth: 'eni0123456789c' },
      { ip: '10.0.1.99', hostVeth: 'eni0123456789d' },
    ];
    const p = planAdoption(
      [
        e('a', '10.0.1.5'),
        e('b', '10.0.1.6'),
        e('c', '10.0.1.7'),
        e('d', '10.0.1.8'),
        e('held', '10.0.1.9'),
        e('f', '10.0.1.10'),
        e('g', '10.9.0.1'),
      ],
      routes,
      (ip) => holders[ip] ?? { state: 'not-on-node' },
      (containerId) => containerId === 'held',
    );
    assert.deepEqual(
      p.adopt.map((x) => [x.entry.containerId, x.hostVeth]),
      [
        ['a', 'eni0123456789a'],
        ['d', 'eni0123456789b'],
      ],
    );
    assert.deepEqual(
      p.stale.map((x) => x.containerId),
      ['b'],
      'no route: the pod is gone',
    );
    assert.deepEqual(
      p.notInPool.map((x) => x.containerId),
      ['g'],
    );
    assert.deepEqual(
      p.conflicts.map((x) => [x.entry.containerId, x.why]),
      [
        ['c', '10.0.1.7 is already held by other/eth0'],
        ['held', 'held/eth0 already holds an IP'],
        ['f', '10.0.1.10 is being returned to the cloud'],
      ],
    );
  });
});
