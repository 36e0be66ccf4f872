// Drift against LocalStack: behind the running daemon's back (the EC2 API, as an operator or
// another tool would), a free IP and a pod's IP are unassigned from the node's primary ENI and
// taken by someone else's interface, and a new IP is assigned to the ENI. The real vpc-ipamd
// process, reading the IMDSv2 fake (a live view of LocalStack), converges: GET /v1/pool drops the
// free IP, marks the pod's IP lost, offers the new one; no new pod ever gets a removed IP; the
// lost IP leaves the pool when its pod is released; metrics count the repairs and show they came
// from metadata, not from DescribeNetworkInterfaces.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AssignPrivateIpAddressesCommand,
  CreateNetworkInterfaceCommand,
  DescribeNetworkInterfacesCommand,
  type EC2Client,
  UnassignPrivateIpAddressesCommand,
} from '@aws-sdk/client-ec2';
import { freePort } from '../../../cluster/proc.ts';
import { localEc2Client } from '../../../localstack/seed.ts';
import type { Allocation, PoolStatus } from '../../../src/ipam-daemon/api-types.ts';
import { pickFreeAddresses } from '../../../src/providers/aws/ipv4.ts';
import { ec2Endpoint, region } from '../../helpers/localstack.ts';
import { call } from '../../unit/ipam-daemon/harness.ts';
import { allocatePod, type DaemonProcess, LocalStackNode, startDaemonProcess } from './daemon-process.ts';

