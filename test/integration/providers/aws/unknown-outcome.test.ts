// EC2 calls whose outcome is unknown, end to end against LocalStack through the fault proxy
// (test/fakes/fault-proxy.ts): every mutating call is let through to LocalStack and then its answer
// is lost (connection reset), held past the client's timeout, or replaced by a 500. The provider
// must notice the change was made (re-read before a resend) so that nothing is done twice and
// nothing is left behind; a create whose attach or DeleteOnTermination step fails must be rolled
// back, and a failed rollback reported, never swallowed. LocalStack cannot produce these faults
// itself, hence the proxy.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DescribeNetworkInterfacesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { CREATE_TOKEN_TAG, createAwsProvider } from '../../../../src/providers/aws/provider.ts';
import { OtherProviderError } from '../../../../src/providers/errors.ts';
import { OWNER_TAGS } from '../../../../src/providers/types.ts';
import { type FaultProxy, startFaultProxy, UNKNOWN_OUTCOME_MODES } from '../../../fakes/fault-proxy.ts';
import type { ImdsFake } from '../../../fakes/imds-aws.ts';
import {
  ec2Endpoint,
  LocalStackCluster,
  region,
  requireLocalStack,
  type SeedResult,
  startInstanceImds,
} from '../../../helpers/localstack.ts';

// The client's timeout applies to every EC2 call through the proxy, not only the faulted one: it
// must outlast an ordinary call to a LocalStack on a loaded machine (800 ms did not), while the
// held answer (delay-after, 2x this) still comes well past it.
const TIMEOUT_MS = 2500;
const cluster = new LocalStackCluster('aws-unknown');
let seed: SeedResult;
let imds: ImdsFake;
let proxy: FaultProxy;
let instanceId: string;
const direct = new EC2Client({
  region: region(),
  endpoint: ec2Endpoint(),
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
});
const providers: ReturnType<typeof createAwsProvider>[] = [];

function provider(pickAddresses: boolean) {
  const p = createAwsProvider({
    region: region(),
    ec2Endpoint: proxy.url,
    imdsEndpoint: imds.url,
    clusterName: cluster.name,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    limiter: { retry: { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 100 } },
    requestTimeoutMs: TIMEOUT_MS,
    pickAddresses,
  });
  providers.push(p);
  return p;
}

/** LocalStack's own view (no proxy): every ENI of this cluster. */
async function clusterEnis() {
  const out = await direct.send(
    new DescribeNetworkInterfacesCommand({
      Filters: [{ Name: `tag:${OWNER_TAGS.clusterName}`, Values: [cluster.name] }],
    }),
  );
  return out.NetworkInterfaces ?? [];
}

const calls = (action: string) => proxy.stats.byCall[action] ?? 0;

test('LocalStack is reachable', () => requireLocalStack());

