// EC2 throttling, end to end: the provider talks to LocalStack through a proxy that answers a
// share of calls with EC2's real RequestLimitExceeded error. The provider must retry to success
// within its attempt bound, and give up with ThrottledError after exactly maxAttempts tries.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createAwsProvider } from '../../../../src/providers/aws/index.ts';
import { ThrottledError } from '../../../../src/providers/errors.ts';
import type { ApiCallEvent } from '../../../../src/providers/types.ts';
import type { ImdsFake } from '../../../fakes/imds-aws.ts';
import { startThrottlingProxy, type ThrottlingProxy } from '../../../fakes/throttling-proxy.ts';
import {
  ec2Endpoint,
  LocalStackCluster,
  region,
  requireLocalStack,
  type SeedResult,
  startInstanceImds,
} from '../../../helpers/localstack.ts';

const MAX_ATTEMPTS = 4;
const cluster = new LocalStackCluster('aws-throttle');
let seed: SeedResult;
let imds: ImdsFake;
let proxy: ThrottlingProxy;
const events: ApiCallEvent[] = [];
let provider: ReturnType<typeof createAwsProvider>;

const setup = async () => {
  seed = await cluster.seed();
  const large = seed.instances.find((i) => i.type === 'm5.large')!;
  imds = await startInstanceImds(large.id, 0);
  proxy = await startThrottlingProxy({ target: ec2Endpoint(), share: 0.5 });
  provider = createAwsProvider({
    region: region(),
    ec2Endpoint: proxy.url,
    imdsEndpoint: imds.url,
    clusterName: cluster.name,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    limiter: { retry: { maxAttempts: MAX_ATTEMPTS, baseDelayMs: 20, maxDelayMs: 200 } },
    observer: { onCall: (e) => events.push(e) },
    pickAddresses: true,
  });
};

const teardown = async () => {
  await provider?.close();
  await proxy?.close();
  await imds?.close();
  await cluster.delete();
};

// Outside the suite, so a missing LocalStack counts as a failed test, not only as cancelled ones.
test('LocalStack is reachable', () => requireLocalStack());

describe('EC2 throttling through a RequestLimitExceeded proxy', () => {
  before(setup);
  after(teardown);

  test('at 50% and 75% refused, every operation succeeds within the attempt bound', async () => {
    const subnet = seed.subnets.find((s) => s.role === 'node' && s.az === 'us-east-1a')!;
    for (const share of [0.5, 0.75]) {
      proxy.setShare(share);
      const before = proxy.stats.throttled;
      const node = await provider.describeNode();
      assert.equal(node.instanceType, 'm5.large');
      const eni = await provider.createInterface({
        subnetId: subnet.id,
        securityGroupIds: [seed.sgId],
        secondaryIpCount: 2,
      });
      const added = await provider.assignIps(eni.id, { count: 3 });
      assert.equal(added.length, 3);
      await provider.unassignIps(eni.id, added);
      assert.equal((await provider.listInterfaces()).find((i) => i.id === eni.id)?.secondaryIps.length, 2);
      await provider.deleteInterface(eni.id);
      assert.ok(
        proxy.stats.throttled - before >= 5,
        `only ${proxy.stats.throttled - before} calls refused at ${share}`,
      );
    }
    const throttled = events.filter((e) => e.outcome === 'throttled');
    assert.ok(throttled.length > 0);
    assert.ok(
      events.every((e) => e.attempt <= MAX_ATTEMPTS),
      'an attempt beyond the bound',
    );
    // At 75% (pass, refuse x3, ...) some calls needed every allowed attempt.
    assert.ok(events.some((e) => e.outcome === 'ok' && e.attempt === MAX_ATTEMPTS));
  });

  test('at 100% refused, a call fails with ThrottledError after exactly maxAttempts tries', async () => {
    proxy.setShare(1);
    events.length = 0;
    const seenBefore = proxy.stats.byAction.DescribeSubnets ?? 0;
    const subnetId = seed.subnets[0]!.id;
    await assert.rejects(provider.describeSubnets([subnetId]), (e) => {
      assert.ok(e instanceof ThrottledError, `got ${(e as Error).constructor.name}: ${(e as Error).message}`);
      assert.equal(e.cloudCode, 'RequestLimitExceeded');
      assert.match(e.message, /EC2 DescribeSubnets failed: RequestLimitExceeded/);
      assert.match(e.message, /request id [0-9a-f-]{36}/);
      return true;
    });
    assert.equal((proxy.stats.byAction.DescribeSubnets ?? 0) - seenBefore, MAX_ATTEMPTS);
    assert.deepEqual(
      events.map((e) => [e.api, e.outcome, e.attempt]),
      [1, 2, 3, 4].map((a) => ['DescribeSubnets', 'throttled', a]),
    );
    proxy.setShare(0);
    assert.equal((await provider.describeSubnets([subnetId]))[0]?.id, subnetId);
  });
});
