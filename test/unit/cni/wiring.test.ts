import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ipFromPrevResult, planGc } from '../../../src/cni/plugin.ts';
import { diagnoseIpvlan, type ObservedIpvlanPod, planIpvlanAdd } from '../../../src/cni/wiring/ipvlan.ts';
import {
  diagnoseVeth,
  type ObservedHost,
  planHostCleanup,
  planVethAdd,
  planVethLink,
} from '../../../src/cni/wiring/veth.ts';
import { hostVethName, hostVethPattern, ipvlanTempName, ROUTE_PROTO } from '../../../src/netutils/names.ts';

const spec = {
  containerId: 'c1',
  ifName: 'eth0',
  netns: '/run/netns/p1',
  ip: '10.64.1.9',
  routeTable: 0,
  mtu: 1500,
};

describe('routed veth plan', () => {
  test('primary-ENI pod: veth into the netns, /32 host route, to-pod rule, no from-pod rule', () => {
    const p = planVethAdd(spec);
    const host = p.hostLines.map((l) => l.join(' '));
    assert.deepEqual(p.linkLines.map((l) => l.join(' ')).slice(1), [`link set dev ${p.hostName} up`]);
    assert.ok(
      !p.linkLines.flat().includes('10.64.1.9'),
      'the link step needs no IP (runs during allocation)',
    );
    assert.match(
      p.linkLines[0]!.join(' '),
      new RegExp(
        `^link add name ${p.hostName} address ${p.hostMac} mtu 1500 type veth peer name eth0 address ${p.podMac} mtu 1500 netns /run/netns/p1$`,
      ),
    );
    assert.ok(host.includes(`route replace 10.64.1.9/32 dev ${p.hostName} scope link proto 118`));
    assert.ok(host.includes('rule add to 10.64.1.9/32 lookup main priority 512 protocol 118'));
    assert.ok(!host.some((l) => l.includes('priority 1536')));
    const pod = p.podLines.map((l) => l.join(' '));
    assert.deepEqual(pod, [
      'addr add 10.64.1.9/32 dev eth0',
      'link set dev eth0 up',
      'route add 169.254.1.1/32 dev eth0 scope link',
      'route add default via 169.254.1.1 dev eth0',
      `neigh add 169.254.1.1 lladdr ${p.hostMac} dev eth0 nud permanent`,
    ]);
  });

  test('secondary-ENI pod gets a from-pod rule into its ENI table', () => {
    const host = planVethAdd({ ...spec, routeTable: 3 }).hostLines.map((l) => l.join(' '));
    assert.ok(host.includes('rule add from 10.64.1.9/32 lookup 3 priority 1536 protocol 118'));
  });

  test('cleanup removes both rules (when the IP is known) and the veth', () => {
    assert.deepEqual(
      planHostCleanup('vpcx', '10.0.0.1').map((l) => l.join(' ')),
      [
        'rule del to 10.0.0.1/32 lookup main priority 512',
        'rule del from 10.0.0.1/32 priority 1536',
        'link del dev vpcx',
      ],
    );
    assert.deepEqual(planHostCleanup('vpcx', null), [['link', 'del', 'dev', 'vpcx']]);
  });

  test('diagnose: healthy state has no problems; each missing piece is named', () => {
    const p = planVethAdd({ ...spec, routeTable: 2 });
    const host = {
      link: { address: p.hostMac, flags: ['UP'] },
      routes: [{ dst: '10.64.1.9', dev: p.hostName }],
      rules: [
        { priority: 512, dst: '10.64.1.9', table: 'main' },
        { priority: 1536, src: '10.64.1.9', table: '2' },
      ],
    };
    const pod = {
      link: { flags: ['UP'], addr_info: [{ family: 'inet', local: '10.64.1.9', prefixlen: 32 }] },
      routes: [{ dst: 'default', gateway: '169.254.1.1' }],
      neigh: [{ dst: '169.254.1.1', lladdr: p.hostMac, state: ['PERMANENT'] }],
    };
    const s = { ...spec, routeTable: 2 };
    assert.deepEqual(diagnoseVeth(s, host, pod), []);
    assert.match(diagnoseVeth(s, { ...host, routes: [] }, pod).join(), /host route 10.64.1.9\/32/);
    assert.match(
      diagnoseVeth(s, { ...host, rules: host.rules.slice(0, 1) }, pod).join(),
      /from 10.64.1.9 lookup 2/,
    );
    assert.match(diagnoseVeth(s, host, { ...pod, routes: [] }).join(), /default route/);
    assert.match(diagnoseVeth(s, host, { ...pod, neigh: [] }).join(), /neighbour/);
    assert.match(diagnoseVeth(s, { ...host, link: undefined }, null).join(), /missing.*not usable/);
  });
});

