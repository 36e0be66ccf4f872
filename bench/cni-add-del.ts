// ADD/DEL wall time: vpc-cni (the static shim; vpc-ipamd runs the command, the shim wires) vs Debian's
// containernetworking-plugins ptp + host-local with ipMasq, side by side in one run, each pod on a
// fresh network namespace; plus what one exec costs (VERSION) for every CNI executable at hand,
// the real AWS VPC CNI plugin included. Every plugin is executed exactly as a runtime does (env +
// stdin) inside the same node netns (`ip netns exec <node> <plugin>`), so all pay the same exec cost.
//
//   sudo npx node bench/cni-add-del.ts [--iterations 200] [--concurrency 50] [--rounds 6] [--write]
//
// Needs root, LocalStack (VPC_IPAM_EC2_ENDPOINT, default http://127.0.0.1:4566), /usr/lib/cni/ptp.
// --write stores the report in bench/results/cni-add-del.md.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startControlPlane } from '../cluster/control-plane.ts';
import { k8sBin } from '../cluster/proc.ts';
import { bundleDaemon } from '../scripts/bundle-daemon.ts';
import { DAEMON_NODE_FLAGS } from '../src/ipam-daemon/node-flags.ts';
import { HOST_VETH_PREFIX, hostVethPattern } from '../src/netutils/names.ts';
import { AwsNode } from '../test/helpers/aws-node.ts';
import { execPlugin } from '../test/helpers/cni-runtime.ts';
import { daemonGet, LocalVpc } from '../test/helpers/local-vpc.ts';
import {
  deleteCluster,
  requireLocalStack,
  seedCluster,
  uniqueClusterName,
} from '../test/helpers/localstack.ts';
import {
  Cleanup,
  createNetns,
  ipJson,
  requireNetnsPrivileges,
  run,
  runPrefix,
} from '../test/helpers/netns.ts';
import { ensurePluginBuilt } from '../test/helpers/plugin-binary.ts';
import { fmt, median, tail, verdict } from './stats.ts';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '6' },
    write: { type: 'boolean', default: false },
  },
});
const N = Number(values.iterations);
const C = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const VERSION_RUNS = 50;
const SHIM_EXEC_GOAL_MS = 5;
/** "On par": within this fraction of the reference. */
const PAR = 0.1;
/**
 * Our daemon's IP_COOLDOWN_PERIOD (s). Any cooldown makes our DEL leave the host veth to the netns
 * deletion, as the AWS plugin's DEL does (with 0 our DEL deletes it itself); its length changes no
 * DEL. 5 s, not the default 30, so the cooling IPs of one 50-pod round and the next fit the
 * m5.4xlarge's pool without growing it mid-run.
 */
const OURS_COOLDOWN_S = 5;
const TOOLS =
  process.env.VPC_IPAM_TOOLS ??
  join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? '/root', '.cache'), 'vpc-ipam', 'tools');
const AWS_PLUGIN = join(TOOLS, 'aws-vpc-cni', 'v1.23.2', 'routed-eni-cni-plugin');

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Peak RSS (KiB) of one VERSION exec, from GNU time (the largest of it and any child it runs). */
async function versionRssKiB(
  bin: string,
  conf: Record<string, unknown>,
  nodeNs: string,
): Promise<number | null> {
  if (!existsSync('/usr/bin/time')) return null;
  const r = await run(
    'ip',
    ['netns', 'exec', nodeNs, 'env', 'CNI_COMMAND=VERSION', '/usr/bin/time', '-f', '%M', bin],
    JSON.stringify(conf),
  ).catch(() => null);
  const kib = Number(r?.stderr.trim().split('\n').at(-1));
  return Number.isFinite(kib) ? kib : null;
}

