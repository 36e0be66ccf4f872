// DISABLE_NETWORK_RESOURCE_PROVISIONING (issue 13), the pure parts: the plan loses its cloud
// actions and says why no IP can be had; the read-only provider refuses every mutating call before
// the cloud sees it. The live daemon: test/integration/ipam-daemon/localstack-no-provisioning.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../../src/ipam-daemon/config.ts';
import { withoutProvisioning } from '../../../src/ipam-daemon/daemon/pool-loop.ts';
import type { Plan } from '../../../src/ipam-daemon/pool-engine.ts';
import { readOnlyProvider } from '../../../src/providers/read-only.ts';
import type { CloudProvider } from '../../../src/providers/types.ts';

const plan = (over: Partial<Plan>): Plan =>
  ({
    actions: [],
    why: 'IP mode',
    mode: 'ip',
    total: 3,
    used: 3,
    free: 0,
    desired: 13,
    ceiling: 27,
    maxPods: 29,
    noIp: null,
    ...over,
  }) as Plan;

describe('no provisioning', () => {
  test('off by default; the AWS name and values', () => {
    assert.equal(loadConfig({}).pool.noProvisioning, false);
    assert.equal(loadConfig({ DISABLE_NETWORK_RESOURCE_PROVISIONING: 'true' }).pool.noProvisioning, true);
  });

  test('the plan keeps its numbers but no action; no-IP says why and what to do', () => {
    const p = withoutProvisioning(
      plan({
        actions: [{ kind: 'assign', interfaceId: 'eni-1', count: 10 }] as Plan['actions'],
        noIp: { reason: 'pool-growing', message: 'growing' },
      }),
    );
    assert.deepEqual(p.actions, []);
    assert.equal(p.desired, 13);
    assert.equal(p.noIp?.reason, 'provisioning-disabled');
    assert.match(p.noIp!.message, /add secondary IPs or interfaces to the node out of band/);
    assert.match(p.why, /DISABLE_NETWORK_RESOURCE_PROVISIONING=true/);
    const idle = plan({ free: 2 });
    assert.equal(withoutProvisioning(idle), idle, 'nothing to hold back: unchanged');
  });

  test('the read-only provider refuses mutations and passes reads through', async () => {
    const calls: string[] = [];
    const spy = new Proxy({} as CloudProvider, {
      get: (_t, prop) => async () => {
        calls.push(String(prop));
        return [];
      },
    });
    const p = readOnlyProvider(spy, 'DISABLE_NETWORK_RESOURCE_PROVISIONING=true');
    await p.listInterfaces();
    await p.describeSubnets(['subnet-1']);
    for (const op of [
      () => p.createInterface({ subnetId: 's', securityGroupIds: [] }),
      () => p.assignIps('eni-1', { count: 1 }),
      () => p.unassignIps('eni-1', ['10.0.0.1']),
      () => p.deleteInterface('eni-1'),
    ]) {
      await assert.rejects(op(), /refused: DISABLE_NETWORK_RESOURCE_PROVISIONING=true/);
    }
    assert.deepEqual(calls, ['listInterfaces', 'describeSubnets']);
  });
});