describe('ipvlan plan', () => {
  const ipv = {
    ...spec,
    subnetCidr: '10.64.1.0/24',
    gateway: '10.64.1.1',
    parent: 'eth1',
    hostDestinations: ['10.64.0.10/32', '172.20.0.0/16'],
    directCidrs: ['10.64.0.0/16', '10.64.1.0/24', '198.51.100.0/24'],
  };

  test('ipvlan slave of the ENI link; VPC and excluded CIDRs direct, the rest through the host (SNAT)', () => {
    const p = planIpvlanAdd(ipv);
    const host = p.hostLines.map((l) => l.join(' '));
    const temp = ipvlanTempName(ipv.containerId, 'eth0');
    assert.equal(host[0], `link add link eth1 name ${temp} mtu 1500 netns /run/netns/p1 type ipvlan mode l2`);
    const pod = p.podLines.map((l) => l.join(' '));
    assert.equal(pod[0], `link set dev ${temp} name eth0`);
    assert.ok(pod.includes('addr add 10.64.1.9/24 dev eth0'));
    assert.ok(pod.includes('route add default via 169.254.1.1 dev vpc-host src 10.64.1.9'));
    assert.ok(pod.includes('route add 10.64.0.0/16 via 10.64.1.1 dev eth0'));
    assert.ok(pod.includes('route add 198.51.100.0/24 via 10.64.1.1 dev eth0'));
    assert.ok(!pod.some((l) => l.startsWith('route add 10.64.1.0/24')), 'own subnet is on-link already');
    assert.ok(pod.includes('route add 172.20.0.0/16 via 169.254.1.1 dev vpc-host src 10.64.1.9'));
  });

  test('the slave is never created under a name the node holds (Linux 6.1 checks the caller netns: EEXIST)', () => {
    // every pod's eth0 would collide with the node's eth0; the creation name is the pod's own
    const names = ['c1', 'c2', 'c3'].map((containerId) => {
      const line = planIpvlanAdd({ ...ipv, containerId }).hostLines[0]!;
      return line[line.indexOf('name') + 1]!;
    });
    assert.equal(new Set(names).size, 3);
    for (const n of names) {
      assert.ok(n.length <= 15, `${n} fits IFNAMSIZ`);
      assert.ok(!/^eth\d*$/.test(n) && n !== ipv.parent && n !== ipv.ifName, n);
      assert.ok(!hostVethPattern(['vpc', 'eni', 'ipvl']).test(n), 'not a host veth name of any prefix');
    }
  });

  test('a node address seen twice (on two links) is routed once', () => {
    const pod = planIpvlanAdd({ ...ipv, hostDestinations: ['10.64.0.10/32', '10.64.0.10/32'] }).podLines;
    assert.equal(pod.filter((l) => l[2] === '10.64.0.10/32').length, 1);
  });

  test('external SNAT (0.0.0.0/0 direct): the default route leaves through the ENI', () => {
    const pod = planIpvlanAdd({ ...ipv, directCidrs: ['0.0.0.0/0'] }).podLines.map((l) => l.join(' '));
    assert.ok(pod.includes('route add default via 10.64.1.1 dev eth0'));
    assert.ok(!pod.some((l) => l.startsWith('route add default via 169.254.1.1')));
  });

  test('CHECK: a pod as ADD made it is healthy; each kind of damage is named', () => {
    const plan = planIpvlanAdd(ipv);
    const host: ObservedHost = {
      link: { address: plan.hostMac, flags: ['UP'] },
      routes: [{ dst: '10.64.1.9', dev: plan.hostName }],
      rules: [],
    };
    const pod: ObservedIpvlanPod = {
      links: [
        {
          ifname: 'eth0',
          flags: ['UP'],
          linkinfo: { info_kind: 'ipvlan' },
          addr_info: [{ family: 'inet', local: '10.64.1.9', prefixlen: 24 }],
        },
        { ifname: 'vpc-host', flags: ['UP'] },
      ],
      routes: [
        { dst: 'default', gateway: '169.254.1.1', dev: 'vpc-host' },
        { dst: '169.254.1.1', dev: 'vpc-host' },
        { dst: '10.64.0.0/16', gateway: '10.64.1.1', dev: 'eth0' },
        { dst: '198.51.100.0/24', gateway: '10.64.1.1', dev: 'eth0' },
        { dst: '10.64.0.10', gateway: '169.254.1.1', dev: 'vpc-host' },
        { dst: '172.20.0.0/16', gateway: '169.254.1.1', dev: 'vpc-host' },
      ],
      neigh: [{ dst: '169.254.1.1', lladdr: plan.hostMac, state: ['PERMANENT'] }],
    };
    assert.deepEqual(diagnoseIpvlan(ipv, host, pod), []);
    assert.match(diagnoseIpvlan(ipv, { ...host, routes: [] }, pod).join(), /host route 10\.64\.1\.9\/32/);
    const noDefault = { ...pod, routes: pod.routes.filter((r) => r.dst !== 'default') };
    assert.match(
      diagnoseIpvlan(ipv, host, noDefault).join(),
      /pod route default via 169\.254\.1\.1 dev vpc-host/,
    );
    const veth = { ...pod, links: [{ ...pod.links[0]!, linkinfo: { info_kind: 'veth' } }, pod.links[1]!] };
    assert.match(diagnoseIpvlan(ipv, host, veth).join(), /eth0 is veth an ipvlan slave/);
    const noVpc = { ...pod, routes: pod.routes.filter((r) => r.dst !== '10.64.0.0/16') };
    assert.match(
      diagnoseIpvlan(ipv, host, noVpc).join(),
      /pod route 10\.64\.0\.0\/16 via 10\.64\.1\.1 dev eth0/,
    );
    assert.match(diagnoseIpvlan(ipv, host, { ...pod, neigh: [] }).join(), /neighbour/);
    assert.match(diagnoseIpvlan(ipv, host, null).join(), /not usable/);
  });

  test("the host veth is the routed mode's pair, its pod end named vpc-host (eth0 is the ipvlan slave)", () => {
    const p = planIpvlanAdd({
      ...spec,
      subnetCidr: '10.64.1.0/24',
      gateway: '10.64.1.1',
      parent: 'eth1',
      hostDestinations: [],
      directCidrs: [],
    });
    const routed = planVethLink(spec);
    assert.equal(p.hostName, routed.hostName);
    assert.equal(p.hostMac, routed.hostMac);
    const host = p.hostLines.map((l) => l.join(' '));
    assert.equal(
      host[1],
      `link add name ${routed.hostName} address ${routed.hostMac} mtu 1500 type veth peer name vpc-host address ${routed.podMac} mtu 1500 netns /run/netns/p1`,
    );
    assert.equal(host[2], `link set dev ${routed.hostName} up`);
    assert.equal(
      host[3],
      `route replace 10.64.1.9/32 dev ${routed.hostName} scope link proto ${ROUTE_PROTO}`,
    );
  });
});