async function main(): Promise<void> {
  requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
  await requireLocalStack();
  const shim = await ensurePluginBuilt();
  const nodePlugin = join(shim, '..', 'vpc-cni-node');
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const dir = mkdtempSync(join(tmpdir(), 'cni-bench-'));
  const clusterName = uniqueClusterName('cni-bench');
  try {
    const seed = await seedCluster({ clusterName });
    cleanup.add('cluster', () => deleteCluster({ clusterName }));
    const vpc = new LocalVpc(seed, prefix, dir, cleanup);
    await vpc.build();
    const node = await vpc.addNode(seed.instances.find((i) => i.type === 'm5.4xlarge')!);
    // The real AWS VPC CNI on the seed's other instance (an m5.large: 29 pods, so sequential ADD/DEL
    // only), with its aws-k8s-agent against the same LocalStack, a real kube-apiserver and IMDS
    // (test/helpers/aws-node.ts). Optional: when it cannot start, the report says why.
    const awsVpcNode = existsSync(AWS_PLUGIN)
      ? await vpc.addNode(seed.instances.find((i) => i.type === 'm5.large')!)
      : null;
    vpc.startSyncLoop(500);
    // The daemon as production runs it: bundled, with its V8 flags (its RSS sets the cost of
    // every `ip` process it forks).
    const bundleDir = join(import.meta.dirname, '..', 'dist', `.bench-vpc-ipamd-${process.pid}`);
    const daemonBundle = await bundleDaemon(
      join(import.meta.dirname, '..', 'src', 'ipam-daemon', 'main.ts'),
      bundleDir,
    );
    cleanup.add('daemon bundle', async () => rmSync(bundleDir, { recursive: true, force: true }));
    await vpc.startDaemon(
      node,
      {
        IP_COOLDOWN_PERIOD: String(OURS_COOLDOWN_S),
        MINIMUM_IP_TARGET: String(2 * C + 10),
        WARM_IP_TARGET: '8',
      },
      [...DAEMON_NODE_FLAGS, daemonBundle],
    );
    // Free IPs for `n` pods (never timed): the warm pool before the run, and before each burst the
    // IPs of the round before out of their cooldown, so we time wiring, not EC2 or cooling.
    const freeFor = async (n: number) => {
      for (let i = 0; ; i++) {
        const pool = (await daemonGet(node.socketPath, '/v1/pool')).body as { free?: number };
        if ((pool.free ?? 0) >= n) return;
        if (i > 240) throw new Error(`the pool never reached ${n} free IPs: ${JSON.stringify(pool)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    await freeFor(2 * C + 2);
    const oursLog = join(dir, 'cni.log');
    const ours = {
      cniVersion: '1.0.0',
      name: 'vpc',
      type: 'vpc-cni',
      socketPath: node.socketPath,
      mtu: 1500,
      logFile: oursLog,
    };
    const ptp = {
      cniVersion: '1.0.0',
      name: `${prefix}-ptp`,
      type: 'ptp',
      ipMasq: true,
      mtu: 1500,
      ipam: { type: 'host-local', subnet: '10.250.0.0/16', dataDir: join(dir, 'host-local') },
    };
    const kinds = [
      { name: 'vpc-cni (shim)', bin: shim, conf: ours as Record<string, unknown> },
      { name: 'ptp+host-local (ipMasq)', bin: '/usr/lib/cni/ptp', conf: ptp as Record<string, unknown> },
    ];
    let aws: AwsNode | null = null;
    let awsReason = `not built (${AWS_PLUGIN} missing; scripts/build-aws-vpc-cni.sh builds it)`;
    if (awsVpcNode) {
      try {
        const cp = await startControlPlane({ dir: join(dir, 'control-plane') });
        cleanup.add('control plane', () => cp.stop());
        const kubectl = (args: string[], input?: string) =>
          run(k8sBin('kubectl'), ['--kubeconfig', cp.adminKubeconfig, ...args], input);
        const nodeName = 'bench-aws-node';
        await kubectl(
          ['apply', '-f', '-'],
          JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName } }),
        );
        await kubectl(['patch', 'node', nodeName, '--type=merge', '-p', '{"spec":{"taints":null}}']);
        await kubectl([
          'patch',
          'node',
          nodeName,
          '--subresource=status',
          '--type=merge',
          '-p',
          '{"status":{"capacity":{"pods":"29"},"allocatable":{"pods":"29"}}}',
        ]);
        const a = new AwsNode({
          vpc,
          node: awsVpcNode,
          cp,
          nodeName,
          cleanup,
          env: { IP_COOLDOWN_PERIOD: '0', WARM_IP_TARGET: '8', MINIMUM_IP_TARGET: '10' },
        });
        await a.start();
        aws = a;
        awsReason = '';
      } catch (e) {
        awsReason = `its aws-k8s-agent did not start here: ${(e as Error).message.split('\n')[0]}`;
      }
    }
    const times = kinds.map(() => ({ add: [] as number[], del: [] as number[] }));
    const awsTimes = { add: [] as number[], del: [] as number[] };
    let seq = 0;
    const pod = async () => {
      const n = ++seq; // taken before the await: concurrent callers must not share it
      const ns = `${prefix}-b${n}`;
      return { ns, path: await createNetns(ns, cleanup), id: `${prefix}c${n}`, n };
    };
    const call = (k: number, command: 'ADD' | 'DEL', p: { path: string; id: string; n: number }) =>
      execPlugin(
        kinds[k]!.bin,
        {
          command,
          containerId: p.id,
          netns: p.path,
          ifName: 'eth0',
          args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p${p.n}`,
        },
        kinds[k]!.conf,
        node.ns,
      );

    // warm-up (page cache, first iptables chain creation) — not measured
    for (let k = 0; k < kinds.length; k++) {
      for (let w = 0; w < 3; w++) {
        const p = await pod();
        const o = await call(k, 'ADD', p);
        if (o.code !== 0) throw new Error(`${kinds[k]!.name} warm-up ADD failed: ${JSON.stringify(o.out)}`);
        await call(k, 'DEL', p);
        await run('ip', ['netns', 'del', p.ns]);
      }
    }
    const logStart = readFileSync(oursLog, 'utf8').trim().split('\n').length;
    if (aws) {
      // warm-up of the AWS plugin too, not measured
      for (let w = 0; w < 3; w++) {
        const p = await pod();
        const o = await aws.cni('ADD', { name: `w${p.n}`, containerId: p.id, netns: p.path });
        if (o.code !== 0)
          throw new Error(`AWS plugin warm-up ADD failed: ${JSON.stringify(o.out)} ${o.stderr}`);
        await aws.cni('DEL', { name: `w${p.n}`, containerId: p.id, netns: p.path });
        await run('ip', ['netns', 'del', p.ns]);
      }
    }
    // One AWS plugin ADD+DEL on a fresh pod netns (its own node: the m5.large).
    const awsCycle = async (a: AwsNode) => {
      const p = await pod();
      const awsPod = { name: `a${p.n}`, containerId: p.id, netns: p.path };
      let o: Awaited<ReturnType<AwsNode['cni']>> | undefined;
      awsTimes.add.push(await timeIt(async () => (o = await a.cni('ADD', awsPod))));
      if (o?.code !== 0) throw new Error(`AWS plugin ADD failed: ${JSON.stringify(o?.out)} ${o?.stderr}`);
      let d: Awaited<ReturnType<AwsNode['cni']>> | undefined;
      awsTimes.del.push(await timeIt(async () => (d = await a.cni('DEL', awsPod))));
      if (d?.code !== 0) throw new Error(`AWS plugin DEL failed: ${JSON.stringify(d?.out)}`);
      await run('ip', ['netns', 'del', p.ns]);
    };
    // sequential; the order rotates (ours and ptp alternate, the AWS plugin first, between or last)
    for (let i = 0; i < N; i++) {
      const order = i % 2 === 0 ? [0, 1] : [1, 0];
      for (let slot = 0; slot <= order.length; slot++) {
        if (slot === i % 3) {
          if (aws) {
            try {
              await awsCycle(aws);
            } catch (e) {
              // Its failure must not cost the rest of the run: report it instead of its numbers.
              awsReason = `its ADD/DEL failed during the run after ${awsTimes.add.length} samples: ${(e as Error).message}`;
              awsTimes.add.length = 0;
              awsTimes.del.length = 0;
              aws = null;
            }
          }
        }
        const k = order[slot];
        if (k === undefined) continue;
        const p = await pod();
        let o: Awaited<ReturnType<typeof call>> | undefined;
        times[k]!.add.push(await timeIt(async () => (o = await call(k, 'ADD', p))));
        if (o?.code !== 0) throw new Error(`${kinds[k]!.name} ADD failed: ${JSON.stringify(o?.out)}`);
        let d: Awaited<ReturnType<typeof call>> | undefined;
        times[k]!.del.push(await timeIt(async () => (d = await call(k, 'DEL', p))));
        if (d?.code !== 0) throw new Error(`${kinds[k]!.name} DEL failed: ${JSON.stringify(d?.out)}`);
        await run('ip', ['netns', 'del', p.ns]);
      }
    }
    const sequentialLogLines = readFileSync(oursLog, 'utf8').trim().split('\n').length;
    // bursts: C concurrent ADDs per plugin on fresh netns, ROUNDS times, order alternating
    const burst: number[][] = kinds.map(() => []);
    for (let round = 0; round < ROUNDS; round++) {
      for (const k of round % 2 === 0 ? [0, 1] : [1, 0]) {
        if (k === 0) await freeFor(C + 2);
        const ps = await Promise.all(Array.from({ length: C }, () => pod()));
        let outcomes: Awaited<ReturnType<typeof call>>[] = [];
        burst[k]!.push(
          await timeIt(async () => (outcomes = await Promise.all(ps.map((p) => call(k, 'ADD', p))))),
        );
        const failed = outcomes.filter((o) => o.code !== 0);
        if (failed.length > 0)
          throw new Error(
            `${kinds[k]!.name}: ${failed.length} of ${C} concurrent ADDs failed: ${JSON.stringify(failed[0]?.out)}`,
          );
        await Promise.all(ps.map((p) => call(k, 'DEL', p)));
        for (const p of ps) await run('ip', ['netns', 'del', p.ns]);
      }
    }
    // what one exec costs: VERSION (no pod, no wiring), alternating executables
    const execs = [
      { name: 'vpc-cni shim (static Go; asks vpc-ipamd)', bin: shim, conf: ours as Record<string, unknown> },
      { name: 'vpc-cni-node (Node single executable; the fallback)', bin: nodePlugin, conf: ours },
      { name: 'ptp (Go)', bin: '/usr/lib/cni/ptp', conf: ptp },
      ...(existsSync(AWS_PLUGIN)
        ? [
            {
              name: 'AWS VPC CNI v1.23.2 routed-eni-cni-plugin (Go)',
              bin: AWS_PLUGIN,
              conf: { cniVersion: '1.0.0' },
            },
          ]
        : []),
    ];
    const execMs = execs.map(() => [] as number[]);
    for (let i = 0; i < VERSION_RUNS; i++) {
      for (let e = 0; e < execs.length; e++) {
        const x = execs[(e + i) % execs.length]!;
        let o: Awaited<ReturnType<typeof execPlugin>> | undefined;
        execMs[(e + i) % execs.length]!.push(
          await timeIt(async () => (o = await execPlugin(x.bin, { command: 'VERSION' }, x.conf, node.ns))),
        );
        if (o?.code !== 0) throw new Error(`${x.name} VERSION failed: ${JSON.stringify(o?.out)}`);
      }
    }
    const execRss: Array<number | null> = [];
    for (const x of execs) execRss.push(await versionRssKiB(x.bin, x.conf, node.ns));
    const ipSpawn: number[] = [];
    // What deleting a veth pair costs the kernel (what a DEL that deletes it waits for: ours with
    // IP_COOLDOWN_PERIOD=0, and ptp's; ours with a cooldown and the AWS plugin's leave the pair to the
    // runtime's netns deletion, which the kernel finishes in the background): one `ip` deleting a
    // pair made just before, against one `ip` that only reads, interleaved.
    const vethDel: number[] = [];
    for (let i = 0; i < 30; i++) {
      ipSpawn.push(await timeIt(() => run('ip', ['-n', node.ns, '-batch', '-'], 'link show dev lo\n')));
      const name = `vdelbench${i}`;
      await run('ip', ['-n', node.ns, 'link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
      vethDel.push(await timeIt(() => run('ip', ['-n', node.ns, '-batch', '-'], `link del dev ${name}\n`)));
    }
    const logLines = readFileSync(oursLog, 'utf8')
      .trim()
      .split('\n')
      .slice(logStart, sequentialLogLines) // sequential ADDs only: the bursts measure contention
      .map(
        (l) =>
          JSON.parse(l) as {
            msg: string;
            ms?: number;
            daemonMs?: number;
            linkMs?: number;
            wireMs?: number;
            wiredBy?: string;
            vethLeft?: boolean;
            via?: string;
          },
      );
    const inDaemon = logLines.filter((l) => l.via === 'daemon');
    const allocMs = inDaemon.filter((l) => l.msg === 'allocated').map((l) => l.daemonMs ?? 0);
    const done = inDaemon.filter((l) => l.msg === 'ADD done');
    const addInternal = done.map((l) => l.ms ?? 0);
    const linkDone = done.filter((l) => l.linkMs !== undefined).map((l) => l.linkMs!);
    const wireMs = done.map((l) => l.wireMs ?? Number.NaN);
    const byShim = done.filter((l) => l.wiredBy === 'shim').length;
    const allocatedAt = inDaemon.filter((l) => l.msg === 'allocated').map((l) => l.ms ?? 0);
    const delDone = inDaemon.filter((l) => l.msg === 'DEL done');
    const delByShim = delDone.filter((l) => l.wiredBy === 'shim').length;
    const delLeft = delDone.filter((l) => l.vethLeft === true).length;
    // Leak-free: every pod netns is gone by now; what the kernel or the sweep has not removed within
    // a few seconds would be a leak.
    const ourVeths = async () =>
      (await ipJson<{ ifname?: string }>(node.ns, 'link', 'show', 'type', 'veth')).filter((l) =>
        hostVethPattern([HOST_VETH_PREFIX]).test(l.ifname ?? ''),
      ).length;
    let vethsLeft = await ourVeths();
    for (let i = 0; i < 50 && vethsLeft > 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      vethsLeft = await ourVeths();
    }
    const viaFallback = logLines.filter((l) => l.via === 'plugin').length;

    const [o, r] = times as [{ add: number[]; del: number[] }, { add: number[]; del: number[] }];
    const ratio = (a: number, b: number) => (a / b).toFixed(2);
    const tailRow = (what: string, a: number[], b: number[]) => {
      const ta = tail(a);
      const tb = tail(b);
      return `| ${what} ${ta.label} (ms, ${a.length} samples) | ${fmt(ta.value)} | ${fmt(tb.value)} | ${ratio(ta.value, tb.value)} |`;
    };
    const [bo, br] = [median(burst[0]!), median(burst[1]!)];
    const a = awsTimes;
    const awsCell = (f: () => string) => (a.add.length > 0 ? f() : 'not measured');
    const awsTail = (xs: number[]) => awsCell(() => `${fmt(tail(xs).value)} (${tail(xs).label})`);
    const rows = [
      `| | ${kinds[0]!.name} | ${kinds[1]!.name} | ratio (ours / ptp) | AWS VPC CNI v1.23.2 (plugin + aws-k8s-agent) | ratio (ours / AWS) |`,
      '|---|---:|---:|---:|---:|---:|',
      `| ADD median (ms; ${N} samples each, AWS ${a.add.length}) | ${fmt(median(o.add))} | ${fmt(median(r.add))} | ${ratio(median(o.add), median(r.add))} | ${awsCell(() => fmt(median(a.add)))} | ${awsCell(() => ratio(median(o.add), median(a.add)))} |`,
      `${tailRow('ADD', o.add, r.add)} ${awsTail(a.add)} | |`,
      `| DEL median (ms) | ${fmt(median(o.del))} | ${fmt(median(r.del))} | ${ratio(median(o.del), median(r.del))} | ${awsCell(() => fmt(median(a.del)))} | ${awsCell(() => ratio(median(o.del), median(a.del)))} |`,
      `${tailRow('DEL', o.del, r.del)} ${awsTail(a.del)} | |`,
      `| ${C} concurrent ADDs, wall, median of ${ROUNDS} rounds (ms) | ${fmt(bo)} | ${fmt(br)} | ${ratio(bo, br)} | not measured (its node is an m5.large: 29 pods) | |`,
      `| ${C} concurrent ADDs, wall, max of ${ROUNDS} rounds (ms) | ${fmt(Math.max(...burst[0]!))} | ${fmt(Math.max(...burst[1]!))} | ${ratio(Math.max(...burst[0]!), Math.max(...burst[1]!))} | | |`,
      `| ${C} concurrent ADDs, every round in run order (ms) | ${burst[0]!.map((x) => fmt(x, 0)).join(', ')} | ${burst[1]!.map((x) => fmt(x, 0)).join(', ')} | | | |`,
    ];
    const execRows = execs.map(
      (x, i) =>
        `| ${x.name} | ${fmt(median(execMs[i]!))} | ${fmt(tail(execMs[i]!).value)} | ${execRss[i] === null ? 'n/a' : fmt(execRss[i]! / 1024)} |`,
    );
    const shimExec = median(execMs[0]!);
    const bareExec = median(execMs[2]!);
    const verdicts = [
      verdict(
        median(o.add) <= median(r.add),
        'ADD median no slower than ptp + host-local (ipMasq)',
        `${fmt(median(o.add))} vs ${fmt(median(r.add))} ms`,
      ),
      verdict(
        bo <= br,
        `${C} concurrent ADDs no slower than ptp's (median of ${ROUNDS} rounds)`,
        `${fmt(bo)} vs ${fmt(br)} ms`,
      ),
      verdict(
        median(o.del) <= median(r.del) * (1 + PAR),
        `DEL on par or better (within ${PAR * 100}% of ptp or faster)`,
        `${fmt(median(o.del))} vs ${fmt(median(r.del))} ms`,
      ),
      verdict(
        shimExec - bareExec < SHIM_EXEC_GOAL_MS,
        `the shim's own exec under ${SHIM_EXEC_GOAL_MS} ms (its VERSION round trip minus ptp's VERSION, both exec'd by \`ip netns exec\`)`,
        `${fmt(shimExec)} - ${fmt(bareExec)} = ${fmt(shimExec - bareExec)} ms`,
      ),
      a.add.length > 0
        ? verdict(
            median(o.add) <= median(a.add),
            'ADD median no slower than the real AWS VPC CNI (plugin + aws-k8s-agent)',
            `${fmt(median(o.add))} vs ${fmt(median(a.add))} ms`,
          )
        : `- ADD no slower than the real AWS VPC CNI plugin with its daemon: **not measured** (${awsReason}).`,
      a.del.length > 0
        ? verdict(
            median(o.del) <= median(a.del) * (1 + PAR),
            `DEL on par or better than the real AWS VPC CNI (within ${PAR * 100}% of it or faster)`,
            `${fmt(median(o.del))} vs ${fmt(median(a.del))} ms`,
          )
        : `- DEL on par with the real AWS VPC CNI plugin with its daemon: **not measured** (${awsReason}).`,
    ];
    const report = [
      '# CNI ADD/DEL benchmark: vpc-cni (shim) vs ptp + host-local (ipMasq)',
      '',
      `Command: \`npx node bench/cni-add-del.ts --iterations ${N} --concurrency ${C} --rounds ${ROUNDS} --write\` (as root, LocalStack running; part of \`npm run bench\`; written by the script).`,
      `Run: ${new Date().toISOString()}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}, kernel ${(await run('uname', ['-r'])).stdout.trim()}, load average at the end ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} (a shared machine: medians move with its load).`,
      `Each sample is one plugin execution as a runtime does it (\`ip netns exec <node> <plugin>\`, env + stdin) on a fresh pod netns; ${N} sequential ADD+DEL pairs per plugin, order alternating; then ${ROUNDS} rounds of ${C} concurrent ADDs per plugin, order alternating. vpc-cni is the static shim: vpc-ipamd (warm pool, IP_COOLDOWN_PERIOD=${OURS_COOLDOWN_S}: with a cooldown its DEL removes the pod's rules and host route and leaves the veth pair to the netns deletion, as the AWS plugin's DEL does; bundled and with its V8 flags, as the image runs it) runs the command and hands the pod's wiring (ADD) or host-side teardown (DEL) back as a plan, which the shim applies with netlink and reports; ptp uses host-local and installs its ipMasq iptables rules. After each DEL the pod's netns is deleted, as a runtime does, for every plugin (not timed). "p99" needs at least 1,000 samples, else the max is shown.`,
      '',
      '## Goals',
      '',
      ...verdicts,
      '',
      '## ADD / DEL',
      '',
      ...rows,
      '',
      '## One exec (CNI VERSION, median of ' + VERSION_RUNS + ' each, interleaved)',
      '',
      '| executable | exec ms (median) | exec ms (max) | peak RSS MiB (GNU time) |',
      '|---|---:|---:|---:|',
      ...execRows,
      '',
      '## Where a vpc-cni ADD goes (sequential ADDs)',
      '',
      '| component | time |',
      '|---|---:|',
      `| the shim's exec + one socket round trip (VERSION through the daemon, median) | ${fmt(shimExec)} ms |`,
      `| one \`ip -batch\` process (median) | ${fmt(median(ipSpawn))} ms |`,
      `| in the daemon: allocate, in-process, checkpoint durable (median) | ${fmt(median(allocMs))} ms |`,
      `| in the daemon: allocation answered, from the ADD's start (median) | ${fmt(median(allocatedAt))} ms |`,
      ...(linkDone.length > 0
        ? [
            `| in the daemon: link batch (veth pair, pod end moved) done, from the ADD's start; it runs while allocating (median) | ${fmt(median(linkDone))} ms |`,
          ]
        : []),
      `| wiring: the plan to the shim, applied there with netlink, reported back (median; ${byShim} of ${done.length} ADDs wired by the shim, the rest by \`ip -batch\` in the daemon) | ${fmt(median(wireMs))} ms |`,
      `| in the daemon: the whole ADD, from the shim's request to the final answer (median) | ${fmt(median(addInternal))} ms |`,
      `| ADDs/DELs that went to the Node fallback instead of the daemon | ${viaFallback} |`,
      '',
      '## Where a vpc-cni DEL goes (sequential DELs)',
      '',
      '| component | time |',
      '|---|---:|',
      `| the shim's exec + one socket round trip (VERSION through the daemon, median) | ${fmt(shimExec)} ms |`,
      `| teardown: the plan to the shim, applied there with netlink, reported back (median; ${delByShim} of ${delDone.length} DELs cleaned by the shim, the rest by \`ip\` in the daemon; ${delLeft} left the veth pair to the netns deletion) | ${fmt(median(delDone.map((l) => l.wireMs ?? Number.NaN)))} ms |`,
      `| in the daemon: the whole DEL, from the shim's request to the IP released (median) | ${fmt(median(delDone.map((l) => l.ms ?? Number.NaN)))} ms |`,
      `| the kernel deleting a veth pair, which a DEL leaving it does not wait for (one \`ip\` deleting a pair minus one that only reads, medians of 30 interleaved) | ${fmt(median(vethDel) - median(ipSpawn))} ms |`,
      `| host veths of ours still on the node after the run (every pod netns deleted; up to 10 s for the kernel and the sweep) | ${vethsLeft} |`,
      '',
      '## The real AWS VPC CNI',
      '',
      a.add.length > 0
        ? `v1.23.2 built from the Go module proxy (scripts/build-aws-vpc-cni.sh): aws-k8s-agent on the seed's m5.large node (its own netns and mount namespace, LocalStack's EC2 through test/helpers/ec2-proxy.ts, ec2-metadata-mock, a real kube-apiserver; IP_COOLDOWN_PERIOD=0: its DEL does the same work whatever the cooldown, its ipamd only marks the IP, and its m5.large's 29 IPs must not run out; WARM_IP_TARGET=8, MINIMUM_IP_TARGET=10), its routed-eni-cni-plugin exec'd per pod by \`nsenter\` into that node (test/helpers/aws-node.ts). Its pods are on another node than ours, so ADDs do not contend; the ${C}-pod bursts are not run for it (29 pods fit an m5.large).`
        : `ADD/DEL: not measured. ${awsReason[0]?.toUpperCase()}${awsReason.slice(1)}.`,
      '',
    ].join('\n');
    console.log(report);
    if (values.write) writeFileSync(join(import.meta.dirname, 'results', 'cni-add-del.md'), report);
  } finally {
    const errors = await cleanup.run();
    rmSync(dir, { recursive: true, force: true });
    if (errors.length > 0) console.error('cleanup errors:', errors);
  }
}

await main();
