// SNAT in ipvlan mode, in the VM (test/e2e/vm.test.ts runs it once with iptables-nft and once with
// iptables-legacy): an ipvlan pod's internet traffic goes through the host veth and leaves SNATed
// to the node's primary IP; the VPC and AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS leave straight out of
// the pod's ENI with its own IP. From a pod on the primary ENI and one on a secondary ENI.
//
// Not a *.test.ts file: on a kernel without ipvlan it could only fail. Needs root and LocalStack.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type IpvlanPod, IpvlanVpc, PORT } from '../helpers/ipvlan-vpc.ts';
import { INTERNET_SERVER, ONPREM_SERVER, whileRuleRemoved } from '../helpers/local-vpc.ts';
import { run } from '../helpers/netns.ts';
import { probe, probeEventually } from '../helpers/probe.ts';
import { scaled } from '../helpers/slowdown.ts';

describe('ipvlan mode SNAT (stock kernel)', { timeout: scaled(120_000) }, () => {
  const t = new IpvlanVpc('ipvlan-snat');
  let primaryPod: IpvlanPod;
  let secondaryPod: IpvlanPod;

  before(async () => {
    await t.start();
    // node2 is an m5.large: 9 pod IPs on its primary ENI, so 11 pods put some on a secondary ENI
    const made = await t.pods(t.node2, 11);
    const onSecondary = new Set(made.onSecondary);
    const p = made.all.find((x) => !onSecondary.has(x));
    assert.ok(p && made.onSecondary[0], 'pods on the primary and on a secondary ENI');
    primaryPod = p;
    secondaryPod = made.onSecondary[0]!;
  });
  after(() => t.stop());

  test('pod to internet is SNATed to the node primary IP and the reply returns; excluded CIDRs are not', async () => {
    const iptablesVersion = (await run('iptables', ['--version'])).stdout.trim();
    console.log(`# ${iptablesVersion}`);
    for (const pod of [primaryPod, secondaryPod]) {
      assert.equal(
        await probeEventually(pod.ns, INTERNET_SERVER, PORT),
        t.node2.instance.privateIp,
        `${pod.ip} -> internet`,
      );
      assert.equal(await probeEventually(pod.ns, ONPREM_SERVER, PORT), pod.ip, `${pod.ip} -> excluded CIDR`);
    }
  });

  test('it is the node SNAT that gets them out: without our jump the gateway drops the pod source', async () => {
    const jump = [
      '-m',
      'comment',
      '--comment',
      'vpc-ipam: SNAT pod traffic leaving the VPC',
      '-j',
      'VPC-IPAM-SNAT',
    ];
    await whileRuleRemoved(
      t.node2.ns,
      'nat',
      ['POSTROUTING', ...jump],
      ['-A', 'POSTROUTING', ...jump],
      async () => {
        await Promise.all(
          [primaryPod, secondaryPod].map((pod) =>
            assert.rejects(probe(pod.ns, INTERNET_SERVER, PORT, 1500), `${pod.ip}: no SNAT, dropped`),
          ),
        );
      },
    );
    for (const pod of [primaryPod, secondaryPod]) {
      assert.equal(await probeEventually(pod.ns, INTERNET_SERVER, PORT), t.node2.instance.privateIp);
    }
  });
});