describe('prevResult and GC', () => {
  test('our IP is found through the sandbox interface index', () => {
    const prev = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'vpcx' }, { name: 'eth0', sandbox: '/ns' }],
      ips: [{ address: '10.1.2.3/32', interface: 1 }],
    };
    assert.equal(ipFromPrevResult(prev, 'eth0'), '10.1.2.3');
    assert.equal(ipFromPrevResult(prev, 'eth1'), null);
    assert.equal(ipFromPrevResult(undefined, 'eth0'), null);
  });

  test('GC deletes only our veths and pod rules that no valid attachment owns', () => {
    const live = hostVethName('live', 'eth0');
    const dead = hostVethName('dead', 'eth0');
    const plan = planGc(
      [{ containerId: 'live', ifName: 'eth0' }],
      [{ ifname: live }, { ifname: dead }, { ifname: 'eth0' }, { ifname: 'vpcnothex' }],
      [
        { dst: '10.0.0.1', dev: live },
        { dst: '10.0.0.2', dev: dead },
      ],
      [
        { priority: 512, dst: '10.0.0.1', protocol: '118' },
        { priority: 512, dst: '10.0.0.2', protocol: '118' },
        { priority: 1536, src: '10.0.0.3', protocol: '118' },
        { priority: 1536, src: '10.0.0.4' }, // not ours (no protocol 118)
      ],
    );
    assert.deepEqual(plan.staleLinks, [dead]);
    assert.deepEqual(
      plan.lines.map((l) => l.join(' ')),
      [
        'rule del to 10.0.0.2/32 lookup main priority 512',
        'rule del from 10.0.0.3/32 priority 1536',
        `link del dev ${dead}`,
      ],
    );
  });
});
