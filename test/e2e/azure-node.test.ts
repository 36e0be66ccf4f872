// An Azure node in a local VNet made of network namespaces, with the cloud played by the HTTPS ARM
// fake and the Azure IMDS fake (nothing real can run ARM here):
//   node netns    the VM: eth<i> per NIC with the MAC ARM reports; eth0 configured as the OS does,
//                 eth1 left down for the daemon's node setup.
//   peer netns    another VM of the VNet (its own NIC in ARM).
//   fabric netns  the VNet: owns the gateway; routes an address only to the NIC whose
//                 ipConfigurations hold it in ARM (re-read continuously) and, like Azure's SDN,
//                 forwards a packet only when its source address belongs to the NIC it came from.
// vpc-ipamd runs in the node netns with CLOUD_PROVIDER=azure: it reaches ARM over HTTPS through a
// loopback forwarder (trusting the test CA via NODE_EXTRA_CA_CERTS) and gets its token from the IMDS
// managed-identity endpoint. Pods are wired by dist/vpc-cni called as a runtime calls it, and
// proved with real TCP connections.
//
// Needs: root, iproute2, iptables (nft), openssl. Fails (never skips) without them.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type AzureTestbed, startAzureTestbed } from '../fakes/arm-testbed.ts';
import { addLikeKubelet, type CniOutcome, execPlugin, vpcCniConfig } from '../helpers/cni-runtime.ts';
import { serveUnixToTcp, startNetnsForwarder } from '../helpers/forwarder.ts';
import { daemonGet, stopChild } from '../helpers/local-vpc.ts';
import {
  addVethPair,
  Cleanup,
  createNetns,
  ip,
  ipBatch,
  listNetns,
  requireNetnsPrivileges,
  run,
  runPrefix,
} from '../helpers/netns.ts';
import { ensurePluginBuilt } from '../helpers/plugin-binary.ts';
import { probe, startProbeServer } from '../helpers/probe.ts';

const PORT = 7100;
const GATEWAY = '10.240.0.1';

interface Link {
  nicId: string;
  /** Link name in the fabric netns. */
  fabric: string;
  /** The NIC's MAC: the fabric delivers to it without ARP, as Azure's SDN does. */
  mac: string;
}

