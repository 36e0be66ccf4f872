// A burst of pods against a slow cloud (issue 11, goal 2), vpc-ipam beside the real AWS VPC CNI
// v1.23.2 in one run, each on a fresh instance of the local VPC (see bench/README.md, "Burst"):
//  - every EC2 call of both daemons goes through an Ec2Proxy that delays it by a per-action
//    log-normal latency (medians/p99s in LATENCY below), and counts calls by action;
//  - a newly attached ENI becomes usable (appears in the node and in IMDS) ATTACH_TO_USABLE_MS
//    after EC2 reports it attached; IMDS is refreshed once a second (it lags EC2);
//  - N pods arrive at once (ADDs `--concurrency` at a time, as a kubelet's parallel pod starts),
//    each retried 1 s after "try again later" like the kubelet; time-to-address is from the first
//    ADD to the pod's successful ADD;
//  - pods beyond the node's pod IPs stop once the node is full; a pod it can hold still without an
//    address after GIVE_UP_MS did not finish (its engine's tail is then a bound);
//  - SETTLE_MS after the last pod got its address (past vpc-ipam's shrink delay), the addresses
//    held but not assigned are counted; EC2 calls are counted from the first ADD until then.
//
//   node bench/burst.ts [--runs m5.large:30,m5.4xlarge:110] [--concurrency 16] [--write [--out F]]
// Root; LocalStack on VPC_IPAM_EC2_ENDPOINT; the tools scripts/setup.sh installs.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
/** Idle IPs are counted this long after the burst is served: past vpc-ipam's default shrink delay
 * (VPC_IPAM_SHRINK_DELAY 60 s) plus a reconcile tick, and the AWS VPC CNI's 30 s IP cooldown. */
const SETTLE_MS = 75_000;
/** A pod the node can hold that still has no address this long after the burst began did not
 * finish: its engine's tail is reported as "> GIVE_UP_MS" (a bound, not a measurement). */
const GIVE_UP_MS = 180_000;
/** Pod IPs per instance type: interfaces x (IPs per interface - 1). Pods beyond this can never get
 * an address on the node, with either engine; they stop retrying once the node is full. */
const POD_IPS: Record<string, number> = { 'm5.large': 3 * 9, 'm5.4xlarge': 8 * 29 };

/** A log-normal sample with the given median and 99th percentile (z(0.99) = 2.326). */
function sample([median, p99]: [number, number]): number {
  const sigma = Math.log(p99 / median) / 2.326;
  const u = Math.random() || 1e-9;
  const v = Math.random();
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  return median * Math.exp(sigma * z);
}
/** Every EC2 call of the run in progress: [performance.now() at arrival, action, delay ms]. */
let callLog: [number, string, number][] = [];
const latencyMs = (action: string) => {
  const ms = sample(LATENCY[action] ?? DEFAULT_LATENCY);
  callLog.push([performance.now(), action, ms]);
  return ms;
};

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
  /** Pods the node can hold that had no address after GIVE_UP_MS. */
  failed: number;
  /** Pods beyond the node's pod IPs (never servable). */
  beyond: number;
  calls: Record<string, number>;
  idle: number;
  totalIps: number;
}

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: 'm5.large:30,m5.4xlarge:110' },
    concurrency: { type: 'string', default: '16' },
    write: { type: 'boolean', default: false },
    /** Print each run's EC2 call timeline and pod time-to-address list to stderr. */
    timeline: { type: 'boolean', default: false },
    /** Engines to run (default both; one alone gives no verdict, for investigating). */
    engines: { type: 'string', default: 'vpc-ipam,aws-vpc-cni' },
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
  cp: ControlPlane | null,
  engine: Engine,
  type: string,
  pods: number,
  config: Config,
  plugin: string,
): Promise<RunResult> {
  const cleanup = new Cleanup();
  const cluster = new LocalStackCluster('burst');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-burst-'));
  let daemonLog = '';
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
      // The proxy picks free addresses for both engines (LocalStack's own picks collide), so
      // vpc-ipam asks by count as against EC2, and neither engine's calls include the picking.
      proxy = new Ec2Proxy({ target: seed.endpoint, region: seed.region, latencyMs, pickAddresses: true });
      await proxy.start();
      cleanup.add('proxy', () => proxy.close());
      daemonLog = node.daemonLog;
      await vpc.startDaemon(
        node,
        {
          CLUSTER_NAME: seed.clusterName,
          VPC_IPAM_EC2_ENDPOINT: proxy.url,
          VPC_IPAM_RECONCILE_INTERVAL: '10',
          VPC_IPAM_AWS_PICK_ADDRESSES: 'false',
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
      if (!cp) throw new Error('the AWS VPC CNI needs the control plane');
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
    callLog = [];
    // The burst: every pod arrives at t0; `concurrency` ADDs run at a time, each retried 1 s
    // after a failure ("try again later") until the node is full or GIVE_UP_MS.
    const queue = Array.from({ length: pods }, (_, i) => i);
    const servable = Math.min(pods, POD_IPS[type] ?? pods);
    const tta: number[] = [];
    let tryAgain = 0;
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
          // The node is full (the rest can never be served) or this pod did not finish.
          if (tta.length >= servable || performance.now() - t0 > GIVE_UP_MS) break;
          tryAgain++;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, pods) }, worker));
    const beyond = pods - servable;
    const failed = Math.max(0, servable - tta.length);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const { total, assigned } = await count();
    if (values.timeline) {
      const at = (t: number) => `${((t - t0) / 1000).toFixed(2)}`;
      process.stderr.write(
        `[timeline] ${engine}: EC2 ${callLog.map(([t, a, d]) => `${at(t)}+${(d / 1000).toFixed(2)} ${a}`).join(', ')}\n`,
      );
      process.stderr.write(
        `[timeline] ${engine}: pods ${[...tta]
          .sort((a, b) => a - b)
          .map((t) => (t / 1000).toFixed(1))
          .join(' ')}\n`,
      );
    }
    return {
      engine,
      type,
      pods,
      config: config.name,
      ttaMs: tta,
      tryAgain,
      failed,
      beyond,
      calls: Object.fromEntries(proxy.calls),
      idle: total - assigned,
      totalIps: total,
    };
  } finally {
    if (values.timeline && daemonLog) {
      const keep = join(tmpdir(), `burst-${engine}-${type}-${config.name.replace(/\W+/g, '_')}.log`);
      copyFileSync(daemonLog, keep);
      process.stderr.write(`[timeline] daemon log kept: ${keep}\n`);
    }
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
  const engines = String(values.engines).split(',');
  // Only the AWS VPC CNI needs a kube-apiserver.
  const cp = engines.includes('aws-vpc-cni') ? await startControlPlane({ dir }) : null;
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
        for (const engine of order.filter((e) => engines.includes(e))) {
          process.stderr.write(`[burst] ${engine} ${type} ${n} pods, ${config.name}\n`);
          const r = await oneRun(cp, engine, type, Number(n), config, plugin);
          process.stderr.write(
            `[burst]   p50 ${secs(percentile(samples(r), 50))}, max ${secs(Math.max(...samples(r)))}, did not finish ${r.failed}, try-again ${r.tryAgain}, EC2 ${all(r.calls)}, idle ${r.idle} of ${r.totalIps}\n`,
          );
          results.push(r);
        }
      }
    }
  } finally {
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const md = report(results);
  process.stdout.write(md);
  if (values.write) writeFileSync(join(import.meta.dirname, 'results', String(values.out)), md);
}

