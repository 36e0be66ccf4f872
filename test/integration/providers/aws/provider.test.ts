// The AWS provider against LocalStack's EC2 (real SDK, real HTTP), node identity from the IMDS fake.
// Fails (never skips) when LocalStack is not running.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  CreateNetworkInterfaceCommand,
  DeleteNetworkInterfaceCommand,
  DescribeNetworkInterfacesCommand,
  DetachNetworkInterfaceCommand,
} from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../../../localstack/seed.ts';
import { createAwsProvider } from '../../../../src/providers/aws/index.ts';
import {
  cidrContains,
  intToIp,
  ipToInt,
  isReservedInSubnet,
  parseCidr,
} from '../../../../src/providers/aws/ipv4.ts';
import { isValidMac } from '../../../../src/providers/aws/mac.ts';
import {
  InterfaceInUseError,
  LimitExceededError,
  NotFoundError,
  OtherProviderError,
  SubnetExhaustedError,
} from '../../../../src/providers/errors.ts';
import { type ApiCallEvent, type InterfaceInfo, OWNER_TAGS } from '../../../../src/providers/types.ts';
import type { ImdsFake } from '../../../fakes/imds-aws.ts';
import {
  ec2Endpoint,
  LocalStackCluster,
  region,
  requireLocalStack,
  type SeedResult,
  startInstanceImds,
} from '../../../helpers/localstack.ts';

const cluster = new LocalStackCluster('aws-provider');
const clusterName = cluster.name;
let seed: SeedResult;
let imds: ImdsFake;
let clock = Date.now();
const events: ApiCallEvent[] = [];
let provider: ReturnType<typeof createAwsProvider>;
const ec2 = localEc2Client(ec2Endpoint(), region());

const large = () => seed.instances.find((i) => i.type === 'm5.large')!;
const nodeSubnet = () => seed.subnets.find((s) => s.role === 'node' && s.az === large().az)!;
const tinySubnet = () => seed.subnets.find((s) => s.role === 'tiny')!;

async function rawEni(id: string) {
  const out = await ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [id] }));
  return out.NetworkInterfaces![0]!;
}

async function enisInVpc(): Promise<number> {
  const out = await ec2.send(
    new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [seed.vpcId] }] }),
  );
  return out.NetworkInterfaces?.length ?? 0;
}

/** What createInterface answered is what EC2 lists for those interfaces. */
async function assertAsListed(p: ReturnType<typeof makeProvider>, made: InterfaceInfo[]): Promise<void> {
  const listed = await p.listInterfaces();
  const sorted = (i: InterfaceInfo) => ({ ...i, secondaryIps: [...i.secondaryIps].sort() });
  for (const m of made) assert.deepEqual(sorted(m), sorted(listed.find((i) => i.id === m.id)!));
}

function makeProvider(pickAddresses: boolean) {
  return createAwsProvider({
    region: region(),
    ec2Endpoint: ec2Endpoint(),
    imdsEndpoint: imds.url,
    clusterName,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    observer: { onCall: (e) => events.push(e) },
    pickAddresses,
    now: () => clock,
  });
}

const setup = async () => {
  seed = await cluster.seed();
  imds = await startInstanceImds(large().id, 0);
  provider = makeProvider(false);
};

const teardown = async () => {
  await provider?.close();
  await imds?.close();
  await cluster.delete();
  ec2.destroy();
};

// Outside the suite, so a missing LocalStack counts as a failed test, not only as cancelled ones.
test('LocalStack is reachable', () => requireLocalStack());