describe('local VNet e2e: an Azure node (ARM fake + netns + dist/vpc-cni)', { timeout: 300_000 }, () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const dir = mkdtempSync(join(tmpdir(), 'vpc-az-e2e-'));
  const fabric = `${prefix}-azf`;
  const nodeNs = `${prefix}-azn`;
  const peerNs = `${prefix}-azp`;
  const socketPath = join(dir, 'ipamd.sock');
  const daemonLog = join(dir, 'daemon.log');
  let tb: AzureTestbed;
  let plugin = '';
  let peerIp = '';
  const links: Link[] = [];
  let applied = new Map<string, string>(); // ip -> fabric link
  let appliedFilter = '';
  let loop: NodeJS.Timeout | null = null;
  let syncing: Promise<void> = Promise.resolve();

  const nicName = (id: string) => id.split('/').at(-1)!;

  /** Routes and anti-spoofing filter of the fabric, from what ARM says right now. */
  async function syncOnce(): Promise<void> {
    const want = new Map<string, string>();
    const macs = new Map(links.map((l) => [l.fabric, l.mac]));
    const filter: string[] = ['*filter', ':FORWARD DROP [0:0]'];
    for (const l of links) {
      const nic = tb.arm.nic(tb.resourceGroup, nicName(l.nicId));
      for (const c of nic?.ipConfigs ?? []) {
        if (!c.privateIPAddress) continue;
        want.set(c.privateIPAddress, l.fabric);
        filter.push(`-A FORWARD -i ${l.fabric} -s ${c.privateIPAddress}/32 -j ACCEPT`);
      }
    }
    filter.push('COMMIT', '');
    const lines: string[] = [];
    for (const [addr, link] of want) {
      if (applied.get(addr) === link) continue;
      lines.push(
        `route replace ${addr}/32 dev ${link}`,
        `neigh replace ${addr} lladdr ${macs.get(link)} dev ${link} nud permanent`,
      );
    }
    for (const [addr, link] of applied) {
      if (!want.has(addr)) lines.push(`route del ${addr}/32`, `neigh del ${addr} dev ${link}`);
    }
    await ipBatch(fabric, lines);
    applied = want;
    const text = filter.join('\n');
    if (text !== appliedFilter) {
      await run('ip', ['netns', 'exec', fabric, 'iptables-restore'], text);
      appliedFilter = text;
    }
  }

  function sync(): Promise<void> {
    syncing = syncing.then(syncOnce, syncOnce);
    return syncing;
  }

  /** A VM netns wired to the fabric: one veth per NIC, named eth<i> inside, with ARM's MAC. */
  async function wireVm(ns: string, nicIds: string[], tag: string): Promise<void> {
    for (const [i, nicId] of nicIds.entries()) {
      const nic = tb.arm.nic(tb.resourceGroup, nicName(nicId))!;
      const fab = `${prefix}${tag}${i}`;
      const mac = nic.macAddress.replaceAll('-', ':').toLowerCase();
      await addVethPair({ name: fab, ns: fabric }, { name: `eth${i}`, mac, ns });
      await ip(fabric, 'link', 'set', fab, 'up');
      // The VNet answers ARP for every address it routes elsewhere (as Azure's SDN does).
      await run('ip', ['netns', 'exec', fabric, 'sysctl', '-q', '-w', `net.ipv4.conf.${fab}.proxy_arp=1`]);
      links.push({ nicId, fabric: fab, mac });
    }
    const primary = tb.arm.nic(tb.resourceGroup, nicName(nicIds[0]!))!.ipConfigs.find((c) => c.primary)!;
    await ipBatch(ns, [
      `addr add ${primary.privateIPAddress}/24 dev eth0`,
      'link set eth0 up',
      `route add default via ${GATEWAY} dev eth0`,
    ]);
  }

  const conf = () => vpcCniConfig({ socketPath, dir });

  function add(nsPath: string, id: string): Promise<CniOutcome> {
    return addLikeKubelet(plugin, { containerId: id, netns: nsPath, podName: id }, conf(), nodeNs, {
      maxAttempts: 11,
    });
  }

  async function startDaemon(): Promise<ChildProcess> {
    const armPort = Number(new URL(tb.arm.url).port);
    const imdsPort = Number(new URL(tb.imds.url).port);
    const servers: Server[] = [
      await serveUnixToTcp(join(dir, 'arm.sock'), armPort),
      await serveUnixToTcp(join(dir, 'imds.sock'), imdsPort),
    ];
    cleanup.add('root-side forwarders', () => {
      for (const s of servers) s.close();
    });
    const fwd = await startNetnsForwarder(nodeNs, {
      [armPort]: join(dir, 'arm.sock'),
      [imdsPort]: join(dir, 'imds.sock'),
    });
    cleanup.add('node-side forwarder', () => fwd.kill('SIGKILL'));
    const log = openSync(daemonLog, 'a');
    const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, 'src/ipam-daemon/main.ts'], {
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        ...tb.childEnv(),
        CLUSTER_NAME: 'azure-e2e',
        VPC_IPAM_SOCKET: socketPath,
        VPC_IPAM_CHECKPOINT: join(dir, 'checkpoint.json'),
        VPC_IPAM_RECONCILE_INTERVAL: '1',
        WARM_IP_TARGET: '2',
        VPC_IPAM_MIN_GROW_STEP: '2',
        IP_COOLDOWN_PERIOD: '1',
        VPC_IPAM_SHRINK_DELAY: '1',
        VPC_IPAM_ALLOCATE_WAIT: '20',
        ENABLE_POD_WATCH: 'false',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', log, log],
      cwd: join(import.meta.dirname, '..', '..'),
    });
    cleanup.add('daemon', () => stopChild(child));
    const deadline = Date.now() + 60_000;
    let last = '';
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`vpc-ipamd exited ${child.exitCode}; see ${daemonLog}`);
      try {
        const r = await daemonGet(socketPath, '/readyz');
        if (r.status === 200) return child;
        last = JSON.stringify(r.body);
      } catch (e) {
        last = (e as Error).message;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`vpc-ipamd not ready after 60 s (${last}); see ${daemonLog}`);
  }

  before(async () => {
    requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl', 'openssl']);
    plugin = await ensurePluginBuilt();
    tb = await startAzureTestbed({ nicCount: 2 });
    cleanup.add('azure test bed', () => tb.close());
    cleanup.add('temp dir', () => rmSync(dir, { recursive: true, force: true }));
    const peer = tb.arm.addVm({
      resourceGroup: tb.resourceGroup,
      name: 'peer-vm',
      location: tb.location,
      nics: [{ name: 'peer-nic', subnetId: tb.subnetId }],
    });
    peerIp = tb.arm.nic(tb.resourceGroup, 'peer-nic')!.ipConfigs[0]!.privateIPAddress;
    for (const ns of [fabric, nodeNs, peerNs]) await createNetns(ns, cleanup);
    for (const [key, value] of [
      ['net.ipv4.ip_forward', '1'],
      ['net.ipv4.conf.all.rp_filter', '0'],
      ['net.ipv4.conf.default.rp_filter', '0'],
      ['net.ipv4.conf.default.proxy_arp', '1'],
    ]) {
      await run('ip', ['netns', 'exec', fabric, 'sysctl', '-q', '-w', `${key}=${value}`]);
    }
    await ipBatch(fabric, [`addr add ${GATEWAY}/32 dev lo`]);
    await wireVm(nodeNs, tb.vm.nicIds, 'n');
    // The secondary NIC arrives down and unconfigured: the daemon's node setup owns it.
    await ip(nodeNs, 'addr', 'flush', 'dev', 'eth1');
    await wireVm(peerNs, peer.nicIds, 'p');
    await sync();
    const tick = () => {
      loop = setTimeout(() => {
        sync()
          .catch(() => undefined)
          .finally(() => {
            if (loop) tick();
          });
      }, 200);
    };
    tick();
    cleanup.add('sync loop', () => {
      if (loop) clearTimeout(loop);
      loop = null;
    });
    await startDaemon();
    const s = await startProbeServer(peerNs, PORT);
    cleanup.add('peer probe server', () => s.stop());
  });

  after(async () => {
    const errors = await cleanup.run();
    const leaked = await listNetns(prefix);
    if (errors.length > 0) console.error('cleanup errors:', errors);
    assert.deepEqual(leaked, [], 'no netns of this run left behind');
  });

  test('a pod gets an address ARM holds on the node NIC, and talks to another VM of the VNet', async () => {
    const podNs = `${prefix}-azq1`;
    const nsPath = await createNetns(podNs, cleanup);
    const id = `${prefix}azpod1`;
    const o = await add(nsPath, id);
    assert.equal(o.code, 0, `ADD failed: ${JSON.stringify(o.out)} ${o.stderr}`);
    const podIp = (o.out!.ips as { address: string }[])[0]!.address.split('/')[0]!;
    const owner = tb.vm.nicIds.find((nicId) =>
      tb.arm
        .nic(tb.resourceGroup, nicName(nicId))!
        .ipConfigs.some((c) => !c.primary && c.privateIPAddress === podIp),
    );
    assert.ok(owner, `${podIp} is a secondary ipConfiguration of a node NIC in ARM`);
    await sync();
    // Pod -> peer VM: the peer sees the pod's own address (no SNAT inside the VNet).
    assert.equal(await probe(podNs, peerIp, PORT), podIp);
    // Peer VM -> pod.
    const server = await startProbeServer(podNs, PORT);
    cleanup.add('pod probe server', () => server.stop());
    assert.equal(await probe(peerNs, podIp, PORT), peerIp);

    // DEL as the runtime does; the address goes back to the daemon's pool.
    const d = await execPlugin(
      plugin,
      { command: 'DEL', containerId: id, netns: nsPath, ifName: 'eth0' },
      { ...conf(), prevResult: o.out },
      nodeNs,
    );
    assert.equal(d.code, 0, `DEL failed: ${JSON.stringify(d.out)} ${d.stderr}`);
    server.stop();
  });

  test('an address ARM does not give the node is not delivered to it', async () => {
    // Configure a pod by hand with an address nobody was assigned: the VNet must not route it.
    const podNs = `${prefix}-azq2`;
    await createNetns(podNs, cleanup);
    const used = new Set(tb.arm.usedAddresses(tb.subnetId));
    let rogue = '';
    for (let n = 200; n < 250 && !rogue; n++) if (!used.has(`10.240.0.${n}`)) rogue = `10.240.0.${n}`;
    await addVethPair({ name: `${prefix}rg`, ns: nodeNs }, { name: 'eth0', ns: podNs });
    await ipBatch(podNs, [
      `addr add ${rogue}/32 dev eth0`,
      'link set eth0 up',
      'route add 169.254.1.1 dev eth0',
      'route add default via 169.254.1.1',
    ]);
    await ipBatch(nodeNs, [`link set ${prefix}rg up`, `route add ${rogue}/32 dev ${prefix}rg`]);
    await run('ip', ['netns', 'exec', nodeNs, 'sysctl', '-q', '-w', `net.ipv4.conf.${prefix}rg.proxy_arp=1`]);
    await sync();
    const server = await startProbeServer(podNs, PORT);
    cleanup.add('rogue probe server', () => server.stop());
    await assert.rejects(probe(peerNs, rogue, PORT, 1500), /failed/);
    await assert.rejects(probe(podNs, peerIp, PORT, 1500), /failed/);
    server.stop();
  });
});
