import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Allocation, PoolStatus } from '../../../src/ipam-daemon/api-types.ts';
import { call, type Harness, startHarness } from './harness.ts';

describe('daemon over the socket (smoke)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ socket: true, realClock: true });
    await h.daemon.reconcileNow();
  });
  after(async () => h.close());

  test('allocate, get, list, release', async () => {
    const r = await call(h.socketPath, 'POST', '/v1/allocate', {
      containerId: 'c1',
      ifName: 'eth0',
      podNamespace: 'default',
      podName: 'p1',
    });
    assert.equal(r.status, 200, r.text);
    const a = r.body as Allocation;
    assert.ok(h.provider.allSecondaryIps().includes(a.ip));
    assert.equal(a.deviceIndex, 0);
    assert.equal(a.routeTable, 0);
    assert.equal(a.gateway, '10.1.0.1');
    const again = await call(h.socketPath, 'POST', '/v1/allocate', {
      containerId: 'c1',
      ifName: 'eth0',
      podNamespace: 'default',
      podName: 'p1',
    });
    assert.equal((again.body as Allocation).ip, a.ip, 'ADD for an existing key returns the same IP');
    const got = await call(h.socketPath, 'GET', '/v1/allocation?containerId=c1&ifName=eth0');
    assert.equal((got.body as Allocation).ip, a.ip);
    const pool = (await call(h.socketPath, 'GET', '/v1/pool')).body as PoolStatus;
    assert.equal(pool.assigned, 1);
    const rel = await call(h.socketPath, 'POST', '/v1/release', { containerId: 'c1', ifName: 'eth0' });
    assert.deepEqual(rel.body, { released: a.ip });
    const rel2 = await call(h.socketPath, 'POST', '/v1/release', { containerId: 'c1', ifName: 'eth0' });
    assert.deepEqual(rel2.body, { released: null });
  });
});