describe('vpc-ipamd on LocalStack: drift repaired while running', { timeout: 180_000 }, () => {
  const node = new LocalStackNode('ipamd-drift');
  let ec2: EC2Client;
  let daemon: DaemonProcess | undefined;
  let metricsPort: number;
  let eni0: string;
  let subnet: { id: string; cidr: string };

  async function takenInSubnet(): Promise<Set<string>> {
    const out = await ec2.send(
      new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'subnet-id', Values: [subnet.id] }] }),
    );
    return new Set(
      (out.NetworkInterfaces ?? []).flatMap((e) =>
        (e.PrivateIpAddresses ?? []).map((p) => p.PrivateIpAddress ?? ''),
      ),
    );
  }

  async function cloudIps(): Promise<string[]> {
    const out = await ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [eni0] }));
    return (out.NetworkInterfaces?.[0]?.PrivateIpAddresses ?? [])
      .filter((p) => !p.Primary)
      .map((p) => p.PrivateIpAddress ?? '');
  }

  const pool = async (): Promise<PoolStatus> => {
    const r = await call(daemon?.socketPath ?? '', 'GET', '/v1/pool');
    assert.equal(r.status, 200, r.text);
    return r.body as PoolStatus;
  };
  const poolIps = (st: PoolStatus) => st.interfaces.find((i) => i.interfaceId === eni0)?.ips ?? [];
  const allocate = (id: string): Promise<Allocation> => allocatePod(daemon?.socketPath ?? '', id);

  before(async () => {
    await node.setUp();
    ec2 = localEc2Client(ec2Endpoint(), region());
    eni0 = node.instance.primaryEniId;
    const s = node.seed.subnets.find((x) => x.id === node.instance.subnetId);
    assert.ok(s && eni0);
    subnet = s;
    // Four secondary IPs on the primary ENI before the daemon starts: the pool finds them (the
    // daemon did not assign them, so no grace period applies to them).
    const ips = pickFreeAddresses(subnet.cidr, await takenInSubnet(), 4);
    await ec2.send(
      new AssignPrivateIpAddressesCommand({ NetworkInterfaceId: eni0, PrivateIpAddresses: ips }),
    );
    metricsPort = await freePort();
  });

  after(async () => {
    await node.tearDown();
    ec2?.destroy();
  });

  test('an IP removed, a pod IP removed and an IP added out of band: the pool converges', async () => {
    daemon = await startDaemonProcess(
      {
        ...node.env(),
        METRICS_PORT: String(metricsPort),
        // 4 IPs found at start = 1 pod + 3 warm: the pool does not grow until the new pods below,
        // so the out-of-band changes are seen by the resync, not by the answer to a grow.
        WARM_IP_TARGET: '3',
        VPC_IPAM_MIN_GROW_STEP: '1',
        VPC_IPAM_SHRINK_DELAY: '3600',
        IP_COOLDOWN_PERIOD: '0',
        VPC_IPAM_RECONCILE_INTERVAL: '0.5',
        VPC_IPAM_RESYNC_INTERVAL: '1',
      },
      { logPath: join(node.workDir, 'ipamd.log') },
    );
    const preexisting = await cloudIps();
    assert.equal(preexisting.length, 4);
    const st0 = await pool();
    assert.deepEqual(
      poolIps(st0)
        .map((s) => s.ip)
        .sort(),
      [...preexisting].sort(),
      'the pool holds the IPs it found',
    );
    // A pod on one of the IPs found at start.
    const podA = await allocate('drift-a');
    assert.ok(preexisting.includes(podA.ip));
    const freeX = preexisting.find((ip) => ip !== podA.ip) as string;
    assert.match((await pool()).plan, /at target/);

    // Behind the daemon's back: X and the pod's IP go to someone else's interface; Y arrives.
    // Three EC2 calls, and the daemon resyncs between them: Y is assigned first, so no state in
    // between has fewer free IPs than WARM_IP_TARGET (unassigning first left 2, and the pool grew
    // by the same lowest-free pick as below, taking back X, the pod's IP or Y).
    const [squatterIp, y] = pickFreeAddresses(subnet.cidr, await takenInSubnet(), 2) as [string, string];
    await ec2.send(
      new AssignPrivateIpAddressesCommand({ NetworkInterfaceId: eni0, PrivateIpAddresses: [y] }),
    );
    await ec2.send(
      new UnassignPrivateIpAddressesCommand({
        NetworkInterfaceId: eni0,
        PrivateIpAddresses: [freeX, podA.ip],
      }),
    );
    await ec2.send(
      new CreateNetworkInterfaceCommand({
        SubnetId: subnet.id,
        PrivateIpAddresses: [
          { PrivateIpAddress: squatterIp, Primary: true },
          { PrivateIpAddress: freeX, Primary: false },
          { PrivateIpAddress: podA.ip, Primary: false },
        ],
        Description: 'vpc-ipam test: another tool took these addresses',
      }),
    );
    const removed = new Set([freeX, podA.ip]);

    // Converge (resync every second from the IMDS fake, which re-reads LocalStack every 200 ms).
    const deadline = Date.now() + 30_000;
    let st = await pool();
    for (;;) {
      const ips = poolIps(st);
      const done =
        !ips.some((s) => s.ip === freeX) &&
        ips.some((s) => s.ip === podA.ip && s.state === 'assigned' && s.lost === true) &&
        ips.some((s) => s.ip === y);
      if (done) break;
      assert.ok(Date.now() < deadline, `no convergence within 30 s: ${JSON.stringify(ips)}`);
      await new Promise((r) => setTimeout(r, 200));
      st = await pool();
    }
    assert.equal(st.lost, 1);
    const got = await call(daemon.socketPath, 'GET', '/v1/allocation?containerId=drift-a&ifName=eth0');
    assert.equal((got.body as Allocation).ip, podA.ip, 'the running pod keeps its record');

    // New pods: more than the pool holds now, so it grows too; none gets a removed IP.
    const handed: string[] = [];
    for (let n = 0; n < 8; n++) {
      const a = await allocate(`drift-new-${n}`);
      assert.ok(!removed.has(a.ip), `${a.ip} was removed from the node but handed to a new pod`);
      handed.push(a.ip);
    }
    assert.ok(handed.includes(y), 'the IP added out of band is used');
    assert.equal(new Set(handed).size, handed.length);
    const onCloud = new Set(await cloudIps());
    for (const ip of handed) assert.ok(onCloud.has(ip), `${ip} is on the ENI`);

    // The pod with the lost IP goes: the IP leaves the pool instead of cooling down.
    const rel = await call(daemon.socketPath, 'POST', '/v1/release', {
      containerId: 'drift-a',
      ifName: 'eth0',
    });
    assert.equal(rel.status, 200, rel.text);
    st = await pool();
    assert.equal(st.lost, 0);
    assert.ok(!poolIps(st).some((s) => removed.has(s.ip)), 'no removed IP in the pool');

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const value = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? 'NaN');
    assert.equal(value(/vpc_ipam_drift_repairs_total\{kind="ip-removed"\} (\d+)/), 1);
    assert.equal(value(/vpc_ipam_drift_repairs_total\{kind="ip-lost"\} (\d+)/), 1);
    assert.equal(value(/vpc_ipam_drift_repairs_total\{kind="ip-added"\} (\d+)/), 1);
    const fromMetadata = value(/vpc_ipam_resyncs_total\{source="metadata",outcome="ok"\} (\d+)/);
    assert.ok(fromMetadata >= 1, metrics);
    const fromApi = /vpc_ipam_resyncs_total\{source="api",outcome="ok"\} (\d+)/.exec(metrics);
    assert.ok(!fromApi || Number(fromApi[1]) < fromMetadata, 'the API is listed far less than metadata');
    const log = await readFile(daemon.logPath, 'utf8');
    assert.match(log, /"level":50[^\n]*lost its address/, 'the lost pod IP is logged at error level');
  });
});
