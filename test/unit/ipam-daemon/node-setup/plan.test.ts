import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SnatConfig } from '../../../../src/ipam-daemon/config.ts';
import { NODE_SYSCTLS } from '../../../../src/ipam-daemon/k8s/install-cni.ts';
import {
  desiredIptables,
  type ObservedNode,
  parseSaved,
  planNodeSetup,
  planTable,
} from '../../../../src/ipam-daemon/node-setup/plan.ts';
import { enis, node } from './fixtures.ts';

const snat: SnatConfig = { externalSnat: false, excludeCidrs: ['192.0.2.0/24'], randomize: 'prng' };

const fresh: ObservedNode = {
  links: [
    { ifname: 'lo', address: '00:00:00:00:00:00', flags: ['UP'] },
    {
      ifname: 'eth0',
      address: '02:00:00:00:00:A0',
      flags: ['UP'],
      addr_info: [{ family: 'inet', local: '10.64.1.10' }],
    },
    { ifname: 'eth1', address: '02:00:00:00:00:a1', flags: ['BROADCAST'], addr_info: [] },
  ],
  routes: [],
  rules: [
    { priority: 0, table: 'local' },
    { priority: 32766, table: 'main' },
  ],
  nat: '*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j KUBE-POSTROUTING\nCOMMIT\n',
  mangle: '*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n',
};

/** What the kernel shows after a plan for `fresh` was applied. */
function converged(s: SnatConfig = snat): ObservedNode {
  const d = desiredIptables('eth0', node.primaryIp, node.vpcCidrs, s);
  const save = (t: string, r: ReturnType<typeof desiredIptables>['nat']) =>
    [
      `*${t}`,
      ...Object.keys(r.chains).map((c) => `:${c} - [0:0]`),
      ...r.jumps.map((j) => `-A ${j}`),
      ...Object.entries(r.chains).flatMap(([c, rules]) => rules.map((x) => `-A ${c} ${x}`)),
      'COMMIT',
    ].join('\n');
  return {
    ...fresh,
    links: [
      fresh.links[0]!,
      fresh.links[1]!,
      { ...fresh.links[2]!, flags: ['UP'], addr_info: [{ family: 'inet', local: '10.64.2.20' }] },
    ],
    routes: [
      { dst: 'default', gateway: '10.64.2.1', dev: 'eth1', table: '2' },
      { dst: '10.64.2.1', dev: 'eth1', table: '2' },
      { dst: '10.64.2.77', dev: 'vpc0123' }, // a pod route in main: not node-setup's business
    ],
    rules: [
      ...fresh.rules,
      { priority: 1024, fwmark: '0x80', fwmask: '0x80', table: 'main', protocol: '118' },
    ],
    nat: save('nat', d.nat),
    mangle: save('mangle', d.mangle),
  };
}

