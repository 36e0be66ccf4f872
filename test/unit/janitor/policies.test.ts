import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadJanitorConfig } from '../../../src/janitor/config.ts';
import { judgeLeak } from '../../../src/janitor/leak-policy.ts';
import { decideLease, type LeaseRecord, observe } from '../../../src/janitor/lease-policy.ts';
import type { LeakedInterface } from '../../../src/providers/types.ts';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const HOUR = 3_600_000;

describe('leak policy', () => {
  const base: LeakedInterface = {
    id: 'eni-1',
    subnetId: 'subnet-1',
    createdAt: new Date(NOW - 2 * HOUR),
    instanceId: 'i-gone',
    clusterName: 'c1',
    status: 'available',
  };
  const input = {
    clusterName: 'c1',
    now: NOW,
    graceMs: HOUR,
    instanceAlive: new Map([
      ['i-gone', false],
      ['i-live', true],
    ]),
  };

  test('deletes only an old, unattached, own interface whose instance is gone', () => {
    assert.equal(judgeLeak(base, input).delete, true);
  });
  const keeps: [string, Partial<LeakedInterface>][] = [
    ['attached', { status: 'in-use' }],
    ['attaching', { status: 'attaching' }],
    ['other cluster', { clusterName: 'c2' }],
    ['untagged cluster', { clusterName: undefined }],
    ['too young', { createdAt: new Date(NOW - HOUR + 1000) }],
    ['no creation time', { createdAt: undefined }],
    ['unparsable creation time', { createdAt: new Date('nope') }],
    ['instance alive', { instanceId: 'i-live' }],
    ['instance unknown', { instanceId: 'i-never-checked' }],
    ['no instance tag', { instanceId: undefined }],
  ];
  for (const [what, change] of keeps) {
    test(`keeps: ${what}`, () => {
      const v = judgeLeak({ ...base, ...change }, input);
      assert.equal(v.delete, false);
      assert.ok(v.reason.length > 0);
    });
  }
});

describe('lease policy', () => {
  const rec = (holder: string | null, renew = 't1'): LeaseRecord => ({
    holderIdentity: holder,
    leaseDurationSeconds: 10,
    renewTime: renew,
    leaseTransitions: 0,
  });
  test('no lease: create', () => assert.equal(decideLease('me', null, 0).kind, 'create'));
  test('ours: renew', () => assert.equal(decideLease('me', observe(null, rec('me'), 0), 5).kind, 'renew'));
  test('released (no holder): take over at once', () => {
    assert.equal(decideLease('me', observe(null, rec(null), 0), 0).kind, 'takeover');
  });
  test("another's: wait until a full duration after we last saw it change", () => {
    let o = observe(null, rec('them', 't1'), 1000);
    assert.deepEqual(decideLease('me', o, 10_999), { kind: 'wait', holder: 'them', expiresInMs: 1 });
    o = observe(o, rec('them', 't1'), 10_999); // unchanged: the clock keeps running
    assert.equal(decideLease('me', o, 11_000).kind, 'takeover');
    o = observe(o, rec('them', 't2'), 10_500); // renewed: the clock restarts
    assert.equal(decideLease('me', o, 11_000).kind, 'wait');
  });
});

describe('janitor config', () => {
  const env = { CLUSTER_NAME: 'prod', AWS_REGION: 'us-east-1' };
  test('defaults', () => {
    const c = loadJanitorConfig(env, 'host-1');
    assert.equal(c.graceMs, HOUR);
    assert.equal(c.lease.identity, 'host-1');
    assert.equal(c.lease.namespace, 'kube-system');
    assert.equal(c.dryRun, false);
  });
  const bad: [Record<string, string>, string][] = [
    [{ AWS_REGION: 'us-east-1' }, 'CLUSTER_NAME'],
    [{ CLUSTER_NAME: 'prod' }, 'AWS_REGION'],
    [{ ...env, JANITOR_GRACE_PERIOD: '10' }, 'JANITOR_GRACE_PERIOD'],
    [{ ...env, JANITOR_DRY_RUN: 'maybe' }, 'JANITOR_DRY_RUN'],
    [{ ...env, CLOUD_PROVIDER: 'gcp' }, 'CLOUD_PROVIDER'],
    [{ ...env, LEASE_RENEW_DEADLINE: '40' }, 'LEASE_RENEW_DEADLINE'],
  ];
  for (const [e, variable] of bad) {
    test(`refuses bad ${variable}, naming it and what it accepts`, () => {
      assert.throws(
        () => loadJanitorConfig(e, 'h'),
        (err: Error & { variable?: string }) =>
          err.variable === variable && err.message.includes('accepted:'),
      );
    });
  }
});
