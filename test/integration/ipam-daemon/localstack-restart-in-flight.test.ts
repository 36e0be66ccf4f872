// A daemon kill -9'd while a cloud change is in flight, against LocalStack through the fault proxy
// (test/fakes/fault-proxy.ts: LocalStack cannot apply a call late or hold its answer by itself).
// The real vpc-ipamd process is killed from the proxy's hook at the exact moment, then restarted
// on the same checkpoint (src/ipam-daemon/daemon/intents.ts is what is tested):
//   - UnassignPrivateIpAddresses held in the proxy and applied only after the restarted daemon has
//     listed the ENI: those IPs are never free in the restarted pool, and the pool matches EC2;
//   - AssignPrivateIpAddresses applied late in the same way: the addresses are adopted, not leaked
//     (the drift resync is off, so only the recorded intent brings them in);
//   - killed between detaching and deleting an ENI: the restarted daemon deletes it, and leaves a
//     detached ENI of another node and one of another cluster alone.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CreateNetworkInterfaceCommand,
  DeleteNetworkInterfaceCommand,
  DescribeNetworkInterfacesCommand,
  type EC2Client,
} from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../../localstack/seed.ts';
import type { PoolStatus } from '../../../src/ipam-daemon/api-types.ts';
import { OWNER_TAGS } from '../../../src/providers/types.ts';
import { type FaultProxy, startFaultProxy } from '../../fakes/fault-proxy.ts';
import { ec2Endpoint, region } from '../../helpers/localstack.ts';
import { call } from '../../unit/ipam-daemon/harness.ts';
import {
  allocatePod,
  allocateRequest,
  type DaemonProcess,
  LocalStackNode,
  startDaemonProcess,
} from './daemon-process.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('vpc-ipamd on LocalStack: kill -9 with a cloud change in flight', { timeout: 300_000 }, () => {
  const node = new LocalStackNode('ipamd-inflight');
  let ec2: EC2Client;
  let proxy: FaultProxy;
  let daemon: DaemonProcess | undefined;
  let restarts = 0;

  const env = () => ({
    ...node.env(),
    VPC_IPAM_EC2_ENDPOINT: proxy.url,
    WARM_IP_TARGET: '2',
    VPC_IPAM_MIN_GROW_STEP: '1',
    IP_COOLDOWN_PERIOD: '0',
    VPC_IPAM_SHRINK_DELAY: '3',
    VPC_IPAM_RECONCILE_INTERVAL: '0.5',
    // Off: what the restarted daemon gets right here comes from the recorded intent alone.
    VPC_IPAM_RESYNC_INTERVAL: '0',
    VPC_IPAM_GC_GRACE: '1',
  });
  const start = async () => {
    daemon = await startDaemonProcess(env(), {
      logPath: join(node.workDir, `ipamd-${restarts++}.log`),
      readyTimeoutMs: 60_000,
    });
    return daemon;
  };
  const pool = async (): Promise<PoolStatus> => {
    const r = await call(daemon?.socketPath ?? '', 'GET', '/v1/pool');
    assert.equal(r.status, 200, r.text);
    return r.body as PoolStatus;
  };
  const allocate = (id: string) => allocatePod(daemon?.socketPath ?? '', id);
  const release = async (id: string) => {
    const r = await call(daemon?.socketPath ?? '', 'POST', '/v1/release', {
      containerId: id,
      ifName: 'eth0',
    });
    assert.equal(r.status, 200, r.text);
  };
  const enis = async () =>
    (
      await ec2.send(
        new DescribeNetworkInterfacesCommand({
          Filters: [{ Name: 'subnet-id', Values: [node.instance.subnetId] }],
        }),
      )
    ).NetworkInterfaces ?? [];
  /** Secondary IPs per ENI attached to the node, in EC2. */
  const cloudIps = async () => {
    const out = new Map<string, string[]>();
    for (const e of await enis()) {
      if (e.Attachment?.InstanceId !== node.instance.id) continue;
      out.set(
        e.NetworkInterfaceId ?? '',
        (e.PrivateIpAddresses ?? []).filter((p) => !p.Primary).map((p) => p.PrivateIpAddress ?? ''),
      );
    }
    return out;
  };
  /** Pool and EC2 hold the same interfaces and addresses (every state counted). */
  const agree = async (): Promise<string | null> => {
    const st = await pool();
    const cloud = await cloudIps();
    const mine = new Map(st.interfaces.map((i) => [i.interfaceId, (i.ips ?? []).map((x) => x.ip).sort()]));
    const a = JSON.stringify([...mine].sort());
    const b = JSON.stringify([...cloud].map(([k, v]) => [k, [...v].sort()]).sort());
    return a === b ? null : `pool ${a}\nEC2  ${b}`;
  };
  const waitAgree = async (withinMs: number) => {
    let last: string | null = 'never compared';
    for (const until = Date.now() + withinMs; Date.now() < until; await sleep(500)) {
      last = await agree();
      if (last === null) return;
    }
    assert.fail(`the pool and EC2 still disagree after ${withinMs} ms:\n${last}`);
  };
  const waitFor = async (what: string, withinMs: number, ok: () => Promise<boolean>) => {
    for (const until = Date.now() + withinMs; Date.now() < until; await sleep(300)) if (await ok()) return;
    assert.fail(`${what}: not within ${withinMs} ms`);
  };
  /**
   * Kill -9 the daemon from the proxy's hook when `action` arrives. delay-before: the call is held
   * until land() (EC2 applies it late, after the restart); delay-after: applied, answer held.
   */
  const killOn = (action: string, mode: 'delay-before' | 'delay-after') => {
    const d = daemon;
    assert.ok(d);
    let land = () => {};
    const until = new Promise<void>((r) => {
      land = r;
    });
    const killed = new Promise<void>((resolve) => {
      proxy.addRule({
        action,
        mode,
        until,
        delayMs: 30_000,
        times: 1,
        onHit: () => {
          d.child.kill('SIGKILL');
          void d.exited.then(() => resolve());
        },
      });
    });
    return { killed, land };
  };
  const warm = async () => {
    const st = await pool();
    return st.free >= 2 && (await agree()) === null;
  };

  before(async () => {
    await node.setUp();
    ec2 = localEc2Client(ec2Endpoint(), region());
    proxy = await startFaultProxy({ target: ec2Endpoint(), dialect: 'ec2' });
  });

  after(async () => {
    await node.tearDown();
    await proxy?.close();
    ec2?.destroy();
  });

  test('an unassign EC2 applies after the restart: its IPs are never free, the pool ends equal to EC2', async () => {
    await start();
    for (let i = 0; i < 5; i++) await allocate(`un-${i}`);
    await waitFor('5 pods + 2 warm IPs, pool equal to EC2', 30_000, warm);
    const eni0 = node.instance.primaryEniId;
    const before = (await cloudIps()).get(eni0) ?? [];
    // The shrink's unassign reaches the proxy: the daemon dies; EC2 applies the call only once the
    // restarted daemon has listed the ENI and answered.
    const k = killOn('UnassignPrivateIpAddresses', 'delay-before');
    await Promise.all([0, 1, 2, 3, 4].map((i) => release(`un-${i}`)));
    await k.killed;
    await start();
    const st = await pool();
    const freeAtReady = st.interfaces.flatMap((i) =>
      (i.ips ?? []).filter((x) => x.state === 'free').map((x) => x.ip),
    );
    k.land();
    let removed: string[] = [];
    await waitFor('the held unassign is applied', 20_000, async () => {
      const now = (await cloudIps()).get(eni0) ?? [];
      removed = before.filter((ip) => !now.includes(ip));
      return removed.length > 0;
    });
    await sleep(1000);
    assert.deepEqual(
      freeAtReady.filter((ip) => removed.includes(ip)),
      [],
      'the restarted daemon offered IPs an unassign in flight was taking away',
    );
    await waitAgree(20_000);
  });

  test('an assign EC2 applies after the restart: the addresses are adopted, not leaked', async () => {
    daemon ??= await start();
    await waitFor('2 warm IPs, pool equal to EC2', 30_000, warm);
    const k = killOn('AssignPrivateIpAddresses', 'delay-before');
    // Pods beyond the warm IPs: the pool grows (the last ones wait for it, and see the daemon die).
    // One request each, no retry: a retry could reach the restarted daemon and grow its pool.
    for (let i = 0; i < 3; i++)
      void call(daemon.socketPath, 'POST', '/v1/allocate', allocateRequest(`as-${i}`)).catch(() => {});
    await k.killed;
    await start();
    // The restarted daemon grows the pool itself; only then does the dead one's assign land.
    await waitFor('the restarted pool at its warm target', 30_000, warm);
    const before = [...(await cloudIps()).values()].flat().length;
    k.land();
    await waitFor('the held assign is applied', 20_000, async () => {
      return [...(await cloudIps()).values()].flat().length > before;
    });
    await waitAgree(25_000);
    await Promise.all([0, 1, 2].map((i) => release(`as-${i}`)));
  });

  test('killed between detaching and deleting an ENI: the restart deletes it, and only it', async () => {
    daemon ??= await start();
    // Two detached ENIs the daemon must never touch: another node's of this cluster, and another
    // cluster's tagged with this very instance.
    const decoy = async (tags: Record<string, string>) =>
      (
        await ec2.send(
          new CreateNetworkInterfaceCommand({
            SubnetId: node.instance.subnetId,
            Description: 'vpc-ipam test: not this node and cluster',
            TagSpecifications: [
              {
                ResourceType: 'network-interface',
                Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
              },
            ],
          }),
        )
      ).NetworkInterface?.NetworkInterfaceId ?? '';
    const otherNode = await decoy({
      [OWNER_TAGS.managedBy]: 'vpc-ipam',
      [OWNER_TAGS.clusterName]: node.cluster.name,
      [OWNER_TAGS.instanceId]: 'i-0123456789abcdef0',
    });
    const otherCluster = await decoy({
      [OWNER_TAGS.managedBy]: 'vpc-ipam',
      [OWNER_TAGS.clusterName]: `${node.cluster.name}-other`,
      [OWNER_TAGS.instanceId]: node.instance.id,
    });
    try {
      // m5.large: 9 secondary IPs per ENI. 10 pods need a second ENI.
      for (let i = 0; i < 10; i++) await allocate(`del-${i}`);
      await waitFor('10 pods + 2 warm IPs, pool equal to EC2', 30_000, warm);
      const second = [...(await cloudIps()).keys()].find((id) => id !== node.instance.primaryEniId);
      assert.ok(second, 'a second ENI was attached');
      const k = killOn('DetachNetworkInterface', 'delay-after');
      await Promise.all([...Array(10).keys()].map((i) => release(`del-${i}`)));
      await k.killed;
      const left = (await enis()).find((e) => e.NetworkInterfaceId === second);
      assert.equal(left?.Status, 'available', 'the ENI is detached and not deleted when the daemon dies');
      await start();
      let gone = false;
      for (const until = Date.now() + 20_000; Date.now() < until && !gone; await sleep(500)) {
        gone = !(await enis()).some((e) => e.NetworkInterfaceId === second);
      }
      assert.ok(gone, `the restarted daemon did not delete its detached ENI ${second}`);
      const ids = new Set((await enis()).map((e) => e.NetworkInterfaceId));
      assert.ok(ids.has(otherNode), "another node's detached ENI was deleted");
      assert.ok(ids.has(otherCluster), "another cluster's detached ENI was deleted");
      await waitAgree(20_000);
    } finally {
      for (const id of [otherNode, otherCluster])
        await ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: id })).catch(() => {});
    }
  });
});
