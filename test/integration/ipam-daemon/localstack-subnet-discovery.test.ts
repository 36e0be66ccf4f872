// ENABLE_SUBNET_DISCOVERY and ADDITIONAL_ENI_TAGS against LocalStack (issue 13), plus the AWS-shaped
// introspection endpoint and the awscni_* metric aliases of the same daemon: subnets of the
// node's VPC and zone tagged kubernetes.io/role/cni, found with DescribeSubnets tag-less filters
// (vpc-id, availability-zone) and ranked by LocalStack's AvailableIpAddressCount; then the real
// daemon process puts its first secondary ENI in the discovered subnet with the most free
// addresses, carrying the extra tags. Fails (never skips) when LocalStack is down.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CreateSubnetCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSubnetsCommand,
  type NetworkInterface,
} from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../../localstack/seed.ts';
import { createAwsProvider } from '../../../src/providers/aws/index.ts';
import { OWNER_TAGS } from '../../../src/providers/types.ts';
import { ec2Endpoint, region } from '../../helpers/localstack.ts';
import { call } from '../../unit/ipam-daemon/harness.ts';
import {
  allocatePod,
  type DaemonProcess,
  killAllDaemons,
  LocalStackNode,
  startDaemonProcess,
} from './daemon-process.ts';

// Fixed ports from the range this suite owns (27000-27999): introspection and /metrics.
const INTROSPECTION = '127.0.0.1:27461';
const METRICS = 27462;

