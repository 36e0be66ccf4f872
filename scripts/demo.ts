// The main job, end to end with real packets (`npm run demo` runs this after setup, the CNI build
// and LocalStack; see docs/demo.md):
//   1. seed a cluster in LocalStack, build the local VPC from network namespaces, two nodes
//      (m5.large, m5.4xlarge), one vpc-ipamd per node talking to LocalStack through its IMDS fake;
//   2. add pods by calling dist/vpc-cni exactly as a container runtime does, enough on the
//      m5.large that some pods get IPs of a secondary ENI;
//   3. prove connectivity with TCP: same node, across nodes (source IP kept, secondary ENI
//      included), to the internet (SNAT to the node's primary IP);
//   4. show the pool through the `vpc-ipam` CLI and the ENIs LocalStack holds;
//   5. delete every pod and check nothing of them is left on the nodes;
//   6. tear everything down, also on failure or Ctrl-C.
// Prints ✓/✗ per check and ends with "demo: N checks passed, M failed"; exits 1 if any failed.
//
//   node scripts/demo.ts [--pods-large N] [--pods-big N]
// Needs root and LocalStack (VPC_IPAM_EC2_ENDPOINT, default http://127.0.0.1:4566).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DescribeNetworkInterfacesCommand, DescribeVpcsCommand } from '@aws-sdk/client-ec2';
import { checkLocalStack } from '../localstack/health.ts';
import { localEc2Client, type SeedResult } from '../localstack/seed.ts';
import type { Allocation, PoolStatus } from '../src/ipam-daemon/api-types.ts';
import { HOST_VETH_PREFIX } from '../src/netutils/names.ts';
import { addLikeKubelet, type CniOutcome, execPlugin, vpcCniConfig } from '../test/helpers/cni-runtime.ts';
import {
  daemonGet,
  INTERNET_SERVER,
  LocalVpc,
  type VpcNode,
  type VpcPod,
} from '../test/helpers/local-vpc.ts';
import {
  deleteCluster,
  ec2Endpoint,
  region,
  seedCluster,
  uniqueClusterName,
} from '../test/helpers/localstack.ts';
import { Cleanup, createNetns, ipJson, listNetns, requireNetnsPrivileges } from '../test/helpers/netns.ts';
import { ensurePluginBuilt } from '../test/helpers/plugin-binary.ts';
import { probeEventually, startProbeServer } from '../test/helpers/probe.ts';

const ROOT = join(import.meta.dirname, '..');
const PORT = 7000;
const USAGE =
  'usage: node scripts/demo.ts [--pods-large N (10-25, default 12)] [--pods-big N (1-20, default 4)]';

// ---------------------------------------------------------------------------------------------
// Output: step headers, tables, checks.

const color = process.stdout.isTTY === true;
const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
let passed = 0;
let failed = 0;
const t0 = performance.now();

function say(s = ''): void {
  process.stdout.write(`${s}\n`);
}

// Set by SIGINT/SIGTERM/SIGHUP: the next step or check stops the demo, teardown still runs.
let interrupted: NodeJS.Signals | null = null;
let tearingDown = false;

function guard(): void {
  if (interrupted && !tearingDown) throw new Abort(`interrupted by ${interrupted}`);
}

let stepNo = 0;
function step(title: string, n = stepNo + 1): void {
  guard();
  stepNo = n;
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  say();
  say(paint('1', `[${stepNo}/6] ${title}`) + paint('2', `  (t+${secs}s)`));
}

/** Records a check; returns whether it passed. */
function check(ok: boolean, what: string, detail = ''): boolean {
  guard();
  if (ok) passed++;
  else failed++;
  const mark = ok ? paint('32', '✓') : paint('31', '✗');
  say(`  ${mark} ${what}${detail ? `: ${detail}` : ''}`);
  return ok;
}

/** A check the rest of the demo depends on: a failure stops the demo (teardown still runs). */
function must(ok: boolean, what: string, detail = ''): void {
  if (!check(ok, what, detail)) throw new Abort(what);
}

class Abort extends Error {}

