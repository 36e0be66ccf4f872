// A burst of pods against a slow cloud (issue 11, goal 2), vpc-ipam beside the real AWS VPC CNI
// v1.23.2 in one run, each on a fresh instance of the local VPC (see bench/README.md, "Burst"):
//  - every EC2 call of both daemons goes through an Ec2Proxy that delays it by a per-action
//    log-normal latency (medians/p99s in LATENCY below), and counts calls by action;
//  - a newly attached ENI becomes usable (appears in the node and in IMDS) ATTACH_TO_USABLE_MS
//    after EC2 reports it attached; IMDS is refreshed once a second (it lags EC2);
//  - N pods arrive at once (ADDs `--concurrency` at a time, as a kubelet's parallel pod starts),
//    each retried 1 s after "try again later" like the kubelet; time-to-address is from the first
//    ADD to the pod's successful ADD;
//  - after SETTLE_MS with no new pod, the addresses held but not assigned are counted.
//
//   node bench/burst.ts [--runs m5.large:30,m5.4xlarge:110] [--concurrency 16] [--write [--out F]]
// Root; LocalStack on VPC_IPAM_EC2_ENDPOINT; the tools scripts/setup.sh installs.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type ControlPlane, startControlPlane } from '../cluster/control-plane.ts';
import { k8sBin } from '../cluster/proc.ts';
import type { PoolStatus } from '../src/ipam-daemon/api-types.ts';
import { AwsNode } from '../test/helpers/aws-node.ts';
import { execPlugin, vpcCniConfig } from '../test/helpers/cni-runtime.ts';
import { Ec2Proxy } from '../test/helpers/ec2-proxy.ts';
import { daemonGet, LocalVpc } from '../test/helpers/local-vpc.ts';
import { LocalStackCluster } from '../test/helpers/localstack.ts';
import { Cleanup, createNetns, run, runPrefix } from '../test/helpers/netns.ts';
import { ensurePluginBuilt } from '../test/helpers/plugin-binary.ts';
import { fmt, percentile, tail } from './stats.ts';

/** [median ms, p99 ms] per EC2 action; anything else gets DEFAULT_LATENCY. See bench/README.md. */
const LATENCY: Record<string, [number, number]> = {
  DescribeNetworkInterfaces: [150, 600],
  DescribeInstances: [150, 600],
  DescribeInstanceTypes: [150, 600],
  DescribeSubnets: [150, 600],
  DescribeVpcs: [150, 600],
  AssignPrivateIpAddresses: [300, 1200],
  UnassignPrivateIpAddresses: [300, 1200],
  CreateNetworkInterface: [500, 2000],
  AttachNetworkInterface: [400, 1500],
  DetachNetworkInterface: [400, 1500],
  DeleteNetworkInterface: [300, 1200],
  ModifyNetworkInterfaceAttribute: [200, 800],
  CreateTags: [150, 600],
};
const DEFAULT_LATENCY: [number, number] = [150, 600];
const ATTACH_TO_USABLE_MS = 5000;
const IMDS_REFRESH_MS = 1000;
const SETTLE_MS = 20_000;
/** A pod still without an address this long after the burst began counts as failed (an m5.large
 * holds 27 pod IPs, so 3 of 30 pods can never get one, with either engine). */
const GIVE_UP_MS = 45_000;

/** A log-normal sample with the given median and 99th percentile (z(0.99) = 2.326). */
function sample([median, p99]: [number, number]): number {
  const sigma = Math.log(p99 / median) / 2.326;
  const u = Math.random() || 1e-9;
  const v = Math.random();
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  return median * Math.exp(sigma * z);
}
const latencyMs = (action: string) => sample(LATENCY[action] ?? DEFAULT_LATENCY);

type Engine = 'vpc-ipam' | 'aws-vpc-cni';
interface Config {
  name: string;
  env: Record<string, string>;
}
const CONFIGS: Config[] = [
  { name: 'defaults', env: {} },
  { name: 'WARM_IP_TARGET=5 MINIMUM_IP_TARGET=10', env: { WARM_IP_TARGET: '5', MINIMUM_IP_TARGET: '10' } },
];

interface RunResult {
  engine: Engine;
  type: string;
  pods: number;
  config: string;
  ttaMs: number[];
  tryAgain: number;
  failed: number;
  calls: Record<string, number>;
  idle: number;
  totalIps: number;
}

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: 'm5.large:30,m5.4xlarge:110' },
    concurrency: { type: 'string', default: '16' },
    write: { type: 'boolean', default: false },
    /** Results file name in bench/results/ (default burst.md). */
    out: { type: 'string', default: 'burst.md' },
  },
});
const concurrency = Number(values.concurrency);

async function until<T>(what: string, f: () => Promise<T | undefined>, withinMs: number): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Total and assigned IPs as the engine's daemon reports them. */
type PoolCount = () => Promise<{ total: number; assigned: number }>;

