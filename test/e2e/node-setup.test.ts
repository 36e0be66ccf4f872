// Node setup against a real kernel: the reconciler the daemon runs, pointed at a fresh netns
// (its tools wrapped in `ip netns exec`), checked with iproute2/iptables-save after each run.
// Needs root, iproute2, iptables (nft), sysctl. Fails (never skips) without them.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import type { SnatConfig } from '../../src/ipam-daemon/config.ts';
import { createNodeReconciler, InterfaceNotVisibleError } from '../../src/ipam-daemon/node-setup/index.ts';
import { type Runner, spawnRunner } from '../../src/netutils/exec.ts';
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
import { SNAT_JUMP } from '../helpers/snat-jump.ts';

const MACS = ['02:11:00:00:00:a0', '02:11:00:00:00:a1', '02:11:00:00:00:a2'];

describe('node setup on a real netns', () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const ns = `${prefix}-node`;
  const log = pino({ level: 'silent' });
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
  const reconciler = (snat: SnatConfig) => createNodeReconciler({ snat, logger: log, runner: inNs, sysctl });
  const snat: SnatConfig = { externalSnat: false, excludeCidrs: ['198.51.100.0/24'], randomize: 'prng' };
  const node = {
    primaryIp: '10.70.0.10',
    primaryMac: MACS[0]!,
    vpcCidrs: ['10.70.0.0/16'],
  } as NodeInfo;
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
  const enis = [eni(0, '10.70.0.0/24', '10.70.0.10'), eni(1, '10.70.1.0/24', '10.70.1.20')];
  const save = async () =>
    (await run('ip', ['netns', 'exec', ns, 'iptables-save'])).stdout
      .replace(/^#.*\n/gm, '')
      .replace(/\[\d+:\d+\]/g, '');

  before(async () => {
    requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
    await createNetns(ns, cleanup);
    // eth0 configured as the OS would; eth1 (secondary ENI) appears DOWN and bare, as on EC2
    for (const [i, mac] of MACS.slice(0, 2).entries()) {
      await addVethPair({ name: `eth${i}`, mac, ns }, { name: `p${i}`, ns });
      await ip(ns, 'link', 'set', `p${i}`, 'up');
    }
    await ip(ns, 'addr', 'add', '10.70.0.10/24', 'dev', 'eth0');
    await ip(ns, 'link', 'set', 'eth0', 'up');
    // someone else's rules (kube-proxy-like) that we must never touch
    await run(
      'ip',
      ['netns', 'exec', ns, 'iptables-restore', '--noflush'],
      '*nat\n:KUBE-POSTROUTING - [0:0]\n-A POSTROUTING -j KUBE-POSTROUTING\n-A KUBE-POSTROUTING -j RETURN\nCOMMIT\n',
    );
  });

  after(async () => {
    const errors = await cleanup.run();
    assert.deepEqual(errors, []);
  });

  test('first run: ENI up with its IP, its table, the connmark rule, sysctls, SNAT and connmark chains', async () => {
    const r = reconciler(snat);
    await r.reconcile(node, enis);
    const eth1 = (
      await ipJson<{ flags: string[]; addr_info: { local: string; noprefixroute?: boolean }[] }>(
        ns,
        'addr',
        'show',
        'dev',
        'eth1',
      )
    )[0]!;
    assert.ok(eth1.flags.includes('UP'));
    assert.ok(eth1.addr_info.some((a) => a.local === '10.70.1.20' && a.noprefixroute));
    const t2 = await ipJson<{ dst: string; gateway?: string; dev: string }>(
      ns,
      'route',
      'show',
      'table',
      '2',
    );
    assert.deepEqual(t2.map((x) => `${x.dst} ${x.gateway ?? ''} ${x.dev}`).sort(), [
      '10.70.1.1  eth1',
      'default 10.70.1.1 eth1',
    ]);
    const main = await ipJson<{ dst: string; dev: string }>(ns, 'route', 'show');
    assert.ok(!main.some((x) => x.dev === 'eth1'), 'no main-table route through the secondary ENI');
    const rules = await ipJson<{ priority: number; fwmark?: string }>(ns, 'rule', 'show');
    assert.equal(rules.filter((x) => x.priority === 1024 && x.fwmark === '0x80').length, 1);
    // loose on every interface through `all` (the kernel takes max(all, device))
    assert.equal(await sysctl.get(['net', 'ipv4', 'conf', 'all', 'rp_filter']), '2');
    assert.equal(await sysctl.get(['net', 'ipv4', 'ip_forward']), '1');
    const rules4 = await save();
    assert.match(rules4, /-A VPC-IPAM-SNAT -o eth0 -j SNAT --to-source 10\.70\.0\.10 --random-fully/);
    assert.match(rules4, /-A VPC-IPAM-SNAT -d 198\.51\.100\.0\/24 .*-j RETURN/);
    assert.match(rules4, /-A POSTROUTING -j KUBE-POSTROUTING/);
  });

  test('second run changes nothing (idempotent)', async () => {
    const before1 = await save();
    const rulesBefore = (await ip(ns, 'rule', 'show')).stdout;
    const r = reconciler(snat);
    await r.reconcile(node, enis);
    assert.deepEqual(r.lastPlan?.ipLines, []);
    assert.equal(r.lastPlan?.iptables, null);
    assert.equal(await save(), before1);
    assert.equal((await ip(ns, 'rule', 'show')).stdout, rulesBefore);
  });

  test('drift is repaired: lost route, flushed chain, duplicate jump — other rules untouched', async () => {
    const good = await save();
    await ip(ns, 'route', 'del', 'default', 'table', '2');
    await run('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-F', 'VPC-IPAM-SNAT']);
    await run('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', ...SNAT_JUMP]);
    await reconciler(snat).reconcile(node, enis);
    assert.equal(await save(), good);
    const t2 = await ipJson<{ dst: string }>(ns, 'route', 'show', 'table', '2');
    assert.ok(t2.some((x) => x.dst === 'default'));
  });

  test('EXTERNAL_SNAT=true removes our SNAT (keeps the NodePort connmark); false brings it back', async () => {
    const good = await save();
    await reconciler({ ...snat, externalSnat: true }).reconcile(node, enis);
    const ext = await save();
    assert.doesNotMatch(ext, /VPC-IPAM-SNAT|VPC-IPAM-PODMARK|-j SNAT/);
    assert.match(ext, /-A VPC-IPAM-CONNMARK -i eth0 -m addrtype --dst-type LOCAL/);
    assert.match(ext, /KUBE-POSTROUTING/);
    await reconciler(snat).reconcile(node, enis);
    assert.equal(await save(), good);
  });

  test('an attached ENI the kernel does not show yet fails the run; once it appears it is set up', async () => {
    const three = [...enis, eni(2, '10.70.2.0/24', '10.70.2.30')];
    const r = reconciler(snat);
    await assert.rejects(r.reconcile(node, three), InterfaceNotVisibleError);
    await addVethPair({ name: 'eth2', mac: MACS[2]!, ns }, { name: 'p2', ns });
    await r.reconcile(node, three);
    const t3 = await ipJson<{ dst: string; gateway?: string }>(ns, 'route', 'show', 'table', '3');
    assert.ok(t3.some((x) => x.dst === 'default' && x.gateway === '10.70.2.1'));
    // the ENI goes away from the cloud's list: its table is emptied (only our routes are touched)
    await r.reconcile(node, enis);
    assert.deepEqual(await ipJson(ns, 'route', 'show', 'table', '3'), []);
  });
});
