import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decideReleases,
  type GcAllocation,
  type GcPod,
  orphanReason,
} from '../../../../src/ipam-daemon/k8s/pod-gc-policy.ts';

const T0 = Date.parse('2026-01-01T12:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const policy = { graceMs: 60_000, settleMs: 5_000, skewMs: 120_000 };

function alloc(
  containerId: string,
  podName: string | undefined,
  assignedAt: number,
  podUid?: string,
): GcAllocation {
  return {
    containerId,
    ifName: 'eth0',
    ip: '10.0.0.9',
    podNamespace: 'ns',
    podName,
    podUid,
    assignedAt: iso(assignedAt),
  };
}
function pod(name: string, createdAt: number, uid = `uid-${name}`): GcPod {
  return { namespace: 'ns', name, uid, createdAt: iso(createdAt) };
}

describe('orphanReason', () => {
  test('a pod present by name keeps its IP', () => {
    assert.equal(orphanReason(alloc('c', 'p', T0), [pod('p', T0 - 1000)], policy.skewMs), null);
  });
  test('no pod by that name: orphan', () => {
    assert.match(orphanReason(alloc('c', 'p', T0), [pod('q', T0)], policy.skewMs) ?? '', /not on this node/);
  });
  test('same name in another namespace does not count', () => {
    const other = { ...pod('p', T0 - 1000), namespace: 'other' };
    assert.notEqual(orphanReason(alloc('c', 'p', T0), [other], policy.skewMs), null);
  });
  test('a pod recreated under the same name well after the allocation: orphan', () => {
    const r = orphanReason(alloc('c', 'sts-0', T0), [pod('sts-0', T0 + 10 * 60_000)], policy.skewMs);
    assert.match(r ?? '', /recreated/);
  });
  test('a pod created within the skew margin after the allocation is still trusted', () => {
    assert.equal(orphanReason(alloc('c', 'sts-0', T0), [pod('sts-0', T0 + 60_000)], policy.skewMs), null);
  });
  test('with a pod uid, only the uid counts', () => {
    assert.equal(orphanReason(alloc('c', 'p', T0, 'u1'), [pod('p', T0, 'u1')], policy.skewMs), null);
    assert.notEqual(
      orphanReason(alloc('c', 'p', T0, 'u1'), [pod('p', T0 - 1000, 'u2')], policy.skewMs),
      null,
    );
  });
  test('allocations that name no pod are never judged', () => {
    assert.equal(orphanReason(alloc('c', undefined, T0), [], policy.skewMs), null);
  });
});

describe('decideReleases', () => {
  const old = T0 - 3_600_000;
  test('nothing is decided while the watch is disconnected, and clocks are kept', () => {
    const d = decideReleases(
      {
        now: T0,
        allocations: [alloc('c', 'gone', old)],
        pods: [],
        connectedSince: null,
        orphanSince: new Map([['c/eth0', old]]),
      },
      policy,
    );
    assert.deepEqual(d.release, []);
    assert.equal(d.orphanSince.get('c/eth0'), old);
    assert.ok(d.paused);
  });
  test('an orphan is released only after the grace period in a row', () => {
    const allocations = [alloc('c', 'gone', old)];
    let orphanSince: ReadonlyMap<string, number> = new Map();
    const connectedSince = T0 - 3_600_000;
    const at = (now: number) => {
      const d = decideReleases({ now, allocations, pods: [], connectedSince, orphanSince }, policy);
      orphanSince = d.orphanSince;
      return d.release.map((a) => a.containerId);
    };
    assert.deepEqual(at(T0), []);
    assert.deepEqual(at(T0 + 59_999), []);
    assert.deepEqual(at(T0 + 60_000), ['c']);
  });
  test('a pod that reappears resets the clock', () => {
    const allocations = [alloc('c', 'p', old)];
    const connectedSince = old;
    let d = decideReleases(
      { now: T0, allocations, pods: [], connectedSince, orphanSince: new Map() },
      policy,
    );
    d = decideReleases(
      {
        now: T0 + 30_000,
        allocations,
        pods: [pod('p', old - 1000)],
        connectedSince,
        orphanSince: d.orphanSince,
      },
      policy,
    );
    assert.equal(d.orphanSince.size, 0);
    d = decideReleases(
      { now: T0 + 70_000, allocations, pods: [], connectedSince, orphanSince: d.orphanSince },
      policy,
    );
    assert.deepEqual(d.release, []);
  });
  test('a fresh allocation is never released, even if its pod is not seen yet', () => {
    const allocations = [alloc('c', 'new', T0 - 10_000)];
    const d = decideReleases(
      {
        now: T0,
        allocations,
        pods: [],
        connectedSince: old,
        orphanSince: new Map([['c/eth0', T0 - 600_000]]),
      },
      policy,
    );
    assert.deepEqual(d.release, []);
  });
  test('right after a reconnect nothing is released until the view settles', () => {
    const allocations = [alloc('c', 'gone', old)];
    const orphanSince = new Map([['c/eth0', old]]);
    const early = decideReleases(
      { now: T0, allocations, pods: [], connectedSince: T0 - 1000, orphanSince },
      policy,
    );
    assert.deepEqual(early.release, []);
    const later = decideReleases(
      { now: T0 + 5_000, allocations, pods: [], connectedSince: T0 - 1000, orphanSince },
      policy,
    );
    assert.deepEqual(
      later.release.map((a) => a.containerId),
      ['c'],
    );
  });
  test('exhaustive: a matching pod always keeps its IP, whatever the timing', () => {
    for (const assignedDelta of [-7_200_000, -60_000, 0, 1_000]) {
      for (const now of [T0, T0 + 60_000, T0 + 7_200_000]) {
        for (const connectedSince of [null, T0 - 7_200_000, now]) {
          const d = decideReleases(
            {
              now,
              allocations: [alloc('c', 'p', T0 + assignedDelta)],
              pods: [pod('p', T0 + assignedDelta - 1000)],
              connectedSince,
              orphanSince: new Map([['c/eth0', T0 - 7_200_000]]),
            },
            policy,
          );
          assert.deepEqual(d.release, []);
        }
      }
    }
  });
});
