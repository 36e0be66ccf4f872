// Multi-card instance types on LocalStack: its DescribeInstanceTypes data carries the real
// NetworkCards lists. A c6in.32xlarge reports MaximumNetworkInterfaces 16 over two cards of 8; the
// provider must take card 0's 8 (ENIs attached without a card index all go on card 0), so the
// node's limits and max pods match the AWS VPC CNI's, and the 8th ENI is refused by us (LocalStack
// enforces no limit).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { DescribeImagesCommand, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../../../localstack/seed.ts';
import { createAwsProvider, maxPods } from '../../../../src/providers/aws/index.ts';
import { LimitExceededError } from '../../../../src/providers/errors.ts';
import type { ImdsFake } from '../../../fakes/imds-aws.ts';
import {
  ec2Endpoint,
  LocalStackCluster,
  region,
  requireLocalStack,
  type SeedResult,
  startInstanceImds,
} from '../../../helpers/localstack.ts';

test('LocalStack is reachable', () => requireLocalStack());

describe('AWS provider on a multi-card instance type (c6in.32xlarge)', () => {
  const cluster = new LocalStackCluster('aws-multicard');
  const ec2 = localEc2Client(ec2Endpoint(), region());
  let seed: SeedResult;
  let imds: ImdsFake;
  let provider: ReturnType<typeof createAwsProvider>;
  let subnetId: string;

  before(async () => {
    seed = await cluster.seed();
    const like = seed.instances.find((i) => i.type === 'm5.large')!;
    subnetId = seed.subnets.find((s) => s.role === 'node' && s.az === like.az)!.id;
    const images = await ec2.send(new DescribeImagesCommand({}));
    const run = await ec2.send(
      new RunInstancesCommand({
        ImageId: images.Images![0]!.ImageId!,
        InstanceType: 'c6in.32xlarge',
        MinCount: 1,
        MaxCount: 1,
        SubnetId: subnetId,
        SecurityGroupIds: [seed.sgId],
        TagSpecifications: [
          { ResourceType: 'instance', Tags: [{ Key: 'vpc-ipam/cluster-name', Value: cluster.name }] },
        ],
      }),
    );
    imds = await startInstanceImds(run.Instances![0]!.InstanceId!, 0);
    provider = createAwsProvider({
      region: region(),
      ec2Endpoint: ec2Endpoint(),
      imdsEndpoint: imds.url,
      clusterName: cluster.name,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      pickAddresses: true,
    });
  });

  after(async () => {
    await provider?.close();
    await imds?.close();
    await cluster.delete();
    ec2.destroy();
  });

  test('limits come from network card 0: 8 ENIs (not 16), 50 IPs each, max pods 394', async () => {
    const node = await provider.describeNode();
    assert.equal(node.instanceType, 'c6in.32xlarge');
    assert.equal(node.maxInterfaces, 8);
    assert.equal(node.ipsPerInterface, 50);
    assert.equal(maxPods(node), 394);
  });

  test('the 8th ENI (primary + 7) is refused before EC2 is asked', { timeout: 120_000 }, async () => {
    for (let i = 0; i < 7; i++) await provider.createInterface({ subnetId, securityGroupIds: [seed.sgId] });
    assert.equal((await provider.listInterfaces()).length, 8);
    await assert.rejects(provider.createInterface({ subnetId, securityGroupIds: [seed.sgId] }), (e) => {
      assert.ok(e instanceof LimitExceededError, String(e));
      assert.match(e.message, /c6in\.32xlarge holds at most 8 network interfaces and has 8/);
      return true;
    });
  });
});
