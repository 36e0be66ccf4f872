// Node setup with the AWS VPC CNI knobs against a real kernel (issue 13): AWS_VPC_ENI_MTU on the
// ENI links, AWS_EXTERNAL_SERVICE_CIDRS as main-table rules that win over a pod's ENI table (asked
// with `ip route get ... iif <pod veth>`), AWS_VPC_K8S_CNI_VETHPREFIX in the SNAT/connmark rules.
// A fresh netns, the reconciler the daemon runs. Needs root, iproute2, iptables. Fails, never skips.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import type { SnatConfig } from '../../src/ipam-daemon/config.ts';
import { createNodeReconciler } from '../../src/ipam-daemon/node-setup/index.ts';
import { type Runner, spawnRunner } from '../../src/netutils/exec.ts';
import { hostVethName, PRIO_FROM_POD } from '../../src/netutils/names.ts';
import type { SysctlTool } from '../../src/netutils/sysctl.ts';
import type { InterfaceInfo, NodeInfo } from '../../src/providers/types.ts';
import {
  addVethPair,
  Cleanup,
  createNetns,
  ip,
  ipJson,
  requireNetnsPrivileges,
  run,
  runPrefix,
} from '../helpers/netns.ts';

const MACS = ['02:12:00:00:00:a0', '02:12:00:00:00:a1'];

describe('node setup with the AWS VPC CNI knobs on a real netns', () => {
  const cleanup = new Cleanup();
  const ns = `${runPrefix()}-knobs`;
  const inNs: Runner = (file, args, options) =>
    spawnRunner('ip', ['netns', 'exec', ns, file, ...args], options);
  const sysctl: SysctlTool = {
    async get(key) {
      return (await run('ip', ['netns', 'exec', ns, 'sysctl', '-n', key.join('.')])).stdout.trim();
    },
    async ensure(key, value) {
      if ((await this.get(key)) === value) return false;
      await run('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key.join('.')}=${value}`]);
      return true;
    },
  };
  const snat: SnatConfig = { externalSnat: false, excludeCidrs: [], randomize: 'prng' };
  const net = { vethPrefixes: ['eni'], externalServiceCidrs: ['203.0.113.0/24'], eniMtu: 9001 };
  const reconciler = () =>
    createNodeReconciler({ snat, net, logger: pino({ level: 'silent' }), runner: inNs, sysctl });
  const node = { primaryIp: '10.71.0.10', primaryMac: MACS[0]!, vpcCidrs: ['10.71.0.0/16'] } as NodeInfo;
  const eni = (i: number, subnet: string, primaryIp: string): InterfaceInfo => ({
    id: `eni-${i}`,
    mac: MACS[i]!,
    deviceIndex: i,
    subnetId: `subnet-${i}`,
    subnetCidr: subnet,
    primaryIp,
    secondaryIps: [],
    tags: {},
  });
  const enis = [eni(0, '10.71.0.0/24', '10.71.0.10'), eni(1, '10.71.1.0/24', '10.71.1.20')];
  const podIp = '10.71.1.50';
  const podVeth = hostVethName('pod-knobs', 'eth0', 'eni');

  before(async () => {
    requireNetnsPrivileges(['ip', 'iptables-save', 'iptables-restore', 'sysctl']);
    await createNetns(ns, cleanup);
    for (const [i, mac] of MACS.entries()) {
      await addVethPair({ name: `eth${i}`, mac, ns }, { name: `p${i}`, ns });
      await ip(ns, 'link', 'set', `p${i}`, 'up');
    }
    await ip(ns, 'addr', 'add', '10.71.0.10/24', 'dev', 'eth0');
    await ip(ns, 'link', 'set', 'eth0', 'up');
    await ip(ns, 'route', 'add', 'default', 'via', '10.71.0.1', 'dev', 'eth0');
    // A pod on the secondary ENI, as the plugin wires it: host veth, /32 route, from-rule to table 2.
    await addVethPair({ name: podVeth, ns }, { name: 'podside', ns });
    await ip(ns, 'link', 'set', podVeth, 'up');
    await ip(ns, 'link', 'set', 'podside', 'up');
    await ip(ns, 'route', 'add', `${podIp}/32`, 'dev', podVeth);
    await ip(ns, 'rule', 'add', 'from', `${podIp}/32`, 'lookup', '2', 'priority', String(PRIO_FROM_POD));
  });

  after(async () => {
    assert.deepEqual(await cleanup.run(), []);
  });

  test('ENI links get AWS_VPC_ENI_MTU; external service CIDRs leave by the primary; eni+ veths are SNATed', async () => {
    const r = reconciler();
    await r.reconcile(node, enis);
    const links = await ipJson<{ ifname: string; mtu: number }>(ns, 'link', 'show');
    const mtu = Object.fromEntries(links.map((l) => [l.ifname, l.mtu]));
    assert.deepEqual([mtu.eth0, mtu.eth1], [9001, 9001]);
    assert.equal(mtu.p0, 1500, 'only the ENI links');
    const rules = await ipJson<{ priority: number; dst?: string; dstlen?: number; table: string }>(
      ns,
      'rule',
      'show',
    );
    assert.deepEqual(
      rules.filter((x) => x.priority === 1535).map((x) => `${x.dst}/${x.dstlen} ${x.table}`),
      ['203.0.113.0/24 main'],
    );
    // The pod's traffic: to the external service through main (eth0), elsewhere through its ENI.
    const via = async (dst: string) =>
      (await ipJson<{ dev: string }>(ns, 'route', 'get', dst, 'from', podIp, 'iif', podVeth))[0]!.dev;
    assert.equal(await via('203.0.113.9'), 'eth0');
    assert.equal(await via('198.51.100.9'), 'eth1');
    const saved = (await run('ip', ['netns', 'exec', ns, 'iptables-save'])).stdout;
    assert.match(saved, /-A VPC-IPAM-SNAT -o eni\+ -j RETURN/);
    assert.match(saved, /-A VPC-IPAM-CONNMARK -i eni\+ -j VPC-IPAM-PODMARK/);
    assert.ok(!/-o vpc\+/.test(saved), 'only the configured prefix');
  });

  test('a second run changes nothing; a changed CIDR list replaces the rule', async () => {
    const again = reconciler();
    await again.reconcile(node, enis);
    assert.deepEqual(again.lastPlan?.ipLines, []);
    assert.equal(again.lastPlan?.iptables, null);
    const moved = createNodeReconciler({
      snat,
      net: { ...net, externalServiceCidrs: ['192.0.2.0/24'] },
      logger: pino({ level: 'silent' }),
      runner: inNs,
      sysctl,
    });
    await moved.reconcile(node, enis);
    const rules = await ipJson<{ priority: number; dst?: string; dstlen?: number }>(ns, 'rule', 'show');
    assert.deepEqual(
      rules.filter((x) => x.priority === 1535).map((x) => `${x.dst}/${x.dstlen}`),
      ['192.0.2.0/24'],
    );
  });
});
