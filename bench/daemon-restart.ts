// vpc-ipamd kill -9 to ready again: what pods wait for while a node's daemon restarts (the chaos
// soak kills it 100+ times). One node of the local VPC (LocalStack + network namespaces, node setup
// included), the daemon kill -9'd and restarted, its two ways of running side by side in one run,
// restarts interleaved: the bundle with the chart's V8 flags (what the image runs), the same with
// the Kubernetes client loaded too (what every start loaded before it became a lazy import, and
// what a daemon talking to the API still loads), and the TypeScript sources through Node's type
// stripper (what the soak ran until it ran the bundle). For
// each restart: wall time from spawn to /readyz 200 (moves with the machine's load) and the CPU the
// daemon process used by then (utime + stime from /proc: what load cannot inflate).
//
//   sudo npx node bench/daemon-restart.ts [--restarts 8] [--write]
//
// Needs root and LocalStack (VPC_IPAM_EC2_ENDPOINT). --write stores bench/results/daemon-restart.md.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DAEMON_NODE_FLAGS } from '../src/ipam-daemon/node-flags.ts';
import { daemonGet, LocalVpc, type VpcNode } from '../test/helpers/local-vpc.ts';
import {
  deleteCluster,
  requireLocalStack,
  seedCluster,
  uniqueClusterName,
} from '../test/helpers/localstack.ts';
import { Cleanup, requireNetnsPrivileges, runPrefix } from '../test/helpers/netns.ts';
import { ensurePluginBuilt } from '../test/helpers/plugin-binary.ts';
import { fmt, median, verdict } from './stats.ts';

const { values } = parseArgs({
  options: {
    restarts: { type: 'string', default: '8' },
    write: { type: 'boolean', default: false },
  },
});
const N = Number(values.restarts);
if (!Number.isInteger(N) || N < 1)
  throw new Error(`--restarts must be an integer >= 1, got ${values.restarts}`);
const CLK_TCK = 100; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const WAYS = [
  {
    name: 'bundle (dist/vpc-ipamd, chart flags)',
    args: [...DAEMON_NODE_FLAGS, 'dist/vpc-ipamd/vpc-ipamd.mjs'],
  },
  // What every start loaded before the client became a lazy import, and what a daemon with
  // NODE_NAME (in a cluster) still loads.
  {
    name: 'bundle + the Kubernetes client loaded',
    args: [...DAEMON_NODE_FLAGS, '--import', '@kubernetes/client-node', 'dist/vpc-ipamd/vpc-ipamd.mjs'],
  },
  { name: 'sources (src/ipam-daemon/main.ts)', args: ['src/ipam-daemon/main.ts'] },
] as const;