describe('EC2 mutations with an unknown outcome (fault proxy in front of LocalStack)', () => {
  let subnetId: string;
  before(async () => {
    seed = await cluster.seed();
    const inst = seed.instances.find((i) => i.type === 'm5.4xlarge')!;
    instanceId = inst.id;
    imds = await startInstanceImds(instanceId, 0);
    proxy = await startFaultProxy({ target: ec2Endpoint(), dialect: 'ec2' });
    subnetId = seed.subnets.find((s) => s.role === 'node' && s.az === inst.az)!.id;
  });
  after(async () => {
    for (const p of providers) await p.close();
    await proxy?.close();
    await imds?.close();
    direct.destroy();
    await cluster.delete();
  });

  for (const mode of UNKNOWN_OUTCOME_MODES) {
    const fault = { mode, times: 1, delayMs: TIMEOUT_MS * 2 } as const;

    test(`${mode}: CreateNetworkInterface is not repeated; one ENI, attached, carrying the token`, async () => {
      const p = provider(true);
      const before = new Set((await clusterEnis()).map((e) => e.NetworkInterfaceId));
      const sent = calls('CreateNetworkInterface');
      proxy.addRule({ action: 'CreateNetworkInterface', ...fault });
      const eni = await p.createInterface({ subnetId, securityGroupIds: [seed.sgId], secondaryIpCount: 1 });
      proxy.clearRules();
      assert.equal(calls('CreateNetworkInterface') - sent, 1, 'the create was sent again');
      const fresh = (await clusterEnis()).filter((e) => !before.has(e.NetworkInterfaceId));
      assert.deepEqual(
        fresh.map((e) => e.NetworkInterfaceId),
        [eni.id],
        'exactly one new ENI, the one returned',
      );
      assert.equal(fresh[0]!.Attachment?.InstanceId, instanceId);
      assert.ok(fresh[0]!.TagSet?.some((t) => t.Key === CREATE_TOKEN_TAG && t.Value));
      await p.deleteInterface(eni.id);
    });

    test(`${mode}: AttachNetworkInterface is not repeated; the create succeeds with one attachment`, async () => {
      const p = provider(true);
      const before = new Set((await clusterEnis()).map((e) => e.NetworkInterfaceId));
      const sent = calls('AttachNetworkInterface');
      proxy.addRule({ action: 'AttachNetworkInterface', ...fault });
      const eni = await p.createInterface({ subnetId, securityGroupIds: [seed.sgId] });
      proxy.clearRules();
      assert.equal(calls('AttachNetworkInterface') - sent, 1);
      const fresh = (await clusterEnis()).filter((e) => !before.has(e.NetworkInterfaceId));
      assert.deepEqual(
        fresh.map((e) => [e.NetworkInterfaceId, e.Attachment?.InstanceId]),
        [[eni.id, instanceId]],
      );
      await p.deleteInterface(eni.id);
    });

    for (const pick of [true, false]) {
      test(`${mode}: AssignPrivateIpAddresses (${pick ? 'by address' : 'by count'}) is not repeated`, async () => {
        const p = provider(pick);
        const eni = await p.createInterface({ subnetId, securityGroupIds: [seed.sgId] });
        const sent = calls('AssignPrivateIpAddresses');
        proxy.addRule({ action: 'AssignPrivateIpAddresses', ...fault });
        const added = await p.assignIps(eni.id, { count: 3 });
        proxy.clearRules();
        assert.equal(calls('AssignPrivateIpAddresses') - sent, 1);
        assert.equal(added.length, 3);
        const now = (await p.listInterfaces()).find((i) => i.id === eni.id)!;
        assert.deepEqual(
          [...now.secondaryIps].sort(),
          [...added].sort(),
          'the ENI holds exactly what was reported',
        );
        await p.deleteInterface(eni.id);
      });
    }

    test(`${mode}: UnassignPrivateIpAddresses applied but unanswered still resolves, nothing left`, async () => {
      const p = provider(true);
      const eni = await p.createInterface({ subnetId, securityGroupIds: [seed.sgId], secondaryIpCount: 4 });
      const sent = calls('UnassignPrivateIpAddresses');
      proxy.addRule({ action: 'UnassignPrivateIpAddresses', ...fault });
      await p.unassignIps(eni.id, eni.secondaryIps.slice(0, 2));
      proxy.clearRules();
      assert.equal(calls('UnassignPrivateIpAddresses') - sent, 1);
      const now = (await p.listInterfaces()).find((i) => i.id === eni.id)!;
      assert.deepEqual(now.secondaryIps, eni.secondaryIps.slice(2));
      await p.deleteInterface(eni.id);
    });

    test(`${mode}: Detach and Delete applied but unanswered: deleteInterface resolves, the ENI is gone`, async () => {
      const p = provider(true);
      const eni = await p.createInterface({ subnetId, securityGroupIds: [seed.sgId] });
      const sent = calls('DeleteNetworkInterface') + calls('DetachNetworkInterface');
      proxy.addRule({ action: ['DetachNetworkInterface', 'DeleteNetworkInterface'], ...fault, times: 2 });
      await p.deleteInterface(eni.id);
      proxy.clearRules();
      assert.equal(calls('DeleteNetworkInterface') + calls('DetachNetworkInterface') - sent, 2);
      assert.ok(!(await clusterEnis()).some((e) => e.NetworkInterfaceId === eni.id));
    });
  }

  test('attach fails for good: the new ENI is deleted and the attach error reported', async () => {
    const p = provider(true);
    const before = new Set((await clusterEnis()).map((e) => e.NetworkInterfaceId));
    proxy.addRule({
      action: 'AttachNetworkInterface',
      mode: 'error-before',
      status: 400,
      code: 'InvalidParameterCombination',
    });
    await assert.rejects(
      p.createInterface({ subnetId, securityGroupIds: [seed.sgId] }),
      /InvalidParameterCombination/,
    );
    proxy.clearRules();
    assert.deepEqual(
      (await clusterEnis()).filter((e) => !before.has(e.NetworkInterfaceId)),
      [],
    );
  });

  test('DeleteOnTermination fails: the attached ENI is detached before it is deleted', async () => {
    const p = provider(true);
    const before = new Set((await clusterEnis()).map((e) => e.NetworkInterfaceId));
    const detaches = calls('DetachNetworkInterface');
    proxy.addRule({
      action: 'ModifyNetworkInterfaceAttribute',
      mode: 'error-before',
      status: 400,
      code: 'InvalidParameterValue',
    });
    await assert.rejects(
      p.createInterface({ subnetId, securityGroupIds: [seed.sgId] }),
      /InvalidParameterValue/,
    );
    proxy.clearRules();
    assert.equal(calls('DetachNetworkInterface') - detaches, 1, 'an attached ENI must be detached first');
    assert.deepEqual(
      (await clusterEnis()).filter((e) => !before.has(e.NetworkInterfaceId)),
      [],
    );
  });

  test('attach fails and so does the rollback: both errors reported, naming the ENI', async () => {
    const p = provider(true);
    const before = new Set((await clusterEnis()).map((e) => e.NetworkInterfaceId));
    proxy.addRule({
      action: 'AttachNetworkInterface',
      mode: 'error-before',
      status: 400,
      code: 'InvalidParameterCombination',
    });
    proxy.addRule({
      action: 'DeleteNetworkInterface',
      mode: 'error-before',
      status: 400,
      code: 'UnauthorizedOperation',
    });
    const err = await p.createInterface({ subnetId, securityGroupIds: [seed.sgId] }).then(
      () => assert.fail('createInterface resolved'),
      (e: unknown) => e,
    );
    proxy.clearRules();
    const left = (await clusterEnis()).filter((e) => !before.has(e.NetworkInterfaceId));
    assert.equal(left.length, 1, 'the delete was refused, so the ENI is still there');
    assert.ok(err instanceof OtherProviderError, String(err));
    assert.match(
      err.message,
      new RegExp(`creating ${left[0]!.NetworkInterfaceId} failed .*InvalidParameterCombination`),
    );
    assert.match(err.message, /removing it failed too .*UnauthorizedOperation/);
    await p.deleteInterface(left[0]!.NetworkInterfaceId!);
  });
});