function table(rows: string[][], indent = '    '): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  for (const [i, r] of rows.entries()) {
    const line = r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ');
    say(indent + (i === 0 ? paint('2', line.trimEnd()) : line.trimEnd()));
  }
}

function indentBlock(text: string, indent = '    '): void {
  for (const line of text.trimEnd().split('\n')) say(line.trim() === '' ? '' : indent + line);
}

const ms = (x: number) => `${Math.round(x)} ms`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

// ---------------------------------------------------------------------------------------------
// The demo.

interface Pod extends VpcPod {
  name: string;
  alloc: Allocation;
  addMs: number;
  tries: number;
}

interface Failure {
  name: string;
  o: CniOutcome;
}

/** Failed plugin calls grouped by error: "code 100 incomplete HTTP response (web-1, web-2)". */
function summarize(failures: Failure[]): string {
  const byError = new Map<string, string[]>();
  for (const { name, o } of failures) {
    const err = o.out
      ? `code ${String(o.out.code)} ${String(o.out.msg ?? JSON.stringify(o.out))}`
      : `exit ${o.code} ${o.stderr.trim().split('\n').at(-1) ?? ''}`;
    byError.set(err, [...(byError.get(err) ?? []), name]);
  }
  return [...byError].map(([err, names]) => `${err} (${names.join(', ')})`).join('; ');
}

function cliArgs(): { podsLarge: number; podsBig: number } {
  const { values } = parseArgs({
    options: {
      'pods-large': { type: 'string', default: '12' },
      'pods-big': { type: 'string', default: '4' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    say(USAGE);
    process.exit(0);
  }
  const num = (name: string, v: string, lo: number, hi: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) {
      process.stderr.write(
        `--${name} must be a whole number ${lo}-${hi}, got ${JSON.stringify(v)}\n${USAGE}\n`,
      );
      process.exit(2);
    }
    return n;
  };
  // The m5.large's primary ENI holds 9 pod IPs: 10+ pods put some on a secondary ENI; 27 is the node's cap.
  return {
    podsLarge: num('pods-large', values['pods-large'], 10, 25),
    podsBig: num('pods-big', values['pods-big'], 1, 20),
  };
}

function runCli(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, 'src/ipam-daemon/cli.ts'), ...args],
      { timeout: 15_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, out: `${stdout}${stderr}` });
      },
    );
  });
}