/** utime + stime of a live process, ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

async function restart(vpc: LocalVpc, node: VpcNode, args: readonly string[]) {
  const d = node.daemon;
  if (d && d.exitCode === null && d.signalCode === null) {
    const gone = new Promise((r) => d.once('exit', r));
    d.kill('SIGKILL');
    await gone;
  }
  node.daemonArgs = [...args];
  const t0 = performance.now();
  const child = await vpc.respawnDaemon(node, 0);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`vpc-ipamd exited ${child.exitCode}; see ${node.daemonLog}`);
    const r = await daemonGet(node.socketPath, '/readyz').catch(() => undefined);
    if (r?.status === 200) break;
    await sleep(20);
  }
  const wall = performance.now() - t0;
  // `ip netns exec` execs node in place: the child's pid is the daemon's.
  return { wall, cpu: cpuMs(child.pid ?? 0) };
}

async function main(): Promise<void> {
  requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
  await requireLocalStack();
  await ensurePluginBuilt({ daemon: true });
  const cleanup = new Cleanup();
  const clusterName = uniqueClusterName('restart');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-restart-'));
  const samples = new Map<string, { wall: number[]; cpu: number[] }>(
    WAYS.map((w) => [w.name, { wall: [], cpu: [] }]),
  );
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  try {
    const seed = await seedCluster({ clusterName });
    cleanup.add('cluster', () => deleteCluster({ clusterName }));
    const vpc = new LocalVpc(seed, runPrefix(), dir, cleanup);
    await vpc.build();
    const node = await vpc.addNode(seed.instances.find((i) => i.type === 'm5.4xlarge')!);
    vpc.startSyncLoop(300);
    // The soak's pool settings; the first start (no checkpoint) is not measured.
    await vpc.startDaemon(node, { WARM_IP_TARGET: '4', LOG_LEVEL: 'warn' }, WAYS[0].args);
    for (let i = 0; i < N; i++) {
      for (const w of i % 2 === 0 ? WAYS : [...WAYS].reverse()) {
        await sleep(1000); // let the pool loop's first round run, as between two soak kills
        const s = await restart(vpc, node, w.args);
        samples.get(w.name)!.wall.push(s.wall);
        samples.get(w.name)!.cpu.push(s.cpu);
        process.stderr.write(`${w.name}: ${fmt(s.wall, 0)} ms wall, ${fmt(s.cpu, 0)} ms CPU\n`);
      }
    }
  } finally {
    for (const e of await cleanup.run()) process.stderr.write(`cleanup: ${e}\n`);
    rmSync(dir, { recursive: true, force: true });
  }
  const loadAfter = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  type S = { wall: number[]; cpu: number[] };
  const [bundle, withK8s, sources] = WAYS.map((w) => samples.get(w.name)!) as [S, S, S];
  const rows = WAYS.map((w) => {
    const s = samples.get(w.name)!;
    return `| ${w.name} | ${s.wall.length} | ${fmt(median(s.wall), 0)} | ${fmt(Math.max(...s.wall), 0)} | ${fmt(median(s.cpu), 0)} |`;
  });
  const cpuRatio = median(bundle.cpu) / median(withK8s.cpu);
  const report = [
    '# vpc-ipamd restart: kill -9 to ready',
    '',
    `Command: \`npx node bench/daemon-restart.ts --restarts ${N} --write\` (as root, LocalStack running; part of \`npm run bench\`; written by the script).`,
    `Run: ${new Date().toISOString()}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}, load average before ${loadBefore}, after ${loadAfter} (a shared machine: wall times move with its load, the CPU column much less).`,
    '',
    'One m5.4xlarge node of the local VPC (LocalStack, IMDSv2 fake, node setup in its network namespace), a checkpoint from the previous run, no pods. Each restart: kill -9, spawn, poll `/readyz` every 20 ms. "CPU to ready" is the daemon process\'s utime + stime at that moment. The two ways alternate, so both see the same load.',
    '',
    '## Goal',
    '',
    verdict(
      cpuRatio <= 0.8,
      'without the Kubernetes API, a restart costs at most 4/5 of the CPU it cost with the client loaded',
      `median CPU to ready ${fmt(median(bundle.cpu), 0)} vs ${fmt(median(withK8s.cpu), 0)} ms, ratio ${fmt(cpuRatio, 2)}`,
    ),
    verdict(
      median(bundle.cpu) <= median(sources.cpu),
      'the bundle the image runs starts on no more CPU than the sources',
      `${fmt(median(bundle.cpu), 0)} vs ${fmt(median(sources.cpu), 0)} ms`,
    ),
    '',
    '| way | restarts | wall to ready, median ms | max ms | CPU to ready, median ms |',
    '|---|---:|---:|---:|---:|',
    ...rows,
    '',
    `Ratios, bundle / bundle with the Kubernetes client: wall ${fmt(median(bundle.wall) / median(withK8s.wall), 2)}, CPU ${fmt(cpuRatio, 2)}; bundle / sources: wall ${fmt(median(bundle.wall) / median(sources.wall), 2)}, CPU ${fmt(median(bundle.cpu) / median(sources.cpu), 2)}.`,
    '',
    'Where the time goes (traced while finding it, see docs/reliability.md "Restart to ready"): loading JavaScript is most of the CPU; the cloud calls (IMDS, three describes) and node setup (its `ip`/`iptables` processes are not in the CPU column) take a few hundred ms at low load. At load 15-30 on 2 cores each process gets a small share of a core: the wall column is many times the CPU column.',
    '',
  ].join('\n');
  process.stdout.write(report);
  if (values.write) writeFileSync(join(import.meta.dirname, 'results', 'daemon-restart.md'), report);
}

await main();
