// localstack/seed.ts against LocalStack: the CLI's JSON, the shape of the VPC, idempotence,
// per-cluster CIDRs, and deletion.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DescribeVpcsCommand } from '@aws-sdk/client-ec2';
import { candidateCidrs, localEc2Client, readSeed, type SeedResult } from '../../../localstack/seed.ts';
import { cidrContains, usableAddressCount } from '../../../src/providers/aws/ipv4.ts';
import { isValidMac } from '../../../src/providers/aws/mac.ts';
import {
  deleteCluster,
  ec2Endpoint,
  region,
  requireLocalStack,
  seedCluster,
  uniqueClusterName,
} from '../../helpers/localstack.ts';

const run = promisify(execFile);
const seedCli = join(import.meta.dirname, '../../../localstack/seed.ts');
const a = uniqueClusterName('seed-a');
const b = uniqueClusterName('seed-b');
let seedA: SeedResult;

const setup = async () => {
  await requireLocalStack();
};
const teardown = async () => {
  await deleteCluster({ clusterName: a });
  await deleteCluster({ clusterName: b });
};

// Outside the suite, so a missing LocalStack counts as a failed test, not only as cancelled ones.
test('LocalStack is reachable', () => requireLocalStack());

describe('seed', () => {
  before(setup);
  after(teardown);

  test('the CLI prints the cluster as JSON', async () => {
    const { stdout } = await run(process.execPath, [seedCli, '--cluster', a], {
      env: { ...process.env, VPC_IPAM_EC2_ENDPOINT: ec2Endpoint() },
      timeout: 60_000,
    });
    seedA = JSON.parse(stdout) as SeedResult;
    assert.equal(seedA.clusterName, a);
    assert.match(seedA.vpcId, /^vpc-/);
    assert.match(seedA.cidr, /^10\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.0\.0\/16$/, 'a /16 inside 10.64.0.0/10');
    assert.equal(seedA.secondaryCidrs.length, 1);
    assert.match(seedA.sgId, /^sg-/);
  });

  test('two AZs of node subnets plus a tiny /27, all inside the VPC', () => {
    const nodes = seedA.subnets.filter((s) => s.role === 'node');
    const tiny = seedA.subnets.filter((s) => s.role === 'tiny');
    assert.equal(new Set(nodes.map((s) => s.az)).size, 2);
    assert.equal(tiny.length, 1);
    assert.equal(usableAddressCount(tiny[0]!.cidr), 27);
    for (const s of seedA.subnets) assert.ok(cidrContains(seedA.cidr, s.cidr.split('/')[0]!), s.cidr);
  });

  test('an m5.large and an m5.4xlarge, each with its primary ENI, valid MAC and IP', () => {
    assert.deepEqual(seedA.instances.map((i) => i.type).sort(), ['m5.4xlarge', 'm5.large']);
    for (const i of seedA.instances) {
      assert.match(i.id, /^i-/);
      assert.match(i.primaryEniId, /^eni-/);
      assert.ok(isValidMac(i.mac), i.mac);
      const subnet = seedA.subnets.find((s) => s.id === i.subnetId)!;
      assert.equal(subnet.az, i.az);
      assert.ok(cidrContains(subnet.cidr, i.privateIp));
    }
    assert.notEqual(seedA.instances[0]!.mac, seedA.instances[1]!.mac);
  });

  test('seeding again reads the same cluster back; another cluster gets another /16', async () => {
    const again = await seedCluster({ clusterName: a });
    assert.deepEqual(again, seedA);
    const other = await seedCluster({ clusterName: b });
    assert.notEqual(other.vpcId, seedA.vpcId);
    assert.notEqual(other.cidr, seedA.cidr);
    assert.ok(candidateCidrs(b).includes(other.cidr));
  });

  test('bad cluster names are refused', async () => {
    await assert.rejects(seedCluster({ clusterName: 'a b;rm' }), /invalid cluster name/);
  });

  test('deleteCluster removes the VPC and everything in it', async () => {
    const problems = await deleteCluster({ clusterName: b });
    assert.deepEqual(problems, []);
    assert.equal(await readSeed({ clusterName: b, endpoint: ec2Endpoint(), region: region() }), undefined);
    const ec2 = localEc2Client(ec2Endpoint(), region());
    try {
      const vpcs = await ec2.send(
        new DescribeVpcsCommand({ Filters: [{ Name: 'tag:vpc-ipam/cluster-name', Values: [b] }] }),
      );
      assert.deepEqual(vpcs.Vpcs ?? [], []);
    } finally {
      ec2.destroy();
    }
  });
});
