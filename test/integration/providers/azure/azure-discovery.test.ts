// Discovery edge cases: paged NIC lists shared with other VMs, IMDS protocol checks, IMDS down.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fetchInstanceMetadata } from '../../../../src/providers/azure/imds.ts';
import { NotFoundError } from '../../../../src/providers/errors.ts';
import { type AzureTestbed, startAzureTestbed } from '../../../fakes/arm-testbed.ts';

describe('Azure discovery', () => {
  let tb: AzureTestbed;
  before(async () => {
    // One NIC per page: discovery must follow nextLink through the other VMs' NICs.
    tb = await startAzureTestbed({ nicCount: 2, arm: { pageSize: 1 } });
    for (const name of ['aaa-other', 'zzz-other']) {
      tb.arm.addVm({
        resourceGroup: tb.resourceGroup,
        name,
        location: tb.location,
        nics: [{ name: `${name}-nic`, subnetId: tb.subnetId }],
      });
    }
  });
  after(async () => {
    await tb?.close();
  });

  test('only this VM’s NICs, found across pages, in IMDS order', async () => {
    const ifs = await tb.provider().listInterfaces();
    assert.deepEqual(
      ifs.map((i) => i.id),
      tb.vm.nicIds,
    );
    const listCalls = tb.arm.requests.filter((r) => r.method === 'GET' && /networkInterfaces$/i.test(r.path));
    assert.ok(listCalls.length >= 4, `followed nextLink (${listCalls.length} list pages)`);
  });

  test('IMDS answers 400 without Metadata: true, without api-version, or when proxied', async () => {
    const url = `${tb.imds.url}/metadata/instance?api-version=2021-02-01`;
    assert.equal((await fetch(url)).status, 400);
    assert.equal(
      (await fetch(`${tb.imds.url}/metadata/instance`, { headers: { Metadata: 'true' } })).status,
      400,
    );
    assert.equal(
      (await fetch(url, { headers: { Metadata: 'true', 'X-Forwarded-For': '10.0.0.1' } })).status,
      400,
    );
    const ok = await fetchInstanceMetadata({ endpoint: tb.imds.url });
    assert.equal(ok.vmId, tb.vm.vmId);
    assert.equal(ok.interfaces.length, 2);
  });

  test('IMDS unreachable: bounded retries, then an error naming the endpoint', async () => {
    const sleeps: number[] = [];
    await assert.rejects(
      fetchInstanceMetadata({
        endpoint: 'http://127.0.0.1:9',
        attempts: 3,
        timeoutMs: 500,
        sleep: async (ms) => {
          sleeps.push(ms);
        },
      }),
      /cannot read Azure instance metadata from http:\/\/127\.0\.0\.1:9/,
    );
    assert.deepEqual(sleeps, [200, 400]);
  });

  test('a VM whose NICs are elsewhere fails with a clear NotFound', async () => {
    const p = tb.provider({ resourceGroup: 'some-other-rg' });
    await assert.rejects(p.describeNode(), (e: unknown) => {
      assert.ok(e instanceof NotFoundError);
      assert.match(e.message, /no network interface of VM .* found in resource group some-other-rg/);
      return true;
    });
  });
});
