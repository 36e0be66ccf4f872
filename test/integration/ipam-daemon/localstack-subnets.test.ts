// Subnet exhaustion against LocalStack: pods confined to the seed's tiny /27 (mostly taken by
// someone else's interface) run it dry and get "subnet-full" naming the subnet; with a second
// subnet in POD_SUBNET_IDS the daemon moves on to it. The real daemon process, as in localstack.test.ts.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateNetworkInterfaceCommand } from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../../localstack/seed.ts';
import type { Allocation, ApiError } from '../../../src/ipam-daemon/api-types.ts';
import { ec2Endpoint, region } from '../../helpers/localstack.ts';
import {
  allocateRetryingGrowth,
  type DaemonProcess,
  LocalStackNode,
  startDaemonProcess,
} from './daemon-process.ts';

describe('vpc-ipamd on LocalStack: a full subnet', { timeout: 300_000 }, () => {
  const node = new LocalStackNode('ipamd-sub');
  let dir: string;
  let env: Record<string, string>;
  let daemon: DaemonProcess | undefined;
  let tiny: { id: string; cidr: string };
  let nodeSubnet: { id: string; cidr: string };

  before(async () => {
    await node.setUp();
    const inst = node.instance;
    const t = node.seed.subnets.find((s) => s.role === 'tiny');
    assert.ok(t);
    assert.equal(t.az, inst.az, 'the tiny subnet is in the m5.large zone');
    tiny = t;
    nodeSubnet = node.seed.subnets.find((s) => s.id === inst.subnetId) as { id: string; cidr: string };
    // Someone else's interface takes most of the /27 (27 usable addresses).
    const ec2 = localEc2Client(ec2Endpoint(), region());
    await ec2.send(
      new CreateNetworkInterfaceCommand({
        SubnetId: tiny.id,
        SecondaryPrivateIpAddressCount: 26,
        Description: 'vpc-ipam test: squatter in the tiny subnet',
      }),
    );
    ec2.destroy();
    dir = node.workDir;
    env = {
      ...node.env(),
      METRICS_PORT: '0',
      WARM_ENI_TARGET: '0',
      VPC_IPAM_ALLOCATE_WAIT: '3',
      VPC_IPAM_RECONCILE_INTERVAL: '1',
    };
  });

  after(() => node.tearDown());

  // A pool-growing 503 is retried (the runtime would; a slow LocalStack outlasts the 3 s allocate
  // wait): the first other refusal is the answer under test.
  const allocate = (n: number) => allocateRetryingGrowth(daemon?.socketPath ?? '', `sub${n}`);

  test('pods confined to the tiny subnet run it dry and get subnet-full, naming it', async () => {
    daemon = await startDaemonProcess(
      { ...env, POD_SUBNET_IDS: tiny.id },
      { logPath: join(dir, 'ipamd-1.log') },
    );
    const got: Allocation[] = [];
    let refusal: ApiError | undefined;
    for (let n = 0; n < 30 && !refusal; n++) {
      const r = await allocate(n);
      if (r.status === 200) got.push(r.body as Allocation);
      else {
        assert.equal(r.status, 503, r.text);
        refusal = r.body as ApiError;
      }
    }
    assert.ok(refusal, 'the tiny subnet ran out');
    // Two interfaces could hold 18 pod IPs; the /27 (27 usable, most taken) runs out first.
    assert.ok(got.length < 18, `only what the /27 had left: ${got.length}`);
    for (const a of got) assert.equal(a.subnetCidr, tiny.cidr);
    assert.equal(refusal.reason, 'subnet-full');
    assert.ok(
      refusal.message.includes(`subnet ${tiny.id} (${tiny.cidr}) has no free addresses`),
      refusal.message,
    );
    assert.match(refusal.message, /add subnets to POD_SUBNET_IDS/);
    await daemon.stop('SIGTERM');
  });

  test('with a second subnet in POD_SUBNET_IDS the daemon moves on to it', async () => {
    daemon = await startDaemonProcess(
      { ...env, POD_SUBNET_IDS: `${tiny.id},${nodeSubnet.id}` },
      { logPath: join(dir, 'ipamd-2.log') },
    );
    const r = await allocate(100);
    assert.equal(r.status, 200, r.text);
    assert.equal((r.body as Allocation).subnetCidr, nodeSubnet.cidr);
  });
});
