// The daemon against LocalStack's EC2, as a real process: discovery through the IMDSv2 fake,
// interfaces attached as the pool grows, the instance limit, kill -9 and restart with every
// allocation intact and nothing leaked, SIGTERM drain, the pool shrinking after the cooldown.
// Needs LocalStack on VPC_IPAM_EC2_ENDPOINT (default http://127.0.0.1:4566); fails without it.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DescribeNetworkInterfacesCommand, type NetworkInterface } from '@aws-sdk/client-ec2';
import { freePort } from '../../../cluster/proc.ts';
import { localEc2Client } from '../../../localstack/seed.ts';
import type { Allocation, ApiError, PoolStatus } from '../../../src/ipam-daemon/api-types.ts';
import { normalizeMac } from '../../../src/providers/aws/mac.ts';
import { OWNER_TAGS } from '../../../src/providers/types.ts';
import { ec2Endpoint, region } from '../../helpers/localstack.ts';
import { call } from '../../unit/ipam-daemon/harness.ts';
import { type DaemonProcess, LocalStackNode, startDaemonProcess } from './daemon-process.ts';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('vpc-ipamd on LocalStack (m5.large)', { timeout: 300_000 }, () => {
  const node = new LocalStackNode('ipamd');
  const clusterName = node.cluster.name;
  let instanceId: string;
  let dir: string;
  let env: Record<string, string>;
  let daemon: DaemonProcess | undefined;
  let metricsPort: number;
  const ec2 = localEc2Client(ec2Endpoint(), region());
  const held = new Map<string, Allocation>();

  async function attachedEnis(): Promise<NetworkInterface[]> {
    const r = await ec2.send(
      new DescribeNetworkInterfacesCommand({
        Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }],
      }),
    );
    return (r.NetworkInterfaces ?? []).sort(
      (a, b) => (a.Attachment?.DeviceIndex ?? 0) - (b.Attachment?.DeviceIndex ?? 0),
    );
  }

  async function clusterEnis(): Promise<NetworkInterface[]> {
    const r = await ec2.send(
      new DescribeNetworkInterfacesCommand({
        Filters: [{ Name: `tag:${OWNER_TAGS.clusterName}`, Values: [clusterName] }],
      }),
    );
    return r.NetworkInterfaces ?? [];
  }

  function secondaryIps(enis: NetworkInterface[]): string[] {
    return enis.flatMap((e) =>
      (e.PrivateIpAddresses ?? []).filter((p) => !p.Primary).map((p) => p.PrivateIpAddress ?? ''),
    );
  }

  async function allocate(n: number): Promise<{ status: number; body: unknown }> {
    const r = await call(daemon?.socketPath ?? '', 'POST', '/v1/allocate', {
      containerId: `ctr${n}`,
      ifName: 'eth0',
      podNamespace: 'default',
      podName: `pod-${n}`,
    });
    if (r.status === 200) held.set(`ctr${n}`, r.body as Allocation);
    return r;
  }

  async function pool(): Promise<PoolStatus> {
    return (await call(daemon?.socketPath ?? '', 'GET', '/v1/pool')).body as PoolStatus;
  }

  before(async () => {
    await node.setUp();
    instanceId = node.instance.id;
    dir = node.workDir;
    metricsPort = await freePort();
    env = {
      ...node.env(),
      ENABLE_POD_WATCH: 'false',
      METRICS_PORT: String(metricsPort),
      WARM_ENI_TARGET: '1',
      IP_COOLDOWN_PERIOD: '1',
      VPC_IPAM_SHRINK_DELAY: '1',
      VPC_IPAM_RECONCILE_INTERVAL: '1',
      VPC_IPAM_ALLOCATE_WAIT: '20',
    };
  });

  after(() => node.tearDown());

  test('starts, discovers the node through IMDSv2 and fills the primary interface', async () => {
    daemon = await startDaemonProcess(env, { logPath: join(dir, 'ipamd-1.log') });
    const p = await waitFor('primary filled', async () => {
      const s = await pool();
      return s.total >= 9 ? s : undefined;
    });
    assert.equal(p.instanceId, instanceId);
    assert.equal(p.instanceType, 'm5.large');
    assert.equal(p.maxPods, 29);
    const enis = await attachedEnis();
    assert.equal(secondaryIps(enis).length, p.total, 'the daemon knows every IP LocalStack has on the node');
  });

  test('allocates up to 27 pod IPs, attaching interfaces as needed; the 28th gets instance-limit', async () => {
    for (let n = 0; n < 27; n++) {
      const r = await allocate(n);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const ips = [...held.values()].map((a) => a.ip);
    assert.equal(new Set(ips).size, 27, 'distinct IPs');
    const enis = await attachedEnis();
    assert.equal(enis.length, 3, 'three interfaces attached');
    for (const a of held.values()) {
      const eni = enis.find((e) => e.NetworkInterfaceId === a.interfaceId);
      assert.ok(eni, `${a.ip}: interface ${a.interfaceId} is attached`);
      assert.ok(
        (eni.PrivateIpAddresses ?? []).some((p) => p.PrivateIpAddress === a.ip && !p.Primary),
        `${a.ip} is a secondary IP of ${a.interfaceId} in LocalStack`,
      );
      assert.equal(a.routeTable, a.deviceIndex === 0 ? 0 : a.deviceIndex + 1);
      assert.equal(a.interfaceMac, normalizeMac(eni.MacAddress ?? ''));
    }
    for (const e of enis.slice(1)) {
      const tags = Object.fromEntries((e.TagSet ?? []).map((t) => [t.Key, t.Value]));
      assert.equal(tags[OWNER_TAGS.clusterName], clusterName);
      assert.equal(tags[OWNER_TAGS.instanceId], instanceId);
    }
    const t0 = Date.now();
    const r = await call(daemon?.socketPath ?? '', 'POST', '/v1/allocate', {
      containerId: 'ctr-extra',
      ifName: 'eth0',
      podNamespace: 'default',
      podName: 'pod-extra',
    });
    assert.equal(r.status, 503);
    const e = r.body as ApiError;
    assert.equal(e.code, 'NO_IP');
    assert.equal(e.reason, 'instance-limit');
    assert.match(e.message, /m5\.large holds at most 3 interfaces x 9 pod IPs = 27/);
    assert.ok(Date.now() - t0 < 5000, 'a hard limit is answered at once, not after VPC_IPAM_ALLOCATE_WAIT');
  });

  test('metrics: pool gauges and per-API cloud call counters', async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    const text = await res.text();
    assert.match(text, /vpc_ipam_pool_ips\{state="assigned"\} 27/);
    assert.match(
      text,
      /vpc_ipam_cloud_api_calls_total\{cloud="aws",api="CreateNetworkInterface",outcome="ok"\} [1-9]/,
    );
    assert.match(text, /vpc_ipam_no_ip_total\{reason="instance-limit"\} 1/);
    assert.match(text, /vpc_ipam_allocation_duration_seconds_count 28/);
  });

  test('kill -9 in the middle of a burst of releases; restart finds every answered allocation and leaks nothing', async () => {
    // Release 10 and re-allocate 10 new keys concurrently while the daemon is killed mid-way.
    const answered = new Map<string, string | null>();
    const ops: Array<Promise<void>> = [];
    for (let n = 0; n < 10; n++) {
      ops.push(
        call(daemon?.socketPath ?? '', 'POST', '/v1/release', {
          containerId: `ctr${n}`,
          ifName: 'eth0',
        }).then(
          (r) => {
            if (r.status === 200) answered.set(`ctr${n}`, null);
          },
          () => {},
        ),
      );
    }
    const killAfter = new Promise<void>((r) => setTimeout(r, 15));
    await killAfter;
    daemon?.child.kill('SIGKILL');
    await Promise.allSettled(ops);
    const exit = await daemon?.exited;
    assert.equal(exit?.signal, 'SIGKILL');
    for (const [k] of answered) held.delete(k);

    daemon = await startDaemonProcess(env, { logPath: join(dir, 'ipamd-2.log') });
    const list = (
      (await call(daemon.socketPath, 'GET', '/v1/allocations')).body as { allocations: Allocation[] }
    ).allocations;
    const byKey = new Map(list.map((a) => [a.containerId, a]));
    for (const [k, a] of held) {
      const inFlight = /^ctr\d$/.test(k); // its release was sent but not answered before the kill
      if (inFlight && !byKey.has(k)) continue;
      assert.equal(byKey.get(k)?.ip, a.ip, `${k} kept ${a.ip} across kill -9`);
    }
    for (const k of answered.keys()) assert.ok(!byKey.has(k), `${k} was released before the kill`);
    // Releases that were not answered may or may not have happened: the runtime retries DEL.
    for (let n = 0; n < 10; n++)
      await call(daemon.socketPath, 'POST', '/v1/release', { containerId: `ctr${n}`, ifName: 'eth0' });
    for (let n = 0; n < 10; n++) held.delete(`ctr${n}`);
    assert.equal(new Set(list.map((a) => a.ip)).size, list.length, 'no IP held twice after restart');

    const enis = await attachedEnis();
    const p = await pool();
    assert.equal(p.total, secondaryIps(enis).length, 'every IP on the node is in the pool (none leaked)');
    const stray = (await clusterEnis()).filter((e) => e.Attachment?.InstanceId !== instanceId);
    assert.deepEqual(
      stray.map((e) => e.NetworkInterfaceId),
      [],
      'no interface of ours left unattached',
    );
  });

  test('release everything: after the cooldown the pool shrinks back to the primary in LocalStack', async () => {
    for (const k of [...held.keys()]) {
      const r = await call(daemon?.socketPath ?? '', 'POST', '/v1/release', {
        containerId: k,
        ifName: 'eth0',
      });
      assert.equal(r.status, 200);
      held.delete(k);
    }
    const p0 = await pool();
    assert.equal(p0.assigned, 0);
    const enis = await waitFor(
      'interfaces deleted',
      async () => {
        const e = await attachedEnis();
        return e.length === 1 && (await pool()).interfaces.length === 1 ? e : undefined;
      },
      60_000,
    );
    assert.equal(enis[0]?.Attachment?.DeviceIndex, 0);
    const p = await pool();
    assert.equal(p.interfaces.length, 1);
    assert.equal(p.total, 9, 'WARM_ENI_TARGET=1 keeps the primary full');
    assert.deepEqual(await clusterEnis(), [], 'deleted, not left available');
  });

  test('SIGTERM drains and leaves a consistent checkpoint', async () => {
    const r = await allocate(500);
    assert.equal(r.status, 200);
    const exit = await daemon?.stop('SIGTERM');
    assert.equal(exit?.code, 0);
    const cp = JSON.parse(await readFile(env.VPC_IPAM_CHECKPOINT as string, 'utf8'));
    assert.deepEqual(
      cp.allocations.map((a: { containerId: string; ip: string }) => [a.containerId, a.ip]),
      [['ctr500', (r.body as Allocation).ip]],
    );
    daemon = undefined;
  });
});