/** Waits until the pool's size stops changing for 3 s (the start-up fill is not part of the burst). */
async function steady(count: PoolCount, withinMs = 90_000): Promise<void> {
  let last = -1;
  let since = Date.now();
  await until(
    'pool steady',
    async () => {
      const { total } = await count();
      if (total !== last) {
        last = total;
        since = Date.now();
      }
      return total > 0 && Date.now() - since >= 3000 ? true : undefined;
    },
    withinMs,
  );
}

async function oneRun(
  cp: ControlPlane,
  engine: Engine,
  type: string,
  pods: number,
  config: Config,
  plugin: string,
): Promise<RunResult> {
  const cleanup = new Cleanup();
  const cluster = new LocalStackCluster('burst');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-burst-'));
  try {
    const seed = await cluster.seed();
    const vpc = new LocalVpc(seed, runPrefix(), dir, cleanup);
    await vpc.build();
    const node = await vpc.addNode(seed.instances.find((i) => i.type === type)!);
    vpc.attachToUsableMs = ATTACH_TO_USABLE_MS;
    vpc.startSyncLoop();
    let proxy: Ec2Proxy;
    let add: (pod: { name: string; containerId: string; netns: string }) => Promise<number>;
    let count: PoolCount;
    if (engine === 'vpc-ipam') {
      proxy = new Ec2Proxy({ target: seed.endpoint, region: seed.region, latencyMs });
      await proxy.start();
      cleanup.add('proxy', () => proxy.close());
      await vpc.startDaemon(
        node,
        {
          CLUSTER_NAME: seed.clusterName,
          VPC_IPAM_EC2_ENDPOINT: proxy.url,
          VPC_IPAM_RECONCILE_INTERVAL: '10',
          ...config.env,
        },
        undefined,
        [proxy.port],
      );
      count = async () => {
        const p = (await daemonGet(node.socketPath, '/v1/pool')).body as PoolStatus;
        return { total: p.total, assigned: p.assigned };
      };
      add = async (pod) =>
        (
          await execPlugin(
            plugin,
            {
              command: 'ADD',
              containerId: pod.containerId,
              netns: pod.netns,
              ifName: 'eth0',
              args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod.name}`,
            },
            vpcCniConfig(node),
            node.ns,
          )
        ).code;
    } else {
      const nodeName = `burst-${vpc.prefix}`;
      const kubectl = (args: string[], input?: string) =>
        run(k8sBin('kubectl'), ['--kubeconfig', cp.adminKubeconfig, ...args], input);
      await kubectl(
        ['apply', '-f', '-'],
        JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName } }),
      );
      await kubectl(['patch', 'node', nodeName, '--type=merge', '-p', '{"spec":{"taints":null}}']);
      const maxPods = type === 'm5.large' ? 29 : 234;
      await kubectl([
        'patch',
        'node',
        nodeName,
        '--subresource=status',
        '--type=merge',
        '-p',
        JSON.stringify({
          status: { capacity: { pods: String(maxPods) }, allocatable: { pods: String(maxPods) } },
        }),
      ]);
      const aws = new AwsNode({
        vpc,
        node,
        cp,
        nodeName,
        cleanup,
        env: { AWS_VPC_K8S_CNI_LOGLEVEL: 'INFO', ...config.env },
        latencyMs,
        imdsRefreshMs: IMDS_REFRESH_MS,
        attachToUsableMs: ATTACH_TO_USABLE_MS,
      });
      await aws.start();
      proxy = aws.ec2;
      count = async () => {
        const enis = [...(await aws.enis()).values()];
        return {
          total: enis.reduce((n, e) => n + e.ips.length, 0),
          assigned: enis.reduce((n, e) => n + e.assigned.length, 0),
        };
      };
      add = async (pod) => (await aws.cni('ADD', pod)).code;
    }
    await steady(count);
    proxy.calls.clear();
    // The burst: every pod arrives at t0; `concurrency` ADDs run at a time, each retried 1 s
    // after a failure ("try again later") until GIVE_UP_MS.
    const queue = Array.from({ length: pods }, (_, i) => i);
    const tta: number[] = [];
    let tryAgain = 0;
    let failed = 0;
    const t0 = performance.now();
    const worker = async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const name = `b${i}`;
        const netns = await createNetns(`${vpc.prefix}-${name}`, cleanup);
        const pod = { name, containerId: `burst${i}${'0'.repeat(20)}`, netns };
        for (;;) {
          if ((await add(pod)) === 0) {
            tta.push(performance.now() - t0);
            break;
          }
          if (performance.now() - t0 > GIVE_UP_MS) {
            failed++;
            break;
          }
          tryAgain++;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, pods) }, worker));
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const { total, assigned } = await count();
    return {
      engine,
      type,
      pods,
      config: config.name,
      ttaMs: tta,
      tryAgain,
      failed,
      calls: Object.fromEntries(proxy.calls),
      idle: total - assigned,
      totalIps: total,
    };
  } finally {
    const problems = await cleanup.run();
    for (const p of problems) process.stderr.write(`cleanup: ${p}\n`);
    await cluster.delete();
    rmSync(dir, { recursive: true, force: true });
  }
}

function mutating(calls: Record<string, number>): number {
  return Object.entries(calls)
    .filter(([a]) => !a.startsWith('Describe'))
    .reduce((n, [, c]) => n + c, 0);
}
const all = (calls: Record<string, number>) => Object.values(calls).reduce((n, c) => n + c, 0);

async function main(): Promise<void> {
  const plugin = await ensurePluginBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'vpc-burst-cp-'));
  const cp = await startControlPlane({ dir });
  const results: RunResult[] = [];
  try {
    const runs = String(values.runs)
      .split(',')
      .map((r) => r.split(':') as [string, string]);
    for (const [type, n] of runs) {
      for (const config of CONFIGS) {
        // Alternate which engine goes first so neither always runs on the warmer machine.
        const order: Engine[] =
          results.length % 4 === 0 ? ['vpc-ipam', 'aws-vpc-cni'] : ['aws-vpc-cni', 'vpc-ipam'];
        for (const engine of order) {
          process.stderr.write(`[burst] ${engine} ${type} ${n} pods, ${config.name}\n`);
          const r = await oneRun(cp, engine, type, Number(n), config, plugin);
          process.stderr.write(
            `[burst]   p50 ${fmt(percentile(r.ttaMs, 50) / 1000, 2)} s, max ${fmt(Math.max(...r.ttaMs) / 1000, 2)} s, try-again ${r.tryAgain}, EC2 ${all(r.calls)}, idle ${r.idle}\n`,
          );
          results.push(r);
        }
      }
    }
  } finally {
    await cp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const md = report(results);
  process.stdout.write(md);
  if (values.write) writeFileSync(join(import.meta.dirname, 'results', String(values.out)), md);
}

function report(results: RunResult[]): string {
  const s = (ms: number) => fmt(ms / 1000, 2);
  const lines = [
    '# Burst of pods against a slow cloud: vpc-ipam vs the AWS VPC CNI v1.23.2',
    '',
    `Written by \`node bench/burst.ts --write\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} vCPUs, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(
        ' / ',
      )} at the end (the machine is shared; compare the two engines within a row pair, not across runs). Latency model and method: [bench/README.md](../README.md#burst).`,
    '',
    '| instance | pods | config | engine | time-to-address p50 | p99 / max | try again later | failed | EC2 calls (mutating) | idle IPs after settling |',
    '|---|---:|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const t = tail(r.ttaMs);
    const tailText = t.label === 'p99' ? `${s(t.value)} / ${s(Math.max(...r.ttaMs))}` : `max ${s(t.value)}`;
    lines.push(
      `| ${r.type} | ${r.pods} | ${r.config} | ${r.engine} | ${s(percentile(r.ttaMs, 50))} s | ${tailText} s | ${r.tryAgain} | ${r.failed} | ${all(r.calls)} (${mutating(r.calls)}) | ${r.idle} of ${r.totalIps} |`,
    );
  }
  lines.push('', '## EC2 calls by action (burst + settling)', '');
  for (const r of results) {
    const calls = Object.entries(r.calls)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([a, c]) => `${a} ${c}`)
      .join(', ');
    lines.push(`- ${r.type} ${r.pods} pods, ${r.config}, ${r.engine}: ${calls || 'none'}`);
  }
  lines.push(
    '',
    "## Verdicts (goal: p99 time-to-address at most half the peer's, at equal or fewer idle IPs, with fewer EC2 calls)",
    '',
  );
  for (let i = 0; i < results.length; i += 2) {
    const pair = results.slice(i, i + 2);
    const ours = pair.find((r) => r.engine === 'vpc-ipam');
    const peer = pair.find((r) => r.engine === 'aws-vpc-cni');
    if (!ours || !peer) continue;
    // Fewer than 1,000 samples: the honest tail is the maximum (bench/stats.ts).
    const tailOf = (r: RunResult) => tail(r.ttaMs).value;
    const label = tail(ours.ttaMs).label;
    const ratio = tailOf(ours) / tailOf(peer);
    const checks = [
      [
        `${label} ${s(tailOf(ours))} s vs ${s(tailOf(peer))} s (ratio ${fmt(ratio, 2)}, goal <= 0.5)`,
        ratio <= 0.5,
      ],
      [`idle ${ours.idle} vs ${peer.idle} (goal <=)`, ours.idle <= peer.idle],
      [`EC2 calls ${all(ours.calls)} vs ${all(peer.calls)} (goal <)`, all(ours.calls) < all(peer.calls)],
      [`pods without an address ${ours.failed} vs ${peer.failed} (goal <=)`, ours.failed <= peer.failed],
    ] as const;
    const met = checks.every(([, ok]) => ok);
    lines.push(
      `- ${ours.type} ${ours.pods} pods, ${ours.config}: **${met ? 'met' : 'not met'}** — ${checks.map(([t, ok]) => `${t}: ${ok ? 'yes' : 'no'}`).join('; ')}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

await main();
process.exit(0);
