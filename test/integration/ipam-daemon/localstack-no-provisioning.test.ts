// DISABLE_NETWORK_RESOURCE_PROVISIONING against LocalStack (issue 13): the real daemon hands out
// only the secondary IPs already on the node's interfaces (the primary ENI's and an ENI someone
// else attached, in another subnet), refuses the next pod with reason provisioning-disabled, picks
// up an IP added out of band, and makes no mutating EC2 call: every call goes through the
// provider's observer, counted on /metrics (vpc_ipam_cloud_api_calls_total). Fails without LocalStack.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AssignPrivateIpAddressesCommand,
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  DescribeNetworkInterfacesCommand,
} from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../../localstack/seed.ts';
import type { ApiError } from '../../../src/ipam-daemon/api-types.ts';
import { ec2Endpoint, region } from '../../helpers/localstack.ts';
import { call } from '../../unit/ipam-daemon/harness.ts';
import { type DaemonProcess, killAllDaemons, LocalStackNode, startDaemonProcess } from './daemon-process.ts';

/** This suite's /metrics port (the 27000-27999 range). */
const METRICS = 27463;
const MUTATING = /^(Create|Attach|Detach|Delete|Assign|Unassign|Modify)/;

describe('DISABLE_NETWORK_RESOURCE_PROVISIONING on LocalStack', { timeout: 300_000 }, () => {
  const node = new LocalStackNode('knobs-noprov');
  const ec2 = localEc2Client(ec2Endpoint(), region());
  let daemon: DaemonProcess | undefined;
  let attached: string[] = [];

  before(async () => {
    await node.setUp();
    const inst = node.instance;
    // Out of band, as a launch template or another tool would: 3 IPs on the primary ENI, and an
    // untagged ENI with 2 secondary IPs in the seed's other subnet of the zone, attached at index 1.
    const primary = (
      await ec2.send(
        new DescribeNetworkInterfacesCommand({
          Filters: [{ Name: 'attachment.instance-id', Values: [inst.id] }],
        }),
      )
    ).NetworkInterfaces!.find((e) => e.Attachment?.DeviceIndex === 0)!;
    const nodeCidr = node.seed.subnets.find((s) => s.id === inst.subnetId)!.cidr;
    const base = nodeCidr.split('.').slice(0, 3).join('.');
    await ec2.send(
      new AssignPrivateIpAddressesCommand({
        NetworkInterfaceId: primary.NetworkInterfaceId!,
        PrivateIpAddresses: [`${base}.201`, `${base}.202`, `${base}.203`],
      }),
    );
    const tiny = node.seed.subnets.find((s) => s.role === 'tiny' && s.az === inst.az)!;
    const tinyBase = tiny.cidr.split('/')[0]!.split('.').slice(0, 3).join('.');
    const last = Number(tiny.cidr.split('/')[0]!.split('.')[3]);
    const other = await ec2.send(
      new CreateNetworkInterfaceCommand({
        SubnetId: tiny.id,
        PrivateIpAddresses: [10, 11, 12].map((o, i) => ({
          PrivateIpAddress: `${tinyBase}.${last + o}`,
          Primary: i === 0,
        })),
        Description: 'pre-attached by someone else',
      }),
    );
    await ec2.send(
      new AttachNetworkInterfaceCommand({
        NetworkInterfaceId: other.NetworkInterface!.NetworkInterfaceId!,
        InstanceId: inst.id,
        DeviceIndex: 1,
      }),
    );
    attached = [
      `${base}.201`,
      `${base}.202`,
      `${base}.203`,
      `${tinyBase}.${last + 11}`,
      `${tinyBase}.${last + 12}`,
    ];
  });

  after(async () => {
    await killAllDaemons();
    ec2.destroy();
    await node.tearDown();
  });

  const allocate = (n: number) =>
    call(daemon?.socketPath ?? '', 'POST', '/v1/allocate', {
      containerId: `np${n}`,
      ifName: 'eth0',
      podNamespace: 'default',
      podName: `np${n}`,
    });
  const apiCalls = async (): Promise<Record<string, number>> => {
    const text = await (await fetch(`http://127.0.0.1:${METRICS}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(
      /^vpc_ipam_cloud_api_calls_total\{cloud="aws",api="(\w+)",outcome="\w+"\} (\d+)/gm,
    )) {
      out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
    }
    return out;
  };

  test('only the attached IPs are handed out, then provisioning-disabled; no mutating EC2 call', async () => {
    daemon = await startDaemonProcess(
      {
        ...node.env(),
        DISABLE_NETWORK_RESOURCE_PROVISIONING: 'true',
        WARM_ENI_TARGET: '1',
        WARM_IP_TARGET: '10',
        VPC_IPAM_RECONCILE_INTERVAL: '0.2',
        VPC_IPAM_ALLOCATE_WAIT: '0.5',
        VPC_IPAM_RESYNC_INTERVAL: '0.5',
        IP_COOLDOWN_PERIOD: '0',
        METRICS_PORT: String(METRICS),
        DISABLE_INTROSPECTION: 'true',
      },
      { logPath: join(node.workDir, 'ipamd-noprov.log') },
    );
    const got: string[] = [];
    for (let n = 0; n < attached.length; n++) {
      const r = await allocate(n);
      assert.equal(r.status, 200, r.text);
      got.push((r.body as { ip: string }).ip);
    }
    assert.deepEqual(
      [...got].sort(),
      [...attached].sort(),
      'exactly the IPs already attached, from both ENIs',
    );
    const refused = await allocate(99);
    assert.equal(refused.status, 503, refused.text);
    assert.equal((refused.body as ApiError).reason, 'provisioning-disabled');
    assert.match((refused.body as ApiError).message, /DISABLE_NETWORK_RESOURCE_PROVISIONING/);
    // Several pool rounds later (reconcile every 0.2 s, with WARM_IP_TARGET=10 wanting more): still nothing.
    await new Promise((r) => setTimeout(r, 1500));
    const calls = await apiCalls();
    assert.ok((calls.DescribeNetworkInterfaces ?? 0) > 0, JSON.stringify(calls));
    assert.deepEqual(
      Object.keys(calls).filter((api) => MUTATING.test(api)),
      [],
      `no mutating call: ${JSON.stringify(calls)}`,
    );
  });

  test('an IP added out of band is picked up by the drift resync and handed out', async () => {
    const inst = node.instance;
    const primary = (
      await ec2.send(
        new DescribeNetworkInterfacesCommand({
          Filters: [{ Name: 'attachment.instance-id', Values: [inst.id] }],
        }),
      )
    ).NetworkInterfaces!.find((e) => e.Attachment?.DeviceIndex === 0)!;
    const base = attached[0]!.split('.').slice(0, 3).join('.');
    await ec2.send(
      new AssignPrivateIpAddressesCommand({
        NetworkInterfaceId: primary.NetworkInterfaceId!,
        PrivateIpAddresses: [`${base}.204`],
      }),
    );
    let r = await allocate(100);
    for (let i = 0; i < 40 && r.status !== 200; i++) {
      await new Promise((res) => setTimeout(res, 250));
      r = await allocate(100);
    }
    assert.equal(r.status, 200, r.text);
    assert.equal((r.body as { ip: string }).ip, `${base}.204`);
    assert.deepEqual(
      Object.keys(await apiCalls()).filter((api) => MUTATING.test(api)),
      [],
    );
    await daemon?.stop();
  });
});
