// The janitor end to end: real AWS provider against LocalStack's EC2 for the interfaces, real
// Lease election and Node lookup through @kubernetes/client-node against the real kube-apiserver
// (test/helpers/kube-apiserver.ts), as the chart's janitor ServiceAccount under the chart's RBAC
// (nodes: list; its one Lease in the release namespace). It must delete exactly the leaked
// interface and touch nothing else.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  DeleteNetworkInterfaceCommand,
  DescribeNetworkInterfacesCommand,
  DetachNetworkInterfaceCommand,
  type EC2Client,
} from '@aws-sdk/client-ec2';
import { CoordinationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { localEc2Client } from '../../../localstack/seed.ts';
import {
  CloudLiveness,
  CombinedLiveness,
  KubernetesNodeLiveness,
} from '../../../src/janitor/instance-liveness.ts';
import { Janitor, type JanitorCloud } from '../../../src/janitor/janitor.ts';
import { LeaseElector } from '../../../src/janitor/lease-elector.ts';
import { AWS_VPC_CNI_TAGS } from '../../../src/providers/aws/aws-vpc-cni-owner.ts';
import { createAwsProvider } from '../../../src/providers/aws/index.ts';
import { OWNER_TAGS } from '../../../src/providers/types.ts';
import { type KubeApiServer, RELEASE_NAMESPACE, startKubeApiServer } from '../../helpers/kube-apiserver.ts';
import { ec2Endpoint, LocalStackCluster, region, type SeedResult } from '../../helpers/localstack.ts';

const logger = pino({ level: 'silent' });
const HOUR = 3_600_000;

describe('janitor against LocalStack EC2 and the real kube-apiserver', { timeout: 600_000 }, () => {
  const seeded = new LocalStackCluster('janitor');
  const cluster = seeded.name;
  let kube: KubeApiServer;
  /** The janitor's credentials: the chart's janitor ServiceAccount. */
  let kc: KubeConfig;
  let seed: SeedResult;
  let ec2: EC2Client;
  const created: string[] = [];
  const ids: Record<string, string> = {};

  async function eni(name: string, tags: Record<string, string>, description?: string): Promise<string> {
    const out = await ec2.send(
      new CreateNetworkInterfaceCommand({
        SubnetId: seed.subnets[0]!.id,
        Groups: [seed.sgId],
        ...(description !== undefined ? { Description: description } : {}),
        TagSpecifications: [
          {
            ResourceType: 'network-interface',
            Tags: Object.entries({ ...tags, 'vpc-ipam/test-case': name }).map(([Key, Value]) => ({
              Key,
              Value,
            })),
          },
        ],
      }),
    );
    const id = out.NetworkInterface!.NetworkInterfaceId!;
    created.push(id);
    ids[name] = id;
    return id;
  }

  before(async () => {
    seed = await seeded.seed();
    ec2 = localEc2Client(ec2Endpoint(), region());
    kube = await startKubeApiServer('janitor');
    const chart = await kube.installChart('vpc');
    if (!chart.janitorKubeConfig) throw new Error('the chart rendered no janitor ServiceAccount');
    kc = chart.janitorKubeConfig;
    const old = new Date(Date.now() - 2 * HOUR).toISOString();
    const young = new Date(Date.now() - 60_000).toISOString();
    const live = seed.instances[0]!;
    const owned = (instanceId: string, createdAt: string) => ({
      [OWNER_TAGS.clusterName]: cluster,
      [OWNER_TAGS.instanceId]: instanceId,
      [OWNER_TAGS.createdAt]: createdAt,
      [OWNER_TAGS.managedBy]: 'vpc-ipam',
    });
    await eni('leaked', owned('i-0123456789abcdef0', old));
    await eni('young', owned('i-0123456789abcdef0', young));
    await eni('live-instance', owned(live.id, old));
    await eni('no-created-at', {
      [OWNER_TAGS.clusterName]: cluster,
      [OWNER_TAGS.instanceId]: 'i-0123456789abcdef0',
    });
    await eni('other-cluster', {
      ...owned('i-0123456789abcdef0', old),
      [OWNER_TAGS.clusterName]: `${cluster}-other`,
    });
    const attached = await eni('attached', owned('i-0123456789abcdef0', old));
    await ec2.send(
      new AttachNetworkInterfaceCommand({
        NetworkInterfaceId: attached,
        InstanceId: live.id,
        DeviceIndex: 3,
      }),
    );
    // The live instance is a Kubernetes node; the leaked interface's instance is not.
    await kube.core.createNode({
      body: {
        metadata: { name: 'ip-10-0-0-1.ec2.internal' },
        spec: { providerID: `aws:///${live.az}/${live.id}` },
      },
    });
  });

  after(async () => {
    await kube?.stop();
    if (!ec2) return;
    for (const id of created) {
      try {
        const d = await ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [id] }));
        const att = d.NetworkInterfaces?.[0]?.Attachment?.AttachmentId;
        if (att) await ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: att, Force: true }));
        await ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: id }));
      } catch {
        // already gone (the janitor deleted it)
      }
    }
    await seeded.delete().catch(() => undefined);
    ec2.destroy();
  });

  function clients() {
    return { core: kc.makeApiClient(CoreV1Api), coord: kc.makeApiClient(CoordinationV1Api) };
  }

  /** The real AWS provider against LocalStack, scoped to this suite's cluster. */
  function awsProvider() {
    return createAwsProvider({
      region: region(),
      ec2Endpoint: ec2Endpoint(),
      clusterName: cluster,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
  }

  async function existing(): Promise<Set<string>> {
    const d = await ec2.send(
      new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [seed.vpcId] }] }),
    );
    return new Set((d.NetworkInterfaces ?? []).map((n) => n.NetworkInterfaceId!));
  }

  test('a follower sweeps nothing; the lease holder deletes exactly the leaked interface', async () => {
    const { core, coord } = clients();
    const provider = awsProvider();
    const mk = (identity: string) =>
      new LeaseElector({
        api: coord,
        namespace: RELEASE_NAMESPACE,
        name: 'vpc-ipam-janitor', // the chart's LEASE_NAME, the one its Role grants get/update on
        identity,
        leaseDurationSeconds: 30,
        renewDeadlineMs: 20_000,
        retryPeriodMs: 5_000,
        logger,
      });
    const leaderElector = mk('janitor-a');
    const followerElector = mk('janitor-b');
    try {
      assert.equal(await leaderElector.tryOnce(), true);
      assert.equal(await followerElector.tryOnce(), false);
      const janitorFor = (leadership: LeaseElector) =>
        new Janitor({
          cloud: provider,
          liveness: new KubernetesNodeLiveness(core),
          leadership,
          clusterName: cluster,
          graceMs: HOUR,
          dryRun: false,
          logger,
        });
      const idle = await janitorFor(followerElector).sweep();
      assert.equal(idle.skipped, 'not the lease holder');
      assert.deepEqual(idle.deleted, []);

      const report = await janitorFor(leaderElector).sweep();
      assert.deepEqual(report.deleted, [ids.leaked]);
      assert.deepEqual(report.failed, []);
      const keptIds = report.kept.map((k) => k.id);
      assert.ok(keptIds.includes(ids['live-instance']!), JSON.stringify(report.kept));

      const left = await existing();
      assert.equal(left.has(ids.leaked!), false, 'the leaked interface is deleted');
      for (const name of ['young', 'live-instance', 'no-created-at', 'other-cluster', 'attached']) {
        assert.ok(left.has(ids[name]!), `${name} must survive`);
      }
      const d = await ec2.send(
        new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [ids.attached!] }),
      );
      assert.equal(d.NetworkInterfaces?.[0]?.Status, 'in-use', 'the attached interface was never detached');

      // A second sweep finds nothing more to do.
      const again = await janitorFor(leaderElector).sweep();
      assert.deepEqual(again.deleted, []);
    } finally {
      await provider.close();
    }
  });

  test('an interface attached between the re-check and the delete survives, attached (the delete never detaches)', async () => {
    const { core } = clients();
    const provider = awsProvider();
    const racing = await eni('racing', {
      [OWNER_TAGS.clusterName]: cluster,
      [OWNER_TAGS.instanceId]: 'i-0123456789abcdef0',
      [OWNER_TAGS.createdAt]: new Date(Date.now() - 2 * HOUR).toISOString(),
      [OWNER_TAGS.managedBy]: 'vpc-ipam',
    });
    const live = seed.instances[0]!;
    // The real provider, with a node taking the interface right after the janitor's re-check
    // listed it as available (the window the janitor cannot close by looking again).
    let listings = 0;
    const cloud: JanitorCloud = {
      async findLeakedInterfaces(q) {
        // Only this case's interface, so the test does not depend on what the previous one left.
        const found = (await provider.findLeakedInterfaces(q)).filter((c) => c.id === racing);
        if (++listings === 2) {
          await ec2.send(
            new AttachNetworkInterfaceCommand({
              NetworkInterfaceId: racing,
              InstanceId: live.id,
              DeviceIndex: 4,
            }),
          );
        }
        return found;
      },
      deleteInterface: (id, options) => provider.deleteInterface(id, options),
    };
    try {
      const report = await new Janitor({
        cloud,
        liveness: new KubernetesNodeLiveness(core),
        leadership: { isLeader: () => true },
        clusterName: cluster,
        graceMs: HOUR,
        dryRun: false,
        logger,
      }).sweep();
      assert.equal(listings, 2, 'one sweep listing, one re-check');
      assert.deepEqual(report.deleted, []);
      assert.deepEqual(report.failed, [], 'in use is a skip, not a failure');
      const kept = report.kept.find((k) => k.id === racing);
      assert.match(kept?.reason ?? '', /^in use at delete time: .*in-use/);
      const d = await ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [racing] }));
      assert.equal(d.NetworkInterfaces?.[0]?.Status, 'in-use', 'still there and never detached');
      assert.equal(d.NetworkInterfaces?.[0]?.Attachment?.InstanceId, live.id);
    } finally {
      await provider.close();
    }
  });

  test('an interface whose instance runs in EC2 but is no Kubernetes Node survives when the cloud is asked too', async () => {
    const { core } = clients();
    const provider = awsProvider();
    const notANode = seed.instances[1]!; // running in EC2, absent from the Nodes (only [0] is one)
    const old = new Date(Date.now() - 2 * HOUR).toISOString();
    const owned = (instanceId: string) => ({
      [OWNER_TAGS.clusterName]: cluster,
      [OWNER_TAGS.instanceId]: instanceId,
      [OWNER_TAGS.createdAt]: old,
      [OWNER_TAGS.managedBy]: 'vpc-ipam',
    });
    const ec2Only = await eni('ec2-only', owned(notANode.id));
    const gone = await eni('gone-everywhere', owned('i-0fedcba9876543210'));
    const mine = new Set([ec2Only, gone]);
    // Only this case's interfaces, so the test does not depend on what the previous ones left.
    const cloud: JanitorCloud = {
      findLeakedInterfaces: async (q) =>
        (await provider.findLeakedInterfaces(q)).filter((c) => mine.has(c.id)),
      deleteInterface: (id, options) => provider.deleteInterface(id, options),
    };
    const janitor = (liveness: ConstructorParameters<typeof Janitor>[0]['liveness'], dryRun: boolean) =>
      new Janitor({
        cloud,
        liveness,
        leadership: { isLeader: () => true },
        clusterName: cluster,
        graceMs: HOUR,
        dryRun,
        logger,
      });
    try {
      // Control: with the Nodes alone, both would go (a dry run, so nothing is touched).
      const nodesOnly = await janitor(new KubernetesNodeLiveness(core), true).sweep();
      assert.deepEqual(
        nodesOnly.kept
          .filter((k) => k.reason === 'dry run')
          .map((k) => k.id)
          .sort(),
        [ec2Only, gone].sort(),
      );
      // As main.ts wires it: the Nodes and the cloud, gone only when both say so.
      const both = new CombinedLiveness([
        new KubernetesNodeLiveness(core),
        new CloudLiveness({ instancesExist: (ids) => provider.instancesExist!(ids) }),
      ]);
      const report = await janitor(both, false).sweep();
      assert.deepEqual(report.deleted, [gone]);
      assert.deepEqual(report.failed, []);
      const kept = report.kept.find((k) => k.id === ec2Only);
      assert.equal(kept?.reason, `instance ${notANode.id} still exists`);
      const left = await existing();
      assert.ok(left.has(ec2Only), 'the running instance keeps its interface');
      assert.equal(left.has(gone), false);
    } finally {
      await provider.close();
    }
  });
  test('interfaces aws-node leaked (its description and tags) are judged by the same rules as ours', async () => {
    const { core } = clients();
    const provider = awsProvider();
    const live = seed.instances[0]!;
    const goneId = 'i-0a1b2c3d4e5f60789';
    const old = new Date(Date.now() - 2 * HOUR).toISOString();
    // As the AWS VPC CNI tags the ENIs it creates (its pkg/awsutils).
    const awsTags = (instanceId: string, createdAt: string | null, clusterName: string | null = cluster) => ({
      [AWS_VPC_CNI_TAGS.instanceId]: instanceId,
      ...(createdAt ? { [AWS_VPC_CNI_TAGS.createdAt]: createdAt } : {}),
      ...(clusterName ? { [AWS_VPC_CNI_TAGS.clusterName]: clusterName } : {}),
    });
    const mine = new Set<string>([
      await eni('aws-leaked', awsTags(goneId, old), `aws-K8S-${goneId}`),
      await eni(
        'aws-young',
        awsTags(goneId, new Date(Date.now() - 60_000).toISOString()),
        `aws-K8S-${goneId}`,
      ),
      await eni('aws-live-instance', awsTags(live.id, old), `aws-K8S-${live.id}`),
      await eni('aws-no-created-at', awsTags(goneId, null), `aws-K8S-${goneId}`),
      await eni('aws-no-cluster-tag', awsTags(goneId, old, null), `aws-K8S-${goneId}`),
      await eni('aws-other-cluster', awsTags(goneId, old, `${cluster}-other`), `aws-K8S-${goneId}`),
      await eni('aws-wrong-description', awsTags(goneId, old), 'my own ENI'),
    ]);
    const attached = await eni('aws-attached', awsTags(goneId, old), `aws-K8S-${goneId}`);
    mine.add(attached);
    await ec2.send(
      new AttachNetworkInterfaceCommand({
        NetworkInterfaceId: attached,
        InstanceId: live.id,
        DeviceIndex: 5,
      }),
    );
    const cloud: JanitorCloud = {
      findLeakedInterfaces: async (q) =>
        (await provider.findLeakedInterfaces(q)).filter((c) => mine.has(c.id)),
      deleteInterface: (id, options) => provider.deleteInterface(id, options),
    };
    try {
      const listed = await cloud.findLeakedInterfaces({ clusterName: cluster });
      assert.deepEqual(
        listed.map((c) => c.id).sort(),
        [ids['aws-leaked'], ids['aws-young'], ids['aws-live-instance'], ids['aws-no-created-at']].sort(),
        'listed: unattached, described and tagged by aws-node for this cluster',
      );
      assert.ok(listed.every((c) => c.createdBy === 'aws-vpc-cni'));
      const report = await new Janitor({
        cloud,
        liveness: new CombinedLiveness([
          new KubernetesNodeLiveness(core),
          new CloudLiveness({ instancesExist: (q) => provider.instancesExist!(q) }),
        ]),
        leadership: { isLeader: () => true },
        clusterName: cluster,
        graceMs: HOUR,
        dryRun: false,
        logger,
      }).sweep();
      assert.deepEqual(report.deleted, [ids['aws-leaked']]);
      assert.deepEqual(report.failed, []);
      const reasons = Object.fromEntries(report.kept.map((k) => [k.id, k.reason]));
      // Young and undated ones are not even listed for a sweep (older than the grace period only).
      assert.equal(reasons[ids['aws-live-instance']!], `instance ${live.id} still exists`);
      const left = await existing();
      assert.equal(left.has(ids['aws-leaked']!), false);
      for (const name of [
        'aws-young',
        'aws-live-instance',
        'aws-no-created-at',
        'aws-no-cluster-tag',
        'aws-other-cluster',
        'aws-wrong-description',
        'aws-attached',
      ]) {
        assert.ok(left.has(ids[name]!), `${name} must survive`);
      }
    } finally {
      await provider.close();
    }
  });
});