describe('node setup plan', () => {
  test('fresh node: ENI up with its IP, its table, the connmark rule, SNAT and connmark chains', () => {
    const p = planNodeSetup(node, enis, snat, fresh);
    assert.deepEqual(
      p.ipLines.map((l) => l.join(' ')),
      [
        'link set dev eth1 up',
        'addr add 10.64.2.20/24 dev eth1 noprefixroute',
        'route replace 10.64.2.1/32 dev eth1 scope link table 2 proto 118',
        'route replace default via 10.64.2.1 dev eth1 table 2 proto 118',
        'rule add fwmark 0x80/0x80 lookup main priority 1024 protocol 118',
      ],
    );
    assert.deepEqual(p.missing, []);
    assert.deepEqual(p.linkNames, { 'eni-0': 'eth0', 'eni-1': 'eth1' });
    // Only the two keys the install-cni init container sets: the daemon's /proc/sys is read-only,
    // so a per-interface rp_filter write would fail there (all=2 already covers every ENI).
    assert.deepEqual(
      p.sysctls.map((s) => [`/proc/sys/${s.key.join('/')}`, s.value]).sort(),
      [...NODE_SYSCTLS].sort(),
    );
    const script = p.iptables ?? '';
    assert.match(
      script,
      /-A POSTROUTING -m comment --comment "vpc-ipam: SNAT pod traffic leaving the VPC" -j VPC-IPAM-SNAT/,
    );
    assert.match(script, /-A VPC-IPAM-SNAT -d 10.64.0.0\/16 .* -j RETURN/);
    assert.match(script, /-A VPC-IPAM-SNAT -d 192.0.2.0\/24 .* -j RETURN/);
    assert.match(script, /-A VPC-IPAM-SNAT -o eth0 -j SNAT --to-source 10.64.1.10 --random-fully\n/);
    assert.match(script, /-A VPC-IPAM-PODMARK -j CONNMARK --set-xmark 0x80\/0x80/);
    assert.ok(!script.includes('KUBE-POSTROUTING'), 'other rules are never touched');
  });

  test('converged node: nothing to do (idempotent)', () => {
    const p = planNodeSetup(node, enis, snat, converged());
    assert.deepEqual(p.ipLines, []);
    assert.equal(p.iptables, null);
  });

  test('stale state of ours is removed; duplicates collapse to one', () => {
    const obs = converged();
    obs.routes.push({ dst: 'default', gateway: '10.64.3.1', dev: 'eth2', table: '3' });
    obs.routes.push({ dst: '10.64.2.1', dev: 'eth1', table: '2' }); // duplicate
    obs.rules.push({ priority: 1024, fwmark: '0x40', fwmask: '0x40', table: 'main', protocol: '118' });
    obs.nat = obs.nat.replace(
      'COMMIT',
      '-A POSTROUTING -m comment --comment "vpc-ipam: SNAT pod traffic leaving the VPC" -j VPC-IPAM-SNAT\n:VPC-IPAM-OLD - [0:0]\nCOMMIT',
    );
    const p = planNodeSetup(node, enis, snat, obs);
    assert.deepEqual(
      p.ipLines.map((l) => l.join(' ')),
      [
        'route del default via 10.64.3.1 dev eth2 table 3 proto 118',
        'route del 10.64.2.1 dev eth1 table 2 proto 118',
        'rule del priority 1024 fwmark 0x40/0x40 lookup main protocol 118',
      ],
    );
    const script = p.iptables ?? '';
    assert.equal(script.match(/^-D POSTROUTING/gm)?.length, 1, 'one duplicate jump deleted');
    assert.match(script, /^-X VPC-IPAM-OLD$/m);
    assert.ok(!script.includes('*mangle'), 'mangle is already right');
  });

  test('EXTERNAL_SNAT removes our SNAT chain and the pod mark, keeps the NodePort connmark', () => {
    const p = planNodeSetup(node, enis, { ...snat, externalSnat: true }, converged());
    const script = p.iptables ?? '';
    assert.match(script, /^-D POSTROUTING .* -j VPC-IPAM-SNAT$/m);
    assert.match(script, /^-X VPC-IPAM-SNAT$/m);
    assert.match(script, /^-X VPC-IPAM-PODMARK$/m);
    assert.match(script, /^-A VPC-IPAM-CONNMARK -i eth0 -m addrtype --dst-type LOCAL/m);
    assert.doesNotMatch(script, /-j SNAT/);
    // and once applied, it is stable
    assert.equal(
      planNodeSetup(node, enis, { ...snat, externalSnat: true }, converged({ ...snat, externalSnat: true }))
        .iptables,
      null,
    );
  });

  test('RANDOMIZESNAT maps to --random-fully / --random / nothing', () => {
    const rule = (r: SnatConfig['randomize']) =>
      desiredIptables('eth0', '10.0.0.1', ['10.0.0.0/16'], { ...snat, randomize: r }).nat.chains[
        'VPC-IPAM-SNAT'
      ]!.at(-1);
    assert.equal(rule('prng'), '-o eth0 -j SNAT --to-source 10.0.0.1 --random-fully');
    assert.equal(rule('hashrandom'), '-o eth0 -j SNAT --to-source 10.0.0.1 --random');
    assert.equal(rule('none'), '-o eth0 -j SNAT --to-source 10.0.0.1');
  });

  test('an attached ENI the kernel does not show yet is reported, the rest still planned', () => {
    const obs = { ...fresh, links: fresh.links.slice(0, 2) };
    const p = planNodeSetup(node, enis, snat, obs);
    assert.deepEqual(p.missing, [{ interfaceId: 'eni-1', mac: '02:00:00:00:00:a1' }]);
    assert.ok(p.iptables);
  });

  test('refuses to run outside the node netns (no primary MAC) and bad exclude CIDRs', () => {
    assert.throws(() => planNodeSetup(node, enis, snat, { ...fresh, links: [] }), /primary MAC/);
    assert.throws(
      () => planNodeSetup(node, enis, { ...snat, excludeCidrs: ['nope'] }, fresh),
      /AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS/,
    );
  });

  test('planTable/parseSaved: only VPC-IPAM- chains and jumps to them are ours', () => {
    const saved = parseSaved(
      '*nat\n:KUBE-X - [0:0]\n:VPC-IPAM-A - [0:0]\n-A KUBE-X -j RETURN\n-A PREROUTING -j KUBE-X\n-A PREROUTING -j VPC-IPAM-A\n-A VPC-IPAM-A -j RETURN\nCOMMIT\n',
    );
    assert.deepEqual(saved, { jumps: ['PREROUTING -j VPC-IPAM-A'], chains: { 'VPC-IPAM-A': ['-j RETURN'] } });
    assert.equal(planTable('nat', saved, saved), null);
  });
});