async function main(): Promise<void> {
  const { podsLarge, podsBig } = cliArgs();
  const cleanup = new Cleanup();
  const prefix = `d${randomBytes(2).toString('hex')}`;
  const clusterName = uniqueClusterName('demo');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-ipam-demo-'));
  const endpoint = ec2Endpoint();
  let seed: SeedResult | undefined;
  let vpc: LocalVpc | undefined;
  // Daemon and plugin logs stay for a look when something failed.
  cleanup.add('temp dir', () => {
    if (failed > 0 && !interrupted && vpc && vpc.nodes.length > 0)
      say(`    logs kept in ${dir} (daemon.log and cni.log per node)`);
    else rmSync(dir, { recursive: true, force: true });
  });

  let tornDown: Promise<void> | undefined;
  const teardown = (): Promise<void> => {
    tornDown ??= (async () => {
      tearingDown = true;
      const t = performance.now();
      step('Tear down', 6);
      const errors = await cleanup.run();
      for (const e of errors) say(`    cleanup: ${e}`);
      const leftNetns = await listNetns(`${prefix}-`).catch(() => ['(ip netns list failed)']);
      check(leftNetns.length === 0, 'no network namespace of this run left', leftNetns.join(' ') || 'none');
      if (seed) {
        const ec2 = localEc2Client(endpoint, region());
        try {
          const vpcs = await ec2.send(
            new DescribeVpcsCommand({
              Filters: [{ Name: 'tag:vpc-ipam/cluster-name', Values: [clusterName] }],
            }),
          );
          const left = (vpcs.Vpcs ?? []).map((v) => v.VpcId ?? '?');
          check(left.length === 0, `LocalStack cluster ${clusterName} deleted`, left.join(' ') || seed.vpcId);
        } catch (e) {
          check(false, 'LocalStack cluster deleted', (e as Error).message);
        } finally {
          ec2.destroy();
        }
      }
      say(`    daemons, forwarders, probe servers and netns stopped/removed in ${ms(performance.now() - t)}`);
    })();
    return tornDown;
  };

  let finished: Promise<void> | undefined;
  const finish = (): Promise<void> => {
    finished ??= (async () => {
      await teardown().catch((e: unknown) => check(false, 'teardown', (e as Error).message));
      say();
      say(`  total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      say(`demo: ${passed} checks passed, ${failed} failed`);
      // Exit now: a stray handle (a half-closed socket) must not keep the demo hanging.
      process.exit(interrupted ? (interrupted === 'SIGINT' ? 130 : 143) : failed === 0 ? 0 : 1);
    })();
    return finished;
  };

  // Ctrl-C / kill: the demo stops at its next step or check and tears down; if it is stuck in a
  // long wait, the teardown starts from here after 5 s. (Daemons started from a terminal also
  // get its SIGINT and drain by themselves.)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (interrupted) {
        say(`  (${sig}: still tearing down)`);
        return;
      }
      interrupted = sig;
      failed++;
      say(`\n  ${paint('31', '✗')} interrupted by ${sig}: tearing down`);
      setTimeout(() => void finish(), 5000).unref();
    });
  }
  // An error escaping from a helper (say, a pipe to a child that died) still gets a teardown.
  process.on('uncaughtException', (e) => {
    if (interrupted || tearingDown) return; // children dying under the teardown: expected
    check(false, 'demo crashed', e.message);
    void finish();
  });

  say(
    paint('1', 'vpc-ipam demo: LocalStack EC2 + vpc-ipamd + dist/vpc-cni in a local VPC, with real packets'),
  );
  try {
    // --- 1 ---------------------------------------------------------------------------------
    step('Seed a cluster in LocalStack, build the local VPC, start vpc-ipamd on each node');
    requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
    await checkLocalStack(endpoint);
    check(true, 'LocalStack EC2 healthy', endpoint);
    const tb = performance.now();
    const plugin = await ensurePluginBuilt();
    check(true, 'CNI plugin ready', `${plugin.replace(`${ROOT}/`, '')} (${ms(performance.now() - tb)})`);

    const ts = performance.now();
    seed = await seedCluster({ clusterName });
    cleanup.add('LocalStack cluster', async () => {
      const errors = await deleteCluster({ clusterName });
      if (errors.length > 0) throw new Error(errors.join('; '));
    });
    const large = seed.instances.find((i) => i.type === 'm5.large');
    const big = seed.instances.find((i) => i.type === 'm5.4xlarge');
    must(
      Boolean(large && big),
      `seeded cluster ${clusterName}`,
      `${seed.vpcId} ${seed.cidr} in ${ms(performance.now() - ts)}`,
    );
    table([
      ['NODE', 'INSTANCE', 'TYPE', 'AZ', 'SUBNET', 'PRIMARY IP', 'PRIMARY ENI'],
      ...[large!, big!].map((i, n) => [
        `node${n + 1}`,
        i.id,
        i.type,
        i.az,
        seed!.subnets.find((s) => s.id === i.subnetId)?.cidr ?? i.subnetId,
        i.privateIp,
        i.primaryEniId,
      ]),
    ]);

    const tv = performance.now();
    vpc = new LocalVpc(seed, prefix, dir, cleanup);
    await vpc.build();
    const node1 = await vpc.addNode(large!);
    const node2 = await vpc.addNode(big!);
    vpc.startSyncLoop(300);
    check(
      true,
      'local VPC built from network namespaces',
      `fabric ${vpc.fabric}, internet ${vpc.inet}, nodes ${node1.ns} ${node2.ns} (${ms(performance.now() - tv)})`,
    );
    say('    (the fabric routes each private IP only to the ENI LocalStack says owns it, like the VPC does)');

    const env = { VPC_IPAM_ALLOCATE_WAIT: '20' };
    await Promise.all(
      [node1, node2].map(async (node) => {
        const t = performance.now();
        await vpc!.startDaemon(node, env);
        const took = performance.now() - t;
        // Ready means the pool is rebuilt; the warm IPs arrive right after (one cloud call).
        let pool = (await daemonGet(node.socketPath, '/v1/pool')).body as PoolStatus;
        for (let i = 0; i < 50 && !pool.plan.endsWith('at target'); i++) {
          await new Promise((r) => setTimeout(r, 200));
          pool = (await daemonGet(node.socketPath, '/v1/pool')).body as PoolStatus;
        }
        check(
          true,
          `vpc-ipamd ready on node${node.index} (${node.instance.type})`,
          `${ms(took)}; warm pool ${pool.total} IPs on ${pool.interfaces.length} ENI after ${ms(performance.now() - t)}, max pods ${pool.maxPods}`,
        );
      }),
    );
    for (const ns of [vpc.inet]) {
      const s = await startProbeServer(ns, PORT);
      cleanup.add(`probe server ${ns}`, () => s.stop());
    }

    // --- 2 ---------------------------------------------------------------------------------
    step(`Add ${podsLarge + podsBig} pods with dist/vpc-cni, as a container runtime calls it`);
    say(
      '    (CNI_COMMAND=ADD, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME=eth0, CNI_ARGS=K8S_POD_*; config on stdin;',
    );
    say("     run in the node's network namespace; 'try again later' (code 11) retried like the kubelet)");
    say(`    node1 is an m5.large: 9 pod IPs per ENI, so pods 10..${podsLarge} get IPs of a secondary ENI,`);
    say('    which the daemon attached ahead of time (WARM_ENI_TARGET=1 keeps one spare ENI warm).');
    const conf = vpcCniConfig;
    const pods: Pod[] = [];
    const addFailures: Failure[] = [];
    let seq = 0;
    const addPod = async (node: VpcNode, name: string): Promise<void> => {
      const n = ++seq;
      const ns = `${prefix}-p${n}`;
      const nsPath = await createNetns(ns, cleanup);
      const id = `${prefix}pod${n}${randomBytes(4).toString('hex')}`;
      const started = performance.now();
      const o = await addLikeKubelet(
        plugin,
        { containerId: id, netns: nsPath, podName: name },
        conf(node),
        node.ns,
        {
          maxAttempts: 10,
          beforeAttempt: guard,
        },
      );
      const tries = o.attempts;
      const addMs = tries === 1 ? o.ms : performance.now() - started;
      if (o.code !== 0) {
        addFailures.push({ name, o });
        return;
      }
      const ip = (o.out!.ips as { address: string }[])[0]!.address.split('/')[0]!;
      const a = await daemonGet(node.socketPath, `/v1/allocation?containerId=${id}&ifName=eth0`);
      pods.push({
        name,
        id,
        ns,
        nsPath,
        node,
        ip,
        result: o.out!,
        alloc: a.body as Allocation,
        addMs,
        tries,
      });
    };
    for (let i = 1; i <= podsLarge; i++) await addPod(node1, `web-${i}`);
    for (let i = 1; i <= podsBig; i++) await addPod(node2, `api-${i}`);
    table([
      ['POD', 'NODE', 'POD IP', 'ENI', 'DEV', 'ADD'],
      ...pods.map((p) => [
        p.name,
        `node${p.node.index}`,
        p.ip,
        p.alloc.interfaceId,
        `eth${p.alloc.deviceIndex}`,
        ms(p.addMs) + (p.tries > 1 ? ` (${p.tries} tries)` : ''),
      ]),
    ]);
    const times = pods.map((p) => p.addMs);
    must(
      addFailures.length === 0,
      `${pods.length}/${podsLarge + podsBig} ADDs succeeded`,
      addFailures.length > 0
        ? summarize(addFailures)
        : `median ${ms(median(times))}, max ${ms(Math.max(...times))} per ADD (process start to result)`,
    );
    const ips = new Set(pods.map((p) => p.ip));
    check(ips.size === pods.length, 'every pod has its own IP', `${ips.size} distinct`);
    // LocalStack must agree: each pod IP is a secondary private IP of the ENI the daemon named.
    const ec2 = localEc2Client(endpoint, region());
    cleanup.add('ec2 client', () => ec2.destroy());
    const describeEnis = async () =>
      (
        await ec2.send(
          new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [seed!.vpcId] }] }),
        )
      ).NetworkInterfaces ?? [];
    const enis = await describeEnis();
    const mismatched = pods.filter((p) => {
      const eni = enis.find((e) => e.NetworkInterfaceId === p.alloc.interfaceId);
      return !(
        eni?.Attachment?.InstanceId === p.node.instance.id &&
        eni.PrivateIpAddresses?.some((x) => x.PrivateIpAddress === p.ip && !x.Primary)
      );
    });
    check(
      mismatched.length === 0,
      'LocalStack agrees: each pod IP is a secondary IP of the ENI the daemon named, on that node',
      mismatched.length > 0
        ? mismatched.map((p) => `${p.name} ${p.ip}`).join(', ')
        : `${pods.length} of ${pods.length}`,
    );
    const onSecondary = pods.filter((p) => p.node === node1 && p.alloc.deviceIndex > 0);
    must(
      onSecondary.length > 0,
      `pods on a secondary ENI of node1`,
      onSecondary.length > 0
        ? `${onSecondary.length} (${onSecondary.map((p) => p.ip).join(', ')}) on ${[...new Set(onSecondary.map((p) => p.alloc.interfaceId))].join(', ')}`
        : 'none',
    );

    // --- 3 ---------------------------------------------------------------------------------
    step('Real TCP connections (each server answers with the source address it saw)');
    const n1Primary = pods.find((p) => p.node === node1 && p.alloc.deviceIndex === 0)!;
    const n1Other = pods.find((p) => p.node === node1 && p.alloc.deviceIndex === 0 && p !== n1Primary)!;
    const n1Secondary = onSecondary[0]!;
    const n2Pod = pods.find((p) => p.node === node2)!;
    const servers = new Set<Pod>();
    const serve = async (p: Pod) => {
      if (servers.has(p)) return;
      servers.add(p);
      const s = await startProbeServer(p.ns, PORT);
      cleanup.add(`probe server ${p.name}`, () => s.stop());
    };
    await Promise.all([n1Other, n1Secondary, n2Pod].map(serve));
    const probeRows: string[][] = [['FROM', 'TO', 'SERVER SAW', 'EXPECTED', 'TIME']];
    const tcp = async (what: string, from: Pod, to: string, toLabel: string, expect: string) => {
      const t = performance.now();
      let saw: string;
      try {
        saw = await probeEventually(from.ns, to, PORT, 10_000);
      } catch (e) {
        saw = `no answer (${(e as Error).message.split(': ').at(-1)})`;
      }
      const took = performance.now() - t;
      probeRows.push([`${from.name} ${from.ip}`, `${toLabel} ${to}`, saw, expect, ms(took)]);
      check(saw === expect, what, `${from.ip} -> ${to}:${PORT}, server saw ${saw}`);
    };
    await tcp('pod -> pod, same node, source kept', n1Primary, n1Other.ip, n1Other.name, n1Primary.ip);
    await tcp('pod -> pod, across nodes, source kept', n1Primary, n2Pod.ip, n2Pod.name, n1Primary.ip);
    await tcp(
      `pod on secondary ENI (eth${n1Secondary.alloc.deviceIndex}) -> pod on the other node, source kept`,
      n1Secondary,
      n2Pod.ip,
      n2Pod.name,
      n1Secondary.ip,
    );
    await tcp(
      'pod on the other node -> pod on the secondary ENI, source kept',
      n2Pod,
      n1Secondary.ip,
      n1Secondary.name,
      n2Pod.ip,
    );
    await tcp(
      `pod -> internet, SNATed to node1's primary IP`,
      n1Primary,
      INTERNET_SERVER,
      'internet',
      node1.instance.privateIp,
    );
    await tcp(
      `pod on secondary ENI -> internet, SNATed to node1's primary IP`,
      n1Secondary,
      INTERNET_SERVER,
      'internet',
      node1.instance.privateIp,
    );
    await tcp(
      `pod on node2 -> internet, SNATed to node2's primary IP`,
      n2Pod,
      INTERNET_SERVER,
      'internet',
      node2.instance.privateIp,
    );
    table(probeRows);

    // --- 4 ---------------------------------------------------------------------------------
    step('The pool as the operator sees it, and the ENIs LocalStack holds');
    for (const node of [node1, node2]) {
      say(
        `    $ vpc-ipam pool --socket ${node.socketPath.replace(`${dir}/`, '<run>/')}   # node${node.index}`,
      );
      const r = await runCli(['pool', '--socket', node.socketPath]);
      indentBlock(r.out, '      ');
      const pool = (await daemonGet(node.socketPath, '/v1/pool')).body as PoolStatus;
      const mine = pods.filter((p) => p.node === node).length;
      check(
        r.code === 0 && pool.assigned === mine,
        `node${node.index}: vpc-ipam shows ${pool.assigned} assigned`,
        `expected ${mine} pods`,
      );
      say();
    }
    say(`    $ vpc-ipam allocations --socket <run>/n1/ipamd.sock   # node1`);
    const allocs = await runCli(['allocations', '--socket', node1.socketPath]);
    indentBlock(allocs.out, '      ');
    check(
      allocs.code === 0 && onSecondary.every((p) => allocs.out.includes(`default/${p.name}`)),
      'vpc-ipam allocations lists the pods by name',
    );
    say();
    say('    ENIs in LocalStack (DescribeNetworkInterfaces):');
    const enisNow = await describeEnis();
    const eniRows = enisNow
      .filter((e) => e.Attachment?.InstanceId)
      .map((e) => {
        const node = [node1, node2].find((n) => n.instance.id === e.Attachment!.InstanceId);
        const secondaries = (e.PrivateIpAddresses ?? []).filter((x) => !x.Primary).length;
        const podsHere = pods.filter((p) => p.alloc.interfaceId === e.NetworkInterfaceId).length;
        return {
          key: `${node?.index ?? 9}-${e.Attachment!.DeviceIndex ?? 0}`,
          row: [
            node ? `node${node.index}` : e.Attachment!.InstanceId!,
            `eth${e.Attachment!.DeviceIndex ?? 0}`,
            e.NetworkInterfaceId ?? '',
            e.PrivateIpAddress ?? '',
            String(secondaries),
            String(podsHere),
            e.Status ?? '',
          ],
        };
      })
      .sort((a, b) => a.key.localeCompare(b.key, 'en', { numeric: true }));
    table([
      ['NODE', 'DEV', 'ENI', 'PRIMARY IP', 'SECONDARY IPS', 'PODS', 'STATUS'],
      ...eniRows.map((r) => r.row),
    ]);
    const node1Enis = enisNow.filter((e) => e.Attachment?.InstanceId === node1.instance.id).length;
    check(
      node1Enis >= 2,
      `node1 (m5.large) has ${node1Enis} ENIs attached`,
      'the pods outgrew the primary ENI',
    );

    // --- 5 ---------------------------------------------------------------------------------
    step(`Delete every pod (CNI DEL), as the runtime does when pods go`);
    const delTimes: number[] = [];
    const delFailures: Failure[] = [];
    for (const p of pods) {
      guard();
      const o = await execPlugin(
        plugin,
        { command: 'DEL', containerId: p.id, netns: p.nsPath, ifName: 'eth0' },
        conf(p.node, { prevResult: p.result }),
        p.node.ns,
      );
      delTimes.push(o.ms);
      if (o.code !== 0) delFailures.push({ name: p.name, o });
    }
    check(
      delFailures.length === 0,
      `${pods.length - delFailures.length}/${pods.length} DELs succeeded`,
      delFailures.length > 0
        ? summarize(delFailures)
        : `median ${ms(median(delTimes))}, max ${ms(Math.max(...delTimes))} per DEL`,
    );
    // A DEL leaves the host veth to the runtime's netns deletion, as the AWS VPC CNI does; the pods'
    // netns stay here, so vpc-ipamd's sweep deletes the veths ~2 s after each DEL: wait for it.
    const sweptBy = Date.now() + 15_000;
    const oursLeft = async () =>
      (await Promise.all([node1, node2].map((n) => ipJson<{ ifname: string }>(n.ns, 'link', 'show'))))
        .flat()
        .some((l) => l.ifname.startsWith(HOST_VETH_PREFIX));
    while (Date.now() < sweptBy && (await oursLeft())) await new Promise((r) => setTimeout(r, 200));
    say("    (DEL removed each pod's rules and host route; its veth went with the sweep moments later)");
    for (const node of [node1, node2]) {
      const mine = pods.filter((p) => p.node === node);
      const podIps = new Set(mine.map((p) => p.ip));
      const links = await ipJson<{ ifname: string }>(node.ns, 'link', 'show');
      const vethLeft = links.filter((l) => l.ifname.startsWith(HOST_VETH_PREFIX)).map((l) => l.ifname);
      const routes = await ipJson<{ dst: string; table?: string }>(node.ns, 'route', 'show', 'table', 'all');
      const routesLeft = routes.filter((r) => podIps.has(r.dst.split('/')[0]!)).map((r) => r.dst);
      const rules = await ipJson<{ src?: string; dst?: string }>(node.ns, 'rule', 'show');
      const rulesLeft = rules.filter((r) => podIps.has(r.src ?? '') || podIps.has(r.dst ?? ''));
      const neigh = await ipJson<{ dst: string }>(node.ns, 'neigh', 'show');
      const neighLeft = neigh.filter((n) => podIps.has(n.dst));
      const left = [
        ...vethLeft.map((x) => `link ${x}`),
        ...routesLeft.map((x) => `route ${x}`),
        ...rulesLeft.map((r) => `rule ${r.src ?? ''}${r.dst ?? ''}`),
        ...neighLeft.map((n) => `neigh ${n.dst}`),
      ];
      check(
        left.length === 0,
        `node${node.index}: no pod link, route, rule or neighbour entry left`,
        left.length > 0 ? left.join(', ') : `${links.length} links, ${rules.length} rules checked`,
      );
    }
    const podSideLeft: string[] = [];
    for (const p of pods) {
      const l = await ipJson<{ ifname: string }>(p.ns, 'link', 'show');
      if (l.some((x) => x.ifname === 'eth0')) podSideLeft.push(p.name);
    }
    check(
      podSideLeft.length === 0,
      'no eth0 left in any pod netns',
      podSideLeft.join(', ') || `${pods.length} checked`,
    );
    for (const node of [node1, node2]) {
      const r = await runCli(['pool', '--socket', node.socketPath]);
      const pool = (await daemonGet(node.socketPath, '/v1/pool')).body as PoolStatus;
      const allocations = (await daemonGet(node.socketPath, '/v1/allocations')).body as {
        allocations: unknown[];
      };
      say(`    $ vpc-ipam pool   # node${node.index}, after DEL`);
      indentBlock(r.out, '      ');
      check(
        pool.assigned === 0 && allocations.allocations.length === 0,
        `node${node.index}: 0 assigned, 0 allocations`,
        `${pool.cooling} cooling (IP_COOLDOWN_PERIOD), ${pool.free} free`,
      );
    }
  } catch (e) {
    if (!(e instanceof Abort)) {
      check(false, 'demo aborted', (e as Error).message);
      if (vpc) for (const n of vpc.nodes) say(`    daemon log node${n.index}: ${tail(n.daemonLog)}`);
    }
  } finally {
    await finish();
  }
}

function tail(path: string): string {
  try {
    return `\n${readFileSync(path, 'utf8').trimEnd().split('\n').slice(-8).join('\n')}`;
  } catch {
    return '(no log)';
  }
}

await main();
