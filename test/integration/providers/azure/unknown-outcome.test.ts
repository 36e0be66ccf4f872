// Azure NIC writes whose outcome is unknown, through the fault proxy (test/fakes/fault-proxy.ts)
// in front of the ARM fake: long-running operations that end Failed or Canceled after the change
// was made (or, canceled, rolled back), 5xx answers after the change on every attempt, a lost
// answer, and 409 AnotherOperationInProgress for longer than the retry bound. The provider must
// re-read the NIC and report what it really holds: no IP configuration written twice, none left
// unreported. The fake cannot end its own operations Failed, hence the proxy.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type AzureTestbed, startAzureTestbed } from '../../../fakes/arm-testbed.ts';
import { type FaultProxy, startFaultProxy } from '../../../fakes/fault-proxy.ts';

const nicName = (id: string) => id.split('/').at(-1)!;
const OPERATION = /\/operations\//;

describe('Azure NIC writes with an unknown outcome (fault proxy in front of the ARM fake)', () => {
  let tb: AzureTestbed;
  let proxy: FaultProxy;
  let nicId: string;
  const held = () =>
    tb.arm
      .nic(tb.resourceGroup, nicName(nicId))!
      .ipConfigs.filter((c) => !c.primary)
      .map((c) => c.privateIPAddress)
      .sort();
  const puts = () => tb.arm.requests.filter((r) => r.method === 'PUT').length;
  const provider = () =>
    tb.provider({ armEndpoint: proxy.url, retry: { maxAttempts: 2, baseDelayMs: 5, maxDelayMs: 20 } });

  before(async () => {
    // Operations complete at once in the fake: the proxy then reports them Failed/Canceled.
    tb = await startAzureTestbed({ arm: { lroPolls: 0 } });
    proxy = await startFaultProxy({
      target: tb.arm.url,
      dialect: 'arm',
      tls: { certPem: tb.certs.certPem, keyPem: tb.certs.keyPem },
    });
    nicId = tb.vm.nicIds[1]!;
  });
  after(async () => {
    await proxy?.close();
    await tb?.close();
  });

  for (const mode of ['lro-failed', 'lro-canceled'] as const) {
    test(`${mode} after the change: assign reports the addresses the NIC holds, written once`, async () => {
      const p = provider();
      const before = held();
      const sent = puts();
      proxy.addRule({ method: 'GET', path: OPERATION, mode, times: 1 });
      const added = await p.assignIps(nicId, { count: 3 });
      proxy.clearRules();
      assert.equal(added.length, 3);
      assert.deepEqual(held(), [...before, ...added].sort());
      assert.equal(puts() - sent, 1, 'recognised as written: no second PUT');
    });

    test(`${mode} after the change: unassign resolves, the addresses are gone`, async () => {
      const p = provider();
      const ips = await p.assignIps(nicId, { count: 2 });
      proxy.addRule({ method: 'GET', path: OPERATION, mode, times: 1 });
      await p.unassignIps(nicId, ips);
      proxy.clearRules();
      for (const ip of ips) assert.ok(!held().includes(ip), `${ip} still on the NIC`);
    });
  }

  test('canceled and rolled back: the change is made again, reported once', async () => {
    const p = provider();
    const before = held();
    proxy.addRule({
      method: 'GET',
      path: OPERATION,
      mode: 'lro-canceled',
      times: 1,
      // The canceled operation's change is undone, as if a later write had superseded it.
      onHit: () =>
        tb.arm.mutateNic(tb.resourceGroup, nicName(nicId), (configs) => {
          configs.splice(
            0,
            configs.length,
            ...configs.filter((c) => c.primary || before.includes(c.privateIPAddress)),
          );
        }),
    });
    const added = await p.assignIps(nicId, { count: 2 });
    proxy.clearRules();
    assert.equal(added.length, 2);
    assert.deepEqual(held(), [...before, ...added].sort());
  });

  test('5xx after the change on every attempt: assign still reports what the NIC holds', async () => {
    const p = provider();
    const before = held();
    proxy.addRule({ method: 'PUT', mode: 'error-after', times: 2 });
    const added = await p.assignIps(nicId, { count: 2 });
    proxy.clearRules();
    assert.equal(added.length, 2);
    assert.deepEqual(held(), [...before, ...added].sort());
  });

  test('answer lost after the change: the resend is refused by its stale etag, nothing doubled', async () => {
    const p = provider();
    const before = held();
    proxy.addRule({ method: 'PUT', mode: 'drop-after', times: 1 });
    const added = await p.assignIps(nicId, { ips: ['10.240.0.200', '10.240.0.201'] });
    proxy.clearRules();
    assert.deepEqual(added, ['10.240.0.200', '10.240.0.201']);
    assert.deepEqual(held(), [...before, ...added].sort());
  });

  test('409 AnotherOperationInProgress beyond the retry bound: waits for the NIC, then writes', async () => {
    const p = provider();
    const before = held();
    proxy.addRule({
      method: 'PUT',
      mode: 'error-before',
      status: 409,
      code: 'AnotherOperationInProgress',
      times: 3,
    });
    const added = await p.assignIps(nicId, { count: 1 });
    proxy.clearRules();
    assert.equal(proxy.stats.injected['error-before'], 3);
    assert.deepEqual(held(), [...before, ...added].sort());
  });

  test('delete whose operation ends Failed after the NIC is gone resolves', async () => {
    const p = provider();
    await p.describeNode();
    const loose = tb.arm.addDetachedNic({
      resourceGroup: tb.resourceGroup,
      name: 'leaked-nic',
      location: tb.location,
      subnetId: tb.subnetId,
    });
    proxy.addRule({ method: 'GET', path: OPERATION, mode: 'lro-failed', times: 1 });
    await p.deleteInterface(loose);
    proxy.clearRules();
    assert.equal(tb.arm.nic(tb.resourceGroup, 'leaked-nic'), undefined);
  });
});
