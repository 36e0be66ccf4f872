// AwsProvider.instancesExist against LocalStack's EC2 (real SDK, real HTTP): what the janitor asks
// before deleting a leaked interface. Fails (never skips) when LocalStack is not running.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  DescribeInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../../../localstack/seed.ts';
import { createAwsProvider } from '../../../../src/providers/aws/index.ts';
import type { ApiCallEvent } from '../../../../src/providers/types.ts';
import {
  ec2Endpoint,
  LocalStackCluster,
  region,
  requireLocalStack,
  type SeedResult,
} from '../../../helpers/localstack.ts';

const UNKNOWN = 'i-0123456789abcdef0';

test('LocalStack is reachable', () => requireLocalStack());

describe('AWS provider instancesExist on LocalStack', () => {
  const cluster = new LocalStackCluster('aws-instances');
  const ec2 = localEc2Client(ec2Endpoint(), region());
  const events: ApiCallEvent[] = [];
  let seed: SeedResult;
  let provider: ReturnType<typeof createAwsProvider>;
  // The m5.4xlarge is terminated by a test; the m5.large stays running.
  const running = () => seed.instances.find((i) => i.type === 'm5.large')!.id;
  const doomed = () => seed.instances.find((i) => i.type === 'm5.4xlarge')!.id;

  before(async () => {
    seed = await cluster.seed();
    provider = createAwsProvider({
      region: region(),
      ec2Endpoint: ec2Endpoint(),
      clusterName: cluster.name,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      observer: { onCall: (e) => events.push(e) },
    });
  });

  after(async () => {
    await provider?.close();
    await cluster.delete();
    ec2.destroy();
  });

  test('a seeded running instance exists', async () => {
    const answer = await provider.instancesExist!([running()]);
    assert.deepEqual([...answer], [[running(), true]]);
  });

  test('an id EC2 does not know is gone (the filter does not fail the call)', async () => {
    const answer = await provider.instancesExist!([UNKNOWN]);
    assert.deepEqual([...answer], [[UNKNOWN, false]]);
  });

  test('a terminated instance is gone; a mixed batch is answered per id in one call', async () => {
    await ec2.send(new StopInstancesCommand({ InstanceIds: [doomed()] }));
    const stopped = await provider.instancesExist!([doomed()]);
    assert.equal(stopped.get(doomed()), true, 'a stopped instance still exists');
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [doomed()] }));
    const raw = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [doomed()] }));
    const state = raw.Reservations?.[0]?.Instances?.[0]?.State?.Name;
    assert.ok(state === 'terminated' || state === 'shutting-down', `state after terminate: ${state}`);

    const calls = events.filter((e) => e.api === 'DescribeInstances').length;
    const answer = await provider.instancesExist!([running(), doomed(), UNKNOWN, running()]);
    assert.equal(answer.size, 3, 'duplicates answered once');
    assert.equal(answer.get(running()), true);
    assert.equal(answer.get(doomed()), false);
    assert.equal(answer.get(UNKNOWN), false);
    assert.equal(events.filter((e) => e.api === 'DescribeInstances').length, calls + 1, 'one call per batch');
  });

  test('malformed ids are left unanswered (unknown) and do not spoil the others', async () => {
    const answer = await provider.instancesExist!(['i-XYZ', 'not-an-id', running()]);
    assert.deepEqual([...answer], [[running(), true]]);
  });

  test('when EC2 cannot be asked, every id counts as existing (never delete on doubt)', async () => {
    const unreachable = createAwsProvider({
      region: region(),
      ec2Endpoint: 'http://127.0.0.1:9', // discard port: connection refused
      clusterName: cluster.name,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      limiter: { retry: { maxAttempts: 1 } },
    });
    try {
      const answer = await unreachable.instancesExist!([UNKNOWN, doomed()]);
      assert.deepEqual(
        [...answer],
        [
          [UNKNOWN, true],
          [doomed(), true],
        ],
      );
    } finally {
      await unreachable.close();
    }
  });
});