describe('AWS provider on LocalStack', () => {
  before(setup);
  after(teardown);

  test('describeNode discovers identity through IMDSv2 and limits through DescribeInstanceTypes', async () => {
    const node = await provider.describeNode();
    assert.equal(node.cloud, 'aws');
    assert.equal(node.instanceId, large().id);
    assert.equal(node.instanceType, 'm5.large');
    assert.equal(node.availabilityZone, large().az);
    assert.equal(node.region, region());
    assert.equal(node.vpcId, seed.vpcId);
    assert.deepEqual([...node.vpcCidrs].sort(), [seed.cidr, ...seed.secondaryCidrs].sort());
    assert.equal(node.primarySubnetId, large().subnetId);
    assert.equal(node.primaryIp, large().privateIp);
    assert.equal(node.primaryMac, large().mac);
    assert.ok(isValidMac(node.primaryMac));
    assert.deepEqual(node.securityGroupIds, [seed.sgId]);
    assert.equal(node.maxInterfaces, 3);
    assert.equal(node.ipsPerInterface, 10);
    const again = await provider.describeNode();
    assert.equal(again, node, 'cached after the first success');
  });

  test('listInterfaces shows the primary ENI at device index 0', async () => {
    const list = await provider.listInterfaces();
    assert.equal(list.length, 1);
    assert.equal(list[0]!.id, large().primaryEniId);
    assert.equal(list[0]!.deviceIndex, 0);
    assert.equal(list[0]!.primaryIp, large().privateIp);
    assert.equal(list[0]!.subnetCidr, nodeSubnet().cidr);
    assert.equal(list[0]!.mac, large().mac);
  });

  test('createInterface attaches at the lowest free index with ownership tags; the type limit refuses a 4th ENI', async () => {
    const created = clock;
    const a = await provider.createInterface({
      subnetId: nodeSubnet().id,
      securityGroupIds: [seed.sgId],
      secondaryIpCount: 3,
      tags: { team: 'net' },
    });
    assert.equal(a.deviceIndex, 1);
    assert.equal(a.secondaryIps.length, 3);
    for (const ip of [a.primaryIp, ...a.secondaryIps]) assert.ok(cidrContains(nodeSubnet().cidr, ip), ip);
    assert.ok(isValidMac(a.mac));
    assert.equal(a.tags[OWNER_TAGS.instanceId], large().id);
    assert.equal(a.tags[OWNER_TAGS.clusterName], clusterName);
    assert.equal(a.tags[OWNER_TAGS.createdAt], new Date(created).toISOString());
    assert.equal(a.tags[OWNER_TAGS.managedBy], 'vpc-ipam');
    assert.equal(a.tags.team, 'net');
    const raw = await rawEni(a.id);
    assert.match(raw.Description ?? '', new RegExp(`vpc-ipam.*${large().id}.*${clusterName}`));
    assert.equal(raw.Attachment?.InstanceId, large().id);
    assert.deepEqual(
      raw.Groups?.map((g) => g.GroupId),
      [seed.sgId],
    );

    const b = await provider.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] });
    assert.equal(b.deviceIndex, 2);
    assert.equal(b.secondaryIps.length, 0);

    const before = await enisInVpc();
    await assert.rejects(
      provider.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] }),
      (e) => e instanceof LimitExceededError && /at most 3/.test(e.message),
    );
    assert.equal(await enisInVpc(), before, 'a refused create leaves no ENI behind');

    // Freeing index 1 makes it the next one chosen again.
    await provider.deleteInterface(a.id);
    await assert.rejects(rawEni(a.id));
    const c = await provider.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] });
    assert.equal(c.deviceIndex, 1);
    const list = await provider.listInterfaces();
    assert.deepEqual(
      list.map((i) => [i.id, i.deviceIndex]),
      [
        [large().primaryEniId, 0],
        [c.id, 1],
        [b.id, 2],
      ],
    );
    await provider.deleteInterface(b.id);
    await provider.deleteInterface(c.id);
    assert.equal((await provider.listInterfaces()).length, 1);
  });

  test('assign and unassign by count and by address, within the per-ENI limit', async () => {
    const eni = await provider.createInterface({
      subnetId: nodeSubnet().id,
      securityGroupIds: [seed.sgId],
      secondaryIpCount: 3,
    });
    const added = await provider.assignIps(eni.id, { count: 2 });
    assert.equal(added.length, 2);
    for (const ip of added) assert.ok(!eni.secondaryIps.includes(ip) && ip !== eni.primaryIp);
    let now = (await provider.listInterfaces()).find((i) => i.id === eni.id)!;
    assert.equal(now.secondaryIps.length, 5);

    // 1 primary + 5 secondary = 6; 10 is the m5.large limit.
    await assert.rejects(provider.assignIps(eni.id, { count: 5 }), LimitExceededError);
    assert.equal((await rawEni(eni.id)).PrivateIpAddresses?.length, 6, 'refused before calling EC2');

    await provider.unassignIps(eni.id, added);
    now = (await provider.listInterfaces()).find((i) => i.id === eni.id)!;
    assert.deepEqual(now.secondaryIps.sort(), [...eni.secondaryIps].sort());

    const back = await provider.assignIps(eni.id, { ips: added });
    assert.deepEqual([...back].sort(), [...added].sort());
    assert.deepEqual(await provider.assignIps(eni.id, { ips: added }), [], 'already there: nothing added');

    const more = await provider.assignIps(eni.id, { count: 4 });
    assert.equal(more.length, 4);
    await assert.rejects(provider.assignIps(eni.id, { count: 1 }), LimitExceededError);

    const cidr = parseCidr(nodeSubnet().cidr);
    await assert.rejects(
      provider.assignIps(eni.id, { ips: [intToIp(cidr.network + 1)] }),
      (e) => e instanceof OtherProviderError && /not a usable address/.test(e.message),
    );
    await assert.rejects(provider.unassignIps(eni.id, [eni.primaryIp]), /primary IP/);
    await provider.unassignIps(eni.id, ['10.255.255.254']); // not on the ENI: a no-op
    await provider.deleteInterface(eni.id);
  });

  test('concurrent mutations never share a device index or overrun the IP limit', async () => {
    const [x, y] = await Promise.all([
      provider.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] }),
      provider.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] }),
    ]);
    assert.deepEqual([x.deviceIndex, y.deviceIndex].sort(), [1, 2]);
    // 1 primary + 5 + 5 > 10: exactly one of the two may succeed.
    const results = await Promise.allSettled([
      provider.assignIps(x.id, { count: 5 }),
      provider.assignIps(x.id, { count: 5 }),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.ok(rejected.reason instanceof LimitExceededError);
    assert.equal((await rawEni(x.id)).PrivateIpAddresses?.length, 6);
    await Promise.all([provider.deleteInterface(x.id), provider.deleteInterface(y.id)]);
    assert.equal((await provider.listInterfaces()).length, 1);
  });

  test('a batch of creates lists the node once, re-reads no subnet it just described, and describes no ENI it created; a known interface is grown without a describe', async () => {
    const p = makeProvider(false);
    try {
      await p.describeNode();
      await p.describeSubnets([nodeSubnet().id]); // as subnet discovery ranks before a grow
      const from = events.length;
      const [x, y] = await Promise.all([
        p.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId], secondaryIpCount: 4 }),
        p.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId], secondaryIpCount: 2 }),
      ]);
      const calls: Record<string, number> = {};
      for (const e of events.slice(from)) calls[e.api] = (calls[e.api] ?? 0) + 1;
      assert.deepEqual(calls, {
        DescribeNetworkInterfaces: 1,
        CreateNetworkInterface: 2,
        AttachNetworkInterface: 2,
        ModifyNetworkInterfaceAttribute: 2,
      });
      assert.deepEqual([x!.deviceIndex, y!.deviceIndex].sort(), [1, 2]);
      // What the create answers said is what EC2 holds.
      await assertAsListed(p, [x!, y!]);
      assert.equal(x!.secondaryIps.length, 4);
      // A grow on an interface the caller knows: one AssignPrivateIpAddresses, no describe.
      const mark = events.length;
      const added = await p.assignIps(x!.id, {
        count: 2,
        known: { subnetId: nodeSubnet().id, ips: [x!.primaryIp, ...x!.secondaryIps] },
      });
      assert.deepEqual(
        events.slice(mark).map((e) => e.api),
        ['AssignPrivateIpAddresses'],
      );
      assert.equal(added.length, 2);
      for (const ip of added) assert.ok(ip !== x!.primaryIp && !x!.secondaryIps.includes(ip), ip);
      assert.equal((await rawEni(x!.id)).PrivateIpAddresses?.length, 7);
      // The node is full by the provider's own view: a third create re-lists before refusing.
      await assert.rejects(
        p.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] }),
        LimitExceededError,
      );
      await Promise.all([p.deleteInterface(x!.id), p.deleteInterface(y!.id)]);
      // Deleting dropped the view: the slots are free again.
      const z = await p.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] });
      assert.equal(z.deviceIndex, 1);
      await p.deleteInterface(z.id);
    } finally {
      await p.close();
    }
  });

  test('with pickAddresses too, a created interface is reported as EC2 holds it', async () => {
    const p = makeProvider(true);
    try {
      const [x, y] = await Promise.all([
        p.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId], secondaryIpCount: 3 }),
        p.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId], secondaryIpCount: 1 }),
      ]);
      await assertAsListed(p, [x!, y!]);
      await Promise.all([p.deleteInterface(x!.id), p.deleteInterface(y!.id)]);
    } finally {
      await p.close();
    }
  });

  test('deleteInterface onlyIfDetached: an attached ENI is refused and stays attached; a detached one is deleted', async () => {
    const eni = await provider.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] });
    try {
      // LocalStack deletes an attached ENI when asked (EC2 refuses with InvalidNetworkInterface.InUse),
      // so this proves the provider's own look before the delete.
      const seen = events.length;
      await assert.rejects(
        provider.deleteInterface(eni.id, { onlyIfDetached: true }),
        (e) => e instanceof InterfaceInUseError && e.code === 'IN_USE' && /in-use/.test(e.message),
      );
      assert.deepEqual(
        events.slice(seen).map((e) => e.api),
        ['DescribeNetworkInterfaces'],
        'only looked: no detach, no delete',
      );
      const raw = await rawEni(eni.id);
      assert.equal(raw.Status, 'in-use', 'still attached');
      assert.equal(raw.Attachment?.InstanceId, large().id);
      // Detached by someone else: now it may go.
      await ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: raw.Attachment!.AttachmentId! }));
      await provider.deleteInterface(eni.id, { onlyIfDetached: true });
      await assert.rejects(rawEni(eni.id));
    } finally {
      await provider.deleteInterface(eni.id).catch(() => undefined);
    }
  });

  test('errors are typed: unknown ids are NotFound, malformed ids are refused before any call', async () => {
    await assert.rejects(provider.assignIps('eni-0123456789abcdef0', { count: 1 }), NotFoundError);
    await assert.rejects(provider.deleteInterface('eni-0123456789abcdef0'), NotFoundError);
    await assert.rejects(provider.describeSubnets(['subnet-0123456789abcdef0']), NotFoundError);
    await assert.rejects(provider.assignIps('eni-$(rm -rf)', { count: 1 }), /invalid network interface id/);
    await assert.rejects(provider.deleteInterface(large().primaryEniId), /primary interface/);
  });

  test('subnet exhaustion in the tiny /27 is refused as SubnetExhausted', async () => {
    for (const pick of [false, true]) {
      const p = makeProvider(pick);
      try {
        // Another "node" holds all but 3 usable addresses of the /27 (offsets 4..27 of 32).
        const cidr = parseCidr(tinySubnet().cidr);
        const filler = await ec2.send(
          new CreateNetworkInterfaceCommand({
            SubnetId: tinySubnet().id,
            PrivateIpAddresses: Array.from({ length: 24 }, (_, i) => ({
              PrivateIpAddress: intToIp(cidr.network + 4 + i),
              Primary: i === 0,
            })),
          }),
        );
        const [info] = await p.describeSubnets([tinySubnet().id]);
        assert.equal(info!.availableIps, 3);
        await assert.rejects(
          p.createInterface({
            subnetId: tinySubnet().id,
            securityGroupIds: [seed.sgId],
            secondaryIpCount: 3,
          }),
          (e) => e instanceof SubnetExhaustedError && e.subnetId === tinySubnet().id,
        );
        const eni = await p.createInterface({
          subnetId: tinySubnet().id,
          securityGroupIds: [seed.sgId],
          secondaryIpCount: 2,
        });
        if (pick) {
          // Picked by us: the three free, non-reserved addresses.
          const expect = [28, 29, 30].map((o) => intToIp(cidr.network + o));
          assert.deepEqual([eni.primaryIp, ...eni.secondaryIps].sort(), expect.sort());
        }
        await assert.rejects(p.assignIps(eni.id, { count: 1 }), SubnetExhaustedError);
        await p.deleteInterface(eni.id);
        await ec2.send(
          new DeleteNetworkInterfaceCommand({
            NetworkInterfaceId: filler.NetworkInterface!.NetworkInterfaceId!,
          }),
        );
      } finally {
        await p.close();
      }
    }
  });

  test('pickAddresses hands out unique, non-reserved addresses', async () => {
    const p = makeProvider(true);
    try {
      const eni = await p.createInterface({
        subnetId: nodeSubnet().id,
        securityGroupIds: [seed.sgId],
        secondaryIpCount: 4,
      });
      const more = await p.assignIps(eni.id, { count: 5 });
      const all = [eni.primaryIp, ...eni.secondaryIps, ...more];
      assert.equal(new Set(all).size, 10);
      const primary = large().privateIp;
      for (const ip of all) {
        assert.ok(cidrContains(nodeSubnet().cidr, ip) && !isReservedInSubnet(nodeSubnet().cidr, ip), ip);
        assert.notEqual(ip, primary);
      }
      assert.ok(all.every((ip) => ipToInt(ip) > 0));
      await p.deleteInterface(eni.id);
    } finally {
      await p.close();
    }
  });

  test('findLeakedInterfaces finds our detached ENIs by tag, honouring age', async () => {
    const createdAt = clock;
    const eni = await provider.createInterface({ subnetId: nodeSubnet().id, securityGroupIds: [seed.sgId] });
    const attached = await provider.findLeakedInterfaces({ clusterName });
    assert.ok(!attached.some((l) => l.id === eni.id), 'attached ENIs are not leaks');
    // A daemon crash between detach and delete leaves exactly this behind.
    const raw = await rawEni(eni.id);
    await ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: raw.Attachment!.AttachmentId! }));
    // Someone else's unattached ENI in the same subnet: not ours, never reported.
    await ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: nodeSubnet().id }));

    const leaks = await provider.findLeakedInterfaces({ clusterName });
    assert.deepEqual(
      leaks.map((l) => l.id),
      [eni.id],
    );
    assert.equal(leaks[0]!.instanceId, large().id);
    assert.equal(leaks[0]!.clusterName, clusterName);
    assert.equal(leaks[0]!.createdAt?.getTime(), createdAt);
    assert.equal(leaks[0]!.status, 'available');
    assert.deepEqual(await provider.findLeakedInterfaces({ clusterName, olderThanMs: 3_600_000 }), []);
    clock += 2 * 3_600_000;
    assert.equal((await provider.findLeakedInterfaces({ clusterName, olderThanMs: 3_600_000 })).length, 1);
    assert.deepEqual(await provider.findLeakedInterfaces({ clusterName: `${clusterName}-other` }), []);
    await provider.deleteInterface(eni.id);
    assert.deepEqual(await provider.findLeakedInterfaces({ clusterName }), []);
  });

  test('every EC2 call was reported to the observer', () => {
    const apis = new Set(events.map((e) => e.api));
    for (const api of [
      'DescribeInstanceTypes',
      'DescribeVpcs',
      'DescribeNetworkInterfaces',
      'DescribeSubnets',
      'CreateNetworkInterface',
      'AttachNetworkInterface',
      'AssignPrivateIpAddresses',
      'UnassignPrivateIpAddresses',
      'DetachNetworkInterface',
      'DeleteNetworkInterface',
    ]) {
      assert.ok(apis.has(api), `no ${api} event`);
    }
    assert.ok(events.every((e) => e.cloud === 'aws' && e.durationMs >= 0 && e.attempt >= 1));
    assert.ok(
      events.some((e) => e.outcome === 'error'),
      'NotFound calls are reported as errors',
    );
  });
});