/** Time-to-address samples of the pods the node can hold; one that never got one is +Infinity. */
const samples = (r: RunResult) => [...r.ttaMs, ...Array<number>(r.failed).fill(Number.POSITIVE_INFINITY)];

/** Seconds, or the bound for a pod that did not finish. */
const secs = (ms: number) => (Number.isFinite(ms) ? `${fmt(ms / 1000, 2)} s` : `> ${GIVE_UP_MS / 1000} s`);

function report(results: RunResult[]): string {
  const s = secs;
  const lines = [
    '# Burst of pods against a slow cloud: vpc-ipam vs the AWS VPC CNI v1.23.2',
    '',
    `Written by \`node bench/burst.ts ${process.argv.slice(2).join(' ')}\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} vCPUs, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(
        ' / ',
      )} at the end (the machine is shared; compare the two engines within a row pair, not across runs). Latency model and method: [bench/README.md](../README.md#burst).`,
    '',
    `Time-to-address runs from the first ADD; a pod the node can hold that had no address ${GIVE_UP_MS / 1000} s after it did not finish (its engine's tail is then "> ${GIVE_UP_MS / 1000} s", a bound). Pods beyond the node's pod IPs can never get one and are not in the times. EC2 calls and idle IPs are counted from the first ADD until ${SETTLE_MS / 1000} s after the last pod got its address (past vpc-ipam's 60 s shrink delay and the AWS VPC CNI's 30 s IP cooldown).`,
    '',
    '| instance | pods | config | engine | time-to-address p50 | p99 / max | try again later | did not finish | beyond the node | EC2 calls (mutating) | idle IPs after settling |',
    '|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const t = tail(samples(r));
    lines.push(
      `| ${r.type} | ${r.pods} | ${r.config} | ${r.engine} | ${s(percentile(samples(r), 50))} | ${t.label} ${s(t.value)} | ${r.tryAgain} | ${r.failed} | ${r.beyond} | ${all(r.calls)} (${mutating(r.calls)}) | ${r.idle} of ${r.totalIps} |`,
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
    // Fewer than 1,000 samples: the honest tail is the maximum (bench/stats.ts). A peer that did
    // not finish has a tail of at least GIVE_UP_MS: the ratio is then an upper bound.
    const ourTail = tail(samples(ours));
    const peerTail = tail(samples(peer));
    const peerBound = Number.isFinite(peerTail.value) ? peerTail.value : GIVE_UP_MS;
    const ratio = ourTail.value / peerBound;
    const ratioText = Number.isFinite(peerTail.value) ? fmt(ratio, 2) : `< ${fmt(ratio, 2)}`;
    const checks = [
      [
        `${ourTail.label} ${s(ourTail.value)} vs ${s(peerTail.value)} (ratio ${ratioText}, goal <= 0.5)`,
        ratio <= 0.5,
      ],
      [`idle ${ours.idle} vs ${peer.idle} (goal <=)`, ours.idle <= peer.idle],
      [`EC2 calls ${all(ours.calls)} vs ${all(peer.calls)} (goal <)`, all(ours.calls) < all(peer.calls)],
      [`pods that did not finish ${ours.failed} vs ${peer.failed} (goal <=)`, ours.failed <= peer.failed],
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
