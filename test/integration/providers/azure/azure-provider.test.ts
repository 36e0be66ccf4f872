// The Azure provider driving the real @azure/arm-network client against the HTTPS ARM fake, and
// reading the Azure IMDS fake. Needs: openssl (test CA). No network beyond 127.0.0.1.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  InterfaceInUseError,
  LimitExceededError,
  NotFoundError,
  OtherProviderError,
  SubnetExhaustedError,
  ThrottledError,
  UnauthorizedError,
} from '../../../../src/providers/errors.ts';
import type { ApiCallEvent } from '../../../../src/providers/types.ts';
import { OWNER_TAGS } from '../../../../src/providers/types.ts';
import { cidrContains, parseCidr } from '../../../fakes/arm-ipv4.ts';
import { type AzureTestbed, startAzureTestbed, staticTokenCredential } from '../../../fakes/arm-testbed.ts';

const nicName = (id: string) => id.split('/').at(-1)!;
const puts = (tb: AzureTestbed, nicId: string) =>
  tb.arm.requests.filter((r) => r.method === 'PUT' && r.path.toLowerCase() === nicId.toLowerCase());

describe('Azure provider against the ARM fake', () => {
  let tb: AzureTestbed;
  before(async () => {
    tb = await startAzureTestbed();
  });
  after(async () => {
    await tb?.close();
  });

  test('describeNode: VM facts from IMDS, NICs / VNet / NSG from ARM', async () => {
    const p = tb.provider();
    const node = await p.describeNode();
    const meta = tb.arm.instanceMetadata(tb.vm.resourceId);
    const primary = tb.arm.nic(tb.resourceGroup, nicName(tb.vm.nicIds[0]!))!;
    assert.equal(node.cloud, 'azure');
    assert.equal(node.instanceId, tb.vm.vmId);
    assert.equal(node.instanceType, 'Standard_D4s_v5');
    assert.equal(node.region, tb.location);
    assert.equal(node.availabilityZone, `${tb.location}-2`);
    assert.equal(node.vpcId, tb.vnetId);
    assert.deepEqual(node.vpcCidrs, ['10.240.0.0/16', '10.241.0.0/16']);
    assert.equal(node.primarySubnetId, tb.subnetId);
    assert.equal(node.primaryIp, primary.ipConfigs[0]!.privateIPAddress);
    assert.equal(node.primaryIp, meta.network.interface[0]!.ipv4.ipAddress[0]!.privateIpAddress);
    assert.match(node.primaryMac, /^00:0d:3a(:[0-9a-f]{2}){3}$/);
    assert.equal(node.primaryMac.replaceAll(':', ''), meta.network.interface[0]!.macAddress.toLowerCase());
    assert.deepEqual(node.securityGroupIds, [tb.nsgId]);
    assert.equal(node.maxInterfaces, 2, 'NICs cannot be hot-attached: the VM keeps the NICs it booted with');
    assert.equal(node.ipsPerInterface, 256);
  });

  test('listInterfaces: NICs in VM order with subnet CIDR and no secondaries yet', async () => {
    const ifs = await tb.provider().listInterfaces();
    assert.deepEqual(
      ifs.map((i) => [i.id, i.deviceIndex]),
      tb.vm.nicIds.map((id, i) => [id, i]),
    );
    for (const i of ifs) {
      assert.equal(i.subnetId, tb.subnetId);
      assert.equal(i.subnetCidr, '10.240.0.0/24');
      assert.deepEqual(i.secondaryIps, []);
    }
  });

  test('listInterfacesFromMetadata: the IMDS network section, NIC ids by MAC, no ARM request', async () => {
    const p = tb.provider();
    const nicId = tb.vm.nicIds[1]!;
    const added = await p.assignIps(nicId, { count: 3 });
    const api = await p.listInterfaces();
    const armBefore = tb.arm.requests.length;
    const meta = await p.listInterfacesFromMetadata();
    assert.equal(tb.arm.requests.length, armBefore, 'metadata only');
    assert.deepEqual(
      meta.map((m) => ({ ...m, ips: [...m.ips] })),
      api.map((i) => ({
        id: i.id,
        mac: i.mac,
        deviceIndex: i.deviceIndex,
        ips: [i.primaryIp, ...i.secondaryIps],
      })),
    );
    assert.deepEqual(
      meta[1]!.ips.slice(1).sort(),
      [...added].sort(),
      'the secondaries just added, the primary first',
    );
    await p.unassignIps(nicId, added);
    assert.deepEqual((await p.listInterfacesFromMetadata())[1]!.ips.length, 1, 'a live view');
  });

  test('assignIps {count}: one createOrUpdate LRO adds a batch; primary configuration untouched', async () => {
    const p = tb.provider();
    const nicId = tb.vm.nicIds[0]!;
    const before = tb.arm.nic(tb.resourceGroup, nicName(nicId))!;
    const putsBefore = puts(tb, nicId).length;
    const ips = await p.assignIps(nicId, { count: 16 });
    assert.equal(ips.length, 16);
    assert.equal(new Set(ips).size, 16);
    assert.equal(puts(tb, nicId).length - putsBefore, 1, 'one PUT per batch');
    assert.equal(
      puts(tb, nicId).at(-1)!.ifMatch,
      before.etag,
      'PUT carries If-Match with the etag it was planned from',
    );
    const cidr = parseCidr('10.240.0.0/24');
    for (const ip of ips) assert.ok(cidrContains(cidr, ip), `${ip} in subnet`);
    const afterNic = tb.arm.nic(tb.resourceGroup, nicName(nicId))!;
    assert.equal(afterNic.provisioningState, 'Succeeded', 'the provider waited for the LRO');
    assert.deepEqual(afterNic.ipConfigs[0], before.ipConfigs[0]);
    assert.ok(!ips.includes(before.ipConfigs[0]!.privateIPAddress));
    const listed = (await p.listInterfaces())[0]!;
    assert.deepEqual([...listed.secondaryIps].sort(), [...ips].sort());
    // An LRO was really polled through Azure-AsyncOperation.
    assert.ok(tb.arm.requests.some((r) => /\/operations\//.test(r.path)));
    await p.unassignIps(nicId, ips);
  });

  test('assignIps {ips}: exact addresses as Static configurations; re-claiming held ones is a no-op', async () => {
    const p = tb.provider();
    const nicId = tb.vm.nicIds[1]!;
    const got = await p.assignIps(nicId, { ips: ['10.240.0.200', '10.240.0.201'] });
    assert.deepEqual(got, ['10.240.0.200', '10.240.0.201']);
    const nic = tb.arm.nic(tb.resourceGroup, nicName(nicId))!;
    assert.deepEqual(
      nic.ipConfigs.filter((c) => !c.primary).map((c) => [c.privateIPAddress, c.allocationMethod]),
      [
        ['10.240.0.200', 'Static'],
        ['10.240.0.201', 'Static'],
      ],
    );
    const n = puts(tb, nicId).length;
    assert.deepEqual(await p.assignIps(nicId, { ips: ['10.240.0.201'] }), ['10.240.0.201']);
    assert.equal(puts(tb, nicId).length, n, 'nothing to write');
    // An address held by the other NIC is refused by ARM.
    const other = tb.arm.nic(tb.resourceGroup, nicName(tb.vm.nicIds[0]!))!.ipConfigs[0]!.privateIPAddress;
    await assert.rejects(p.assignIps(nicId, { ips: [other] }), (e: unknown) => {
      assert.ok(e instanceof OtherProviderError);
      assert.equal(e.cloudCode, 'PrivateIPAddressInUse');
      return true;
    });
    await p.unassignIps(nicId, got);
  });

  test('unassignIps: removes only the named secondaries, refuses the primary, no write when nothing to do', async () => {
    const p = tb.provider();
    const nicId = tb.vm.nicIds[0]!;
    const ips = await p.assignIps(nicId, { count: 3 });
    await p.unassignIps(nicId, [ips[1]!]);
    const nic = tb.arm.nic(tb.resourceGroup, nicName(nicId))!;
    assert.deepEqual(
      nic.ipConfigs.filter((c) => !c.primary).map((c) => c.privateIPAddress),
      [ips[0], ips[2]],
    );
    const n = puts(tb, nicId).length;
    await p.unassignIps(nicId, ['10.240.0.250']);
    assert.equal(puts(tb, nicId).length, n);
    await assert.rejects(p.unassignIps(nicId, [nic.ipConfigs[0]!.privateIPAddress]), /primary/);
    assert.equal(tb.arm.nic(tb.resourceGroup, nicName(nicId))!.ipConfigs[0]!.primary, true);
    await p.unassignIps(nicId, [ips[0]!, ips[2]!]);
    assert.equal(tb.arm.nic(tb.resourceGroup, nicName(nicId))!.ipConfigs.length, 1);
  });

  test('concurrent assigns on one NIC are serialised: no 412, no address handed out twice', async () => {
    const p = tb.provider();
    const nicId = tb.vm.nicIds[0]!;
    const from = tb.arm.requests.length;
    const batches = await Promise.all([1, 2, 3, 4].map(() => p.assignIps(nicId, { count: 4 })));
    const all = batches.flat();
    assert.equal(all.length, 16);
    assert.equal(new Set(all).size, 16);
    assert.equal(tb.arm.requests.slice(from).filter((r) => r.status === 412).length, 0);
    await p.unassignIps(nicId, all);
  });

  test('412: another writer changes the NIC between our read and write; we re-read and keep their change', async () => {
    const p = tb.provider();
    const nicId = tb.vm.nicIds[0]!;
    await p.describeNode();
    tb.arm.onceBeforeWrite(() =>
      tb.arm.mutateNic(tb.resourceGroup, nicName(nicId), (cfgs) => {
        cfgs.push({
          name: 'someone-else',
          privateIPAddress: '10.240.0.100',
          allocationMethod: 'Static',
          primary: false,
          subnetId: tb.subnetId,
        });
      }),
    );
    const from = tb.arm.requests.length;
    const ips = await p.assignIps(nicId, { count: 2 });
    const reqs = tb.arm.requests.slice(from);
    assert.deepEqual(
      reqs.filter((r) => r.method === 'PUT').map((r) => r.status),
      [412, 200],
    );
    const nic = tb.arm.nic(tb.resourceGroup, nicName(nicId))!;
    assert.ok(
      nic.ipConfigs.some((c) => c.name === 'someone-else'),
      'the foreign change survived',
    );
    assert.equal(ips.length, 2);
    assert.ok(!ips.includes('10.240.0.100'));
    await p.unassignIps(nicId, ips);
    tb.arm.mutateNic(tb.resourceGroup, nicName(nicId), (cfgs) => {
      cfgs.splice(
        cfgs.findIndex((c) => c.name === 'someone-else'),
        1,
      );
    });
  });

  test('412 forever: gives up after maxEtagAttempts with a clear error', async () => {
    const p = tb.provider({ maxEtagAttempts: 3 });
    const nicId = tb.vm.nicIds[1]!;
    await p.describeNode();
    tb.arm.inject({ method: 'PUT', status: 412, times: 3 });
    const from = tb.arm.requests.length;
    await assert.rejects(p.assignIps(nicId, { count: 1 }), (e: unknown) => {
      assert.ok(e instanceof OtherProviderError);
      assert.equal(e.cloudCode, 'PreconditionFailed');
      assert.match(e.message, /gave up after 3 attempts/);
      return true;
    });
    assert.equal(tb.arm.requests.slice(from).filter((r) => r.method === 'PUT').length, 3);
    tb.arm.clearFaults();
  });

  test('429 with Retry-After is honoured and retried; the observer sees each attempt', async () => {
    const events: ApiCallEvent[] = [];
    const p = tb.provider({ observer: { onCall: (e) => events.push(e) } });
    const nicId = tb.vm.nicIds[1]!;
    await p.describeNode();
    tb.arm.inject({ method: 'PUT', status: 429, retryAfterSeconds: 1, times: 1 });
    const t0 = performance.now();
    const ips = await p.assignIps(nicId, { count: 2 });
    const elapsed = performance.now() - t0;
    assert.equal(ips.length, 2);
    assert.ok(elapsed >= 950, `waited the server's Retry-After (took ${Math.round(elapsed)} ms)`);
    const writes = events.filter((e) => e.api === 'NetworkInterfaces.createOrUpdate');
    assert.deepEqual(
      writes.map((e) => [e.outcome, e.attempt]),
      [
        ['throttled', 1],
        ['ok', 2],
      ],
    );
    assert.ok(writes.every((e) => e.cloud === 'azure'));
    await p.unassignIps(nicId, ips);
  });

  test('429 on every try: Throttled after exactly maxAttempts, carrying Retry-After', async () => {
    const p = tb.provider({ retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 10 } });
    const nicId = tb.vm.nicIds[1]!;
    await p.describeNode();
    tb.arm.inject({ method: 'PUT', status: 429, retryAfterSeconds: 0, times: 100 });
    const from = tb.arm.requests.length;
    await assert.rejects(p.assignIps(nicId, { count: 1 }), (e: unknown) => {
      assert.ok(e instanceof ThrottledError);
      assert.equal(e.cloudCode, 'SubscriptionRequestsThrottled');
      assert.equal(e.retryAfterMs, 0);
      assert.ok(e.requestId, 'carries x-ms-request-id');
      return true;
    });
    assert.equal(tb.arm.requests.slice(from).filter((r) => r.method === 'PUT').length, 3);
    tb.arm.clearFaults();
  });

  test('the 256 ipConfigurations limit: filling a NIC works, one more is LimitExceeded without a write', async () => {
    const big = await startAzureTestbed({ subnetPrefix: '10.240.0.0/22', nicCount: 1 });
    try {
      const p = big.provider();
      const nicId = big.vm.nicIds[0]!;
      const ips = await p.assignIps(nicId, { count: 255 });
      assert.equal(ips.length, 255);
      assert.equal(big.arm.nic(big.resourceGroup, nicName(nicId))!.ipConfigs.length, 256);
      const n = puts(big, nicId).length;
      await assert.rejects(p.assignIps(nicId, { count: 1 }), (e: unknown) => {
        assert.ok(e instanceof LimitExceededError);
        assert.match(e.message, /256/);
        return true;
      });
      assert.equal(puts(big, nicId).length, n, 'the limit is enforced before calling ARM');
    } finally {
      await big.close();
    }
  });

  test("ARM's own limit error (a NIC capped lower than 256) maps to LimitExceeded", async () => {
    const capped = await startAzureTestbed({ nicCount: 1, arm: { maxIpConfigsPerNic: 8 } });
    try {
      const p = capped.provider();
      await assert.rejects(p.assignIps(capped.vm.nicIds[0]!, { count: 8 }), (e: unknown) => {
        assert.ok(e instanceof LimitExceededError);
        assert.match(e.cloudCode ?? '', /LimitReached$/);
        return true;
      });
      assert.equal(capped.arm.nic(capped.resourceGroup, nicName(capped.vm.nicIds[0]!))!.ipConfigs.length, 1);
    } finally {
      await capped.close();
    }
  });

  test('subnet exhaustion: SubnetIsFull becomes SubnetExhausted naming the subnet', async () => {
    // /28: 16 - 5 reserved = 11 usable; 2 NIC primaries leave 9.
    const small = await startAzureTestbed({ subnetPrefix: '10.240.0.0/28' });
    try {
      const p = small.provider();
      const nicId = small.vm.nicIds[0]!;
      const [s0] = await p.describeSubnets([small.subnetId]);
      assert.equal(s0!.availableIps, 9);
      assert.equal(s0!.cidr, '10.240.0.0/28');
      const ips = await p.assignIps(nicId, { count: 8 });
      assert.equal(ips.length, 8);
      assert.equal((await p.describeSubnets([small.subnetId]))[0]!.availableIps, 1);
      await assert.rejects(p.assignIps(nicId, { count: 2 }), (e: unknown) => {
        assert.ok(e instanceof SubnetExhaustedError);
        assert.equal(e.subnetId, small.subnetId);
        assert.equal(e.cloudCode, 'SubnetIsFull');
        return true;
      });
      assert.equal(
        small.arm.nic(small.resourceGroup, nicName(nicId))!.ipConfigs.length,
        9,
        'nothing half-applied',
      );
    } finally {
      await small.close();
    }
  });

  test('createInterface: LimitExceeded explaining that NICs cannot be hot-attached', async () => {
    const p = tb.provider();
    await assert.rejects(p.createInterface({ subnetId: tb.subnetId, securityGroupIds: [] }), (e: unknown) => {
      assert.ok(e instanceof LimitExceededError);
      assert.match(e.message, /cannot attach a network interface to a running VM/);
      return true;
    });
    assert.equal(
      tb.arm.requests.filter(
        (r) => r.method === 'PUT' && !tb.vm.nicIds.some((id) => id.toLowerCase() === r.path.toLowerCase()),
      ).length,
      0,
    );
  });

  test('errors: bad token -> Unauthorized, 403 -> Unauthorized, unknown NIC -> NotFound', async () => {
    const bad = tb.provider({ credential: staticTokenCredential('wrong-token') });
    await assert.rejects(bad.describeNode(), (e: unknown) => {
      assert.ok(e instanceof UnauthorizedError);
      assert.equal(e.cloudCode, 'InvalidAuthenticationToken');
      return true;
    });
    const p = tb.provider();
    await p.describeNode();
    tb.arm.inject({ method: 'PUT', status: 403 });
    await assert.rejects(p.assignIps(tb.vm.nicIds[0]!, { count: 1 }), UnauthorizedError);
    const missing = tb.vm.nicIds[0]!.replace(/[^/]+$/, 'no-such-nic');
    await assert.rejects(p.assignIps(missing, { count: 1 }), NotFoundError);
    await assert.rejects(
      p.assignIps('not-an-arm-id', { count: 1 }),
      /not an Azure network interface resource id/,
    );
  });

  test('leaked NICs: detached, tagged for this cluster, old enough; deleteInterface removes them, never attached ones', async () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    const p = tb.provider({ now: () => now });
    const tags = (cluster: string, created: string) => ({
      [OWNER_TAGS.managedBy]: 'vpc-ipam',
      [OWNER_TAGS.clusterName]: cluster,
      [OWNER_TAGS.createdAt]: created,
      [OWNER_TAGS.instanceId]: 'old-vm',
    });
    const old = tb.arm.addDetachedNic({
      resourceGroup: tb.resourceGroup,
      name: 'leak-old',
      location: tb.location,
      subnetId: tb.subnetId,
      tags: tags('azure-test', '2029-12-31T00:00:00Z'),
    });
    tb.arm.addDetachedNic({
      resourceGroup: tb.resourceGroup,
      name: 'leak-young',
      location: tb.location,
      subnetId: tb.subnetId,
      tags: tags('azure-test', '2029-12-31T23:59:00Z'),
    });
    tb.arm.addDetachedNic({
      resourceGroup: tb.resourceGroup,
      name: 'leak-other-cluster',
      location: tb.location,
      subnetId: tb.subnetId,
      tags: tags('other', '2029-01-01T00:00:00Z'),
    });
    const leaks = await p.findLeakedInterfaces({ clusterName: 'azure-test', olderThanMs: 3_600_000 });
    assert.deepEqual(
      leaks.map((l) => l.id),
      [old],
    );
    assert.equal(leaks[0]!.instanceId, 'old-vm');
    assert.equal(leaks[0]!.createdAt?.toISOString(), '2029-12-31T00:00:00.000Z');
    await p.deleteInterface(old);
    assert.equal(tb.arm.nic(tb.resourceGroup, 'leak-old'), undefined);
    await p.deleteInterface(old); // idempotent
    await assert.rejects(p.deleteInterface(tb.vm.nicIds[1]!), /attached/);
    assert.ok(tb.arm.nic(tb.resourceGroup, nicName(tb.vm.nicIds[1]!)));
  });

  test('deleteInterface onlyIfDetached: an attached NIC is refused as InterfaceInUse, also when a VM takes it between our GET and DELETE', async () => {
    const p = tb.provider();
    await p.describeNode();
    const attached = tb.vm.nicIds[1]!;
    await assert.rejects(
      p.deleteInterface(attached, { onlyIfDetached: true }),
      (e) => e instanceof InterfaceInUseError && e.cloudCode === 'NicInUse',
    );
    assert.equal(tb.arm.nic(tb.resourceGroup, nicName(attached))?.vmResourceId, tb.vm.resourceId);
    // The race: detached when read, attached by the time the DELETE arrives. ARM refuses (NicInUse).
    const racing = tb.arm.addDetachedNic({
      resourceGroup: tb.resourceGroup,
      name: 'leak-race',
      location: tb.location,
      subnetId: tb.subnetId,
    });
    tb.arm.onceBeforeWrite(() => tb.arm.attachNic(tb.resourceGroup, 'leak-race', tb.vm.resourceId));
    await assert.rejects(
      p.deleteInterface(racing, { onlyIfDetached: true }),
      (e) => e instanceof InterfaceInUseError && /NicInUse/.test(e.message),
    );
    assert.equal(
      tb.arm.nic(tb.resourceGroup, 'leak-race')?.vmResourceId,
      tb.vm.resourceId,
      'still there, attached',
    );
  });
});
