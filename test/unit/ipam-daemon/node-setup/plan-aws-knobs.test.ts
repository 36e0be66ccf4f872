// Node setup with the AWS VPC CNI knobs (issue 13): AWS_VPC_K8S_CNI_VETHPREFIX in the SNAT/connmark
// rules, AWS_EXTERNAL_SERVICE_CIDRS as `to <cidr> lookup main` rules at 1535, AWS_VPC_ENI_MTU on
// every ENI link. The e2e proof is test/e2e/node-setup-aws-knobs.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SnatConfig } from '../../../../src/ipam-daemon/config.ts';
import {
  DEFAULT_NODE_NET,
  desiredIptables,
  type ObservedNode,
  planExternalServiceRules,
  planNodeSetup,
} from '../../../../src/ipam-daemon/node-setup/plan.ts';
import { enis, node } from './fixtures.ts';

const snat: SnatConfig = { externalSnat: false, excludeCidrs: [], randomize: 'prng' };
const observed = (mtu: number, rules: ObservedNode['rules'] = []): ObservedNode => ({
  links: [
    {
      ifname: 'eth0',
      address: '02:00:00:00:00:a0',
      mtu,
      flags: ['UP'],
      addr_info: [{ family: 'inet', local: '10.64.1.10' }],
    },
    {
      ifname: 'eth1',
      address: '02:00:00:00:00:a1',
      mtu,
      flags: ['UP'],
      addr_info: [{ family: 'inet', local: '10.64.2.20' }],
    },
  ],
  routes: [],
  rules,
  nat: '',
  mangle: '',
});
const lines = (plan: { ipLines: string[][] }) => plan.ipLines.map((l) => l.join(' '));

describe('node setup: AWS VPC CNI knobs', () => {
  test('the veth prefixes are matched by every pod-traffic rule', () => {
    const d = desiredIptables('eth0', node.primaryIp, node.vpcCidrs, snat, ['vpc', 'eni']);
    const nat = d.nat.chains['VPC-IPAM-SNAT']!;
    assert.ok(nat.includes('-o vpc+ -j RETURN') && nat.includes('-o eni+ -j RETURN'));
    const mark = d.mangle.chains['VPC-IPAM-CONNMARK']!;
    for (const p of ['vpc', 'eni']) {
      assert.ok(mark.includes(`-i ${p}+ -j VPC-IPAM-PODMARK`), p);
      assert.ok(
        mark.some((r) => r.startsWith(`-i ${p}+ -j CONNMARK --restore-mark`)),
        p,
      );
    }
    // Default: only vpc+, exactly as before the knob existed.
    const plain = desiredIptables('eth0', node.primaryIp, node.vpcCidrs, snat);
    assert.ok(!JSON.stringify(plain).includes('eni+'));
  });

  test('AWS_VPC_ENI_MTU sets every ENI link, the primary included, and only when it differs', () => {
    const net = { ...DEFAULT_NODE_NET, eniMtu: 9001 };
    assert.deepEqual(
      lines(planNodeSetup(node, enis, snat, observed(1500), net)).filter((l) => l.includes(' mtu ')),
      ['link set dev eth0 mtu 9001', 'link set dev eth1 mtu 9001'],
    );
    assert.deepEqual(
      lines(planNodeSetup(node, enis, snat, observed(9001), net)).filter((l) => l.includes(' mtu ')),
      [],
    );
    // null (Azure, or the default options): MTUs are left alone.
    assert.deepEqual(
      lines(planNodeSetup(node, enis, snat, observed(1500))).filter((l) => l.includes(' mtu ')),
      [],
    );
  });

  test('AWS_EXTERNAL_SERVICE_CIDRS: one main-table rule per CIDR at 1535; stale ones of ours removed', () => {
    assert.deepEqual(
      planExternalServiceRules([], ['203.0.113.0/24', '198.51.100.7/32']).map((l) => l.join(' ')),
      [
        'rule add to 203.0.113.0/24 lookup main priority 1535 protocol 118',
        'rule add to 198.51.100.7/32 lookup main priority 1535 protocol 118',
      ],
    );
    const present: ObservedNode['rules'] = [
      { priority: 1535, dst: '203.0.113.0', dstlen: 24, table: 'main', protocol: '118' },
      { priority: 1535, dst: '192.0.2.0', dstlen: 24, table: 'main', protocol: '118' },
      // Someone else's rule at the same priority is not ours to judge.
      { priority: 1535, dst: '192.0.2.0', dstlen: 24, table: 'main', protocol: 'boot' },
    ];
    assert.deepEqual(
      planExternalServiceRules(present, ['203.0.113.0/24']).map((l) => l.join(' ')),
      ['rule del priority 1535 to 192.0.2.0/24 lookup main protocol 118'],
    );
    const net = { ...DEFAULT_NODE_NET, externalServiceCidrs: ['203.0.113.0/24'] };
    assert.ok(
      lines(planNodeSetup(node, enis, snat, observed(9001), net)).includes(
        'rule add to 203.0.113.0/24 lookup main priority 1535 protocol 118',
      ),
    );
  });
});