describe('subnet discovery and extra ENI tags on LocalStack', { timeout: 300_000 }, () => {
  const node = new LocalStackNode('knobs-subnets');
  const ec2 = localEc2Client(ec2Endpoint(), region());
  const made: Record<string, string> = {};
  let daemon: DaemonProcess | undefined;

  before(async () => {
    await node.setUp();
    const { az } = node.instance;
    const b = /^10\.(\d+)\./.exec(node.seed.cidr)![1];
    const other = node.seed.subnets.find((s) => s.az !== az)!.az;
    const subnet = async (name: string, cidr: string, zone: string, tags: Record<string, string>) => {
      const out = await ec2.send(
        new CreateSubnetCommand({
          VpcId: node.seed.vpcId,
          CidrBlock: cidr,
          AvailabilityZone: zone,
          TagSpecifications: [
            { ResourceType: 'subnet', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
          ],
        }),
      );
      made[name] = out.Subnet!.SubnetId!;
    };
    // The node's subnet is a /20 (4091 free). Tagged for pods: a /19 (more free) and a /24 (fewer).
    await subnet('big', `10.${b}.64.0/19`, az, { 'kubernetes.io/role/cni': '1' });
    await subnet('small', `10.${b}.48.0/24`, az, { 'kubernetes.io/role/cni': '1' });
    // Left out: another cluster's, one excluded with 0, one untagged, one in the other zone.
    await subnet('foreign', `10.${b}.96.0/19`, az, {
      'kubernetes.io/role/cni': '1',
      'kubernetes.io/cluster/someone-else': 'shared',
    });
    await subnet('zero', `10.${b}.128.0/19`, az, { 'kubernetes.io/role/cni': '0' });
    await subnet('untagged', `10.${b}.160.0/19`, az, { Name: 'plain' });
    await subnet('elsewhere', `10.${b}.192.0/19`, other, { 'kubernetes.io/role/cni': '1' });
  });

  after(async () => {
    await killAllDaemons();
    ec2.destroy();
    await node.tearDown();
  });

  test('LocalStack answers the vpc-id + availability-zone filters with tags and free counts', async () => {
    const out = await ec2.send(
      new DescribeSubnetsCommand({
        Filters: [
          { Name: 'vpc-id', Values: [node.seed.vpcId] },
          { Name: 'availability-zone', Values: [node.instance.az] },
        ],
      }),
    );
    const ids = (out.Subnets ?? []).map((s) => s.SubnetId);
    assert.ok(ids.includes(made.big) && !ids.includes(made.elsewhere), JSON.stringify(ids));
    const big = out.Subnets!.find((s) => s.SubnetId === made.big)!;
    assert.equal(big.AvailableIpAddressCount, 8192 - 5);
    assert.ok(big.Tags?.some((t) => t.Key === 'kubernetes.io/role/cni' && t.Value === '1'));
  });

  test('the provider ranks the node subnet and the tagged ones of its zone by free addresses', async () => {
    const provider = createAwsProvider({
      region: region(),
      ec2Endpoint: ec2Endpoint(),
      imdsEndpoint: node.env().VPC_IPAM_IMDS_ENDPOINT!,
      clusterName: node.cluster.name,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    try {
      const found = await provider.discoverPodSubnets!();
      assert.deepEqual(
        found.map((s) => s.id),
        [made.big, node.instance.subnetId, made.small],
      );
      assert.deepEqual(
        found.map((s) => s.availableIps),
        [8187, found[1]!.availableIps, 251],
      );
    } finally {
      await provider.close();
    }
  });

  const logTail = async (d: DaemonProcess) =>
    (await readFile(d.logPath, 'utf8')).split('\n').slice(-30).join('\n');

  /** Pods take the primary ENI's IPs (it is filled first) until the pool attaches a secondary ENI. */
  async function fillPrimaryUntil(
    d: DaemonProcess,
    tag: string,
    done: (enis: NetworkInterface[]) => boolean,
  ): Promise<NetworkInterface[]> {
    let enis = await secondaryEnis();
    for (let n = 0; n < 30 && !done(enis); n++) {
      // While the pool grows (or frees a slot) the answer is a retryable 503, retried as the
      // runtime would; an instance limit is not (m5.large: 27 pod IPs, far more than this loop takes).
      await allocatePod(d.socketPath, `${tag}${n}`);
      enis = await secondaryEnis();
    }
    return enis;
  }

  async function secondaryEnis(): Promise<NetworkInterface[]> {
    const out = await ec2.send(
      new DescribeNetworkInterfacesCommand({
        Filters: [{ Name: 'attachment.instance-id', Values: [node.instance.id] }],
      }),
    );
    return (out.NetworkInterfaces ?? []).filter((e) => (e.Attachment?.DeviceIndex ?? 0) > 0);
  }

  test('the daemon (discovery on by default) attaches its first secondary ENI in the biggest tagged subnet, with ADDITIONAL_ENI_TAGS', async () => {
    assert.deepEqual(await secondaryEnis(), []);
    daemon = await startDaemonProcess(
      {
        ...node.env(),
        WARM_ENI_TARGET: '1',
        VPC_IPAM_RECONCILE_INTERVAL: '0.5',
        ADDITIONAL_ENI_TAGS: '{"team": "payments", "cost-center": "42"}',
        INTROSPECTION_BIND_ADDRESS: INTROSPECTION,
        METRICS_PORT: String(METRICS),
        VPC_IPAM_AWSCNI_METRICS: 'true',
      },
      { logPath: join(node.workDir, 'ipamd-discovery.log') },
    );
    const enis = await fillPrimaryUntil(daemon, 'a', (e) => e.length > 0);
    assert.equal(enis.length, 1, `WARM_ENI_TARGET=1 made one secondary ENI; log:\n${await logTail(daemon)}`);
    const eni = enis[0]!;
    assert.equal(eni.SubnetId, made.big);
    const tags = Object.fromEntries((eni.TagSet ?? []).map((t) => [t.Key, t.Value]));
    assert.equal(tags.team, 'payments');
    assert.equal(tags['cost-center'], '42');
    assert.equal(tags[OWNER_TAGS.clusterName], node.cluster.name, 'ownership tags are still there');
    assert.equal(tags[OWNER_TAGS.instanceId], node.instance.id);

    // The AWS-shaped introspection endpoint sees the same pool, pod IPs included.
    type EnisView = Record<
      string,
      {
        TotalIPs: number;
        AssignedIPs: number;
        ENIs: Record<string, { DeviceNumber: number; SubnetID: string }>;
      }
    >;
    // The daemon records the new ENI a moment after EC2 shows it attached.
    let enisView: EnisView = {};
    for (let i = 0; i < 50 && !enisView['0']?.ENIs[eni.NetworkInterfaceId!]; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      enisView = (await (await fetch(`http://${INTROSPECTION}/v1/enis`)).json()) as EnisView;
    }
    const card = enisView['0']!;
    const allocated = (await call(daemon.socketPath, 'GET', '/v1/allocations')).body as {
      allocations: unknown[];
    };
    assert.equal(card.AssignedIPs, allocated.allocations.length);
    assert.ok(card.AssignedIPs > 0);
    assert.equal(card.ENIs[eni.NetworkInterfaceId!]?.SubnetID, made.big);
    assert.equal(card.ENIs[eni.NetworkInterfaceId!]?.DeviceNumber, eni.Attachment!.DeviceIndex);
    const env = (await (await fetch(`http://${INTROSPECTION}/v1/ipamd-env-settings`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(env.ENABLE_SUBNET_DISCOVERY, true);
    assert.equal((await fetch(`http://${INTROSPECTION}/v1/enis`, { method: 'POST' })).status, 405);

    // awscni_* aliases (VPC_IPAM_AWSCNI_METRICS=true) equal the vpc_ipam_* metrics they mirror.
    const text = await (await fetch(`http://127.0.0.1:${METRICS}/metrics`)).text();
    const value = (re: RegExp) =>
      text
        .split('\n')
        .filter((l) => re.test(l))
        .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    assert.equal(value(/^awscni_total_ip_addresses /), value(/^vpc_ipam_pool_ips\{state="total"\}/));
    assert.equal(value(/^awscni_assigned_ip_addresses /), card.AssignedIPs);
    assert.equal(value(/^awscni_add_ip_req_count /), value(/^vpc_ipam_allocations_total\{/));
    assert.equal(value(/^awscni_add_ip_req_count /), card.AssignedIPs, 'one request per pod');
    assert.equal(
      value(/^awscni_ec2api_req_count\{fn="CreateNetworkInterface"\}/),
      value(/^vpc_ipam_cloud_api_calls_total\{cloud="aws",api="CreateNetworkInterface"/),
    );
    assert.equal(value(/^awscni_eni_allocated /), 2);
    await daemon.stop();
  });

  test('ENABLE_SUBNET_DISCOVERY=false keeps pod ENIs in the node subnet', async () => {
    await daemon?.stop(); // when the previous test failed half-way
    // A fresh state dir. The previous daemon's ENI stays attached in the /19, which is no pod subnet now.
    daemon = await startDaemonProcess(
      {
        ...node.env(),
        VPC_IPAM_CHECKPOINT: join(node.workDir, 'state2', 'checkpoint.json'),
        METRICS_PORT: '0',
        DISABLE_INTROSPECTION: 'true',
        WARM_ENI_TARGET: '1',
        VPC_IPAM_RECONCILE_INTERVAL: '0.5',
        ENABLE_SUBNET_DISCOVERY: 'false',
      },
      { logPath: join(node.workDir, 'ipamd-no-discovery.log') },
    );
    const notBig = (e: NetworkInterface[]) => e.filter((x) => x.SubnetId !== made.big);
    const enis = await fillPrimaryUntil(daemon, 'b', (e) => notBig(e).length > 0);
    const fresh = () => notBig(enis);
    assert.ok(fresh().length > 0, `${JSON.stringify(enis.map((e) => e.SubnetId))}\n${await logTail(daemon)}`);
    for (const e of fresh()) assert.equal(e.SubnetId, node.instance.subnetId);
    await daemon.stop();
  });
});
