// The chaos soak: ADD/DEL cycles through the built plugin (dist/vpc-cni, exactly what a runtime
// calls) on two nodes of the local VPC (test/helpers/local-vpc.ts: LocalStack + network
// namespaces), while
//   - the daemons are kill -9'd at random moments (many while ADDs are in flight) and restarted;
//   - plugin processes are kill -9'd in the middle of ADDs;
//   - a share of the daemons' EC2 calls fail through the fault proxy (test/fakes/fault-proxy.ts):
//     answer dropped after the change, answer delayed, 5xx after the change, error before it
//     (which, on AttachNetworkInterface, fails only the attach step of create-then-attach), or
//     the request held before it reaches LocalStack (applied late: after a kill, after the restart).
// Invariants, checked continuously and at the end (each failure is a counted violation):
//   ip-on-two-pods       an ADD returned an address another live pod holds;
//   pod-ip-not-on-eni    a live pod's address is not, in LocalStack, on an ENI of its node;
//   del-failed           a DEL never succeeded;
// and after settling (faults off, every pod deleted, CNI GC with no valid attachment):
//   allocations-left     the daemon (or its checkpoint file) still holds an allocation;
//   free-beyond-warm     a node keeps more free addresses than its warm target;
//   unknown-to-daemon    an ENI or address LocalStack has on the node that the daemon's pool does
//                        not know (the checkpoint holds allocations only; the pool is rebuilt from
//                        it and the cloud), or the reverse;
//   leaked-eni           a detached ENI of this cluster in LocalStack.
// runSoak() returns the counts; scripts/chaos-soak.ts writes them to docs/reliability.md and the
// e2e suite runs a short soak. Needs root, iproute2, iptables, LocalStack.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeNetworkInterfacesCommand } from '@aws-sdk/client-ec2';
import { localEc2Client } from '../../localstack/seed.ts';
import type { PoolStatus } from '../../src/ipam-daemon/api-types.ts';
import { DAEMON_NODE_FLAGS } from '../../src/ipam-daemon/node-flags.ts';
import { createAwsProvider } from '../../src/providers/aws/index.ts';
import { OWNER_TAGS } from '../../src/providers/types.ts';
import { type FaultMode, startFaultProxy } from '../fakes/fault-proxy.ts';
import { vpcCniConfig } from '../helpers/cni-runtime.ts';
import { daemonGet, LocalVpc, type VpcNode } from '../helpers/local-vpc.ts';
import {
  deleteCluster,
  ec2Endpoint,
  requireLocalStack,
  seedCluster,
  uniqueClusterName,
} from '../helpers/localstack.ts';
import { Cleanup, createNetns, requireNetnsPrivileges, run, runPrefix } from '../helpers/netns.ts';
import { ensurePluginBuilt } from '../helpers/plugin-binary.ts';

export interface SoakOptions {
  /** Stop once this many ADD/DEL cycles AND `kills` daemon kills are done... */
  cycles: number;
  kills: number;
  /** ...or after this long, whichever comes first. */
  maxMinutes: number;
  /** Share of the daemons' EC2 calls that fail (default 0.2). */
  faultShare?: number;
  /** Concurrent pods per node (default 4). */
  workersPerNode?: number;
  /** Share of ADDs whose plugin process is killed mid-way (default 0.05). */
  pluginKillShare?: number;
  /** Mean time between two daemon kills, alternating nodes (default 2500 ms). */
  killIntervalMs?: number;
  /** Free IPs each node keeps ready (WARM_IP_TARGET, default 4). */
  warmIpTarget?: number;
  log?: (line: string) => void;
}

export interface Violation {
  kind: string;
  detail: string;
}

export interface SoakReport {
  startedAt: string;
  seconds: number;
  endedBy: 'targets' | 'time';
  options: Required<Omit<SoakOptions, 'log'>>;
  cycles: number;
  addsOk: number;
  addsFailed: number;
  addAttempts: number;
  dels: number;
  daemonKills: number;
  daemonKillsDuringAdd: number;
  /** Kills of a daemon that had not become ready since its last restart. */
  daemonKillsWhileStarting: number;
  /** Daemon exits we did not cause (restarted as the kubelet would), with their last log lines. */
  daemonSelfExits: number;
  /** Detached ENIs of the cluster the janitor's sweep deleted at the end (a daemon killed mid-delete). */
  janitorDeleted: number;
  selfExitReasons: string[];
  /** kill -9 to ready again. */
  restartMs: { median: number; max: number };
  pluginKills: number;
  ec2Calls: number;
  faultsInjected: number;
  faultsByMode: Partial<Record<FaultMode, number>>;
  faultsByCall: Record<string, number>;
  continuousChecks: number;
  podsChecked: number;
  settle: { node: string; free: number; total: number; interfaces: number; settleSeconds: number }[];
  violations: Violation[];
}

const MUTATING = [
  'CreateNetworkInterface',
  'AttachNetworkInterface',
  'ModifyNetworkInterfaceAttribute',
  'AssignPrivateIpAddresses',
  'UnassignPrivateIpAddresses',
  'DetachNetworkInterface',
  'DeleteNetworkInterface',
];
const MUTATING_FAULTS: FaultMode[] = [
  'drop-after',
  'delay-after',
  'error-after',
  'error-before',
  'delay-before',
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  code: number;
  out: Record<string, unknown> | null;
  killed: boolean;
}

/** One plugin call as a runtime makes it, in the node's netns; optionally killed after killAfterMs. */
function callPlugin(
  binary: string,
  node: VpcNode,
  env: Record<string, string>,
  config: Record<string, unknown>,
  killAfterMs?: number,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const child: ChildProcess = spawn('ip', ['netns', 'exec', node.ns, binary], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: '/usr/lib/cni', ...env },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let killed = false;
    const timer =
      killAfterMs === undefined
        ? undefined
        : setTimeout(() => {
            killed = child.kill('SIGKILL');
          }, killAfterMs);
    const chunks: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => chunks.push(b));
    child.on('error', () => {});
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      let out: Record<string, unknown> | null = null;
      try {
        const text = Buffer.concat(chunks).toString('utf8').trim();
        out = text ? (JSON.parse(text) as Record<string, unknown>) : null;
      } catch {
        out = null;
      }
      resolve({ code: code ?? -1, out, killed });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(JSON.stringify(config));
  });
}

/** Resolves once the node's daemon answers /readyz with 200 (throws after withinMs). */
async function waitReady(node: VpcNode, withinMs = 120_000): Promise<void> {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    const r = await daemonGet(node.socketPath, '/readyz').catch(() => undefined);
    if (r?.status === 200) return;
    await sleep(250);
  }
  throw new Error(`vpc-ipamd in ${node.ns} not ready after ${withinMs} ms; see ${node.daemonLog}`);
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const o: Required<Omit<SoakOptions, 'log'>> = {
    cycles: opts.cycles,
    kills: opts.kills,
    maxMinutes: opts.maxMinutes,
    faultShare: opts.faultShare ?? 0.2,
    workersPerNode: opts.workersPerNode ?? 3,
    pluginKillShare: opts.pluginKillShare ?? 0.05,
    killIntervalMs: opts.killIntervalMs ?? 5000,
    warmIpTarget: opts.warmIpTarget ?? 4,
  };
  const log = opts.log ?? (() => {});
  requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
  await requireLocalStack();
  // The daemon runs as the image runs it: the bundle (dist/vpc-ipamd), with the chart's node flags.
  const plugin = await ensurePluginBuilt({ daemon: true });
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const clusterName = uniqueClusterName('soak');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-soak-'));
  const violations: Violation[] = [];
  const violate = (kind: string, detail: string) => {
    violations.push({ kind, detail });
    log(`VIOLATION ${kind}: ${detail}`);
  };
  const started = Date.now();
  const deadline = started + o.maxMinutes * 60_000;
  const report: SoakReport = {
    startedAt: new Date(started).toISOString(),
    seconds: 0,
    endedBy: 'targets',
    options: o,
    cycles: 0,
    addsOk: 0,
    addsFailed: 0,
    addAttempts: 0,
    dels: 0,
    daemonKills: 0,
    daemonKillsDuringAdd: 0,
    daemonKillsWhileStarting: 0,
    daemonSelfExits: 0,
    janitorDeleted: 0,
    selfExitReasons: [],
    restartMs: { median: 0, max: 0 },
    pluginKills: 0,
    ec2Calls: 0,
    faultsInjected: 0,
    faultsByMode: {},
    faultsByCall: {},
    continuousChecks: 0,
    podsChecked: 0,
    settle: [],
    violations,
  };
  const ec2 = localEc2Client(ec2Endpoint(), process.env.AWS_REGION ?? 'us-east-1');
  cleanup.add('ec2 client', () => ec2.destroy());
  try {
    const seed = await seedCluster({ clusterName });
    cleanup.add('cluster', () => deleteCluster({ clusterName }));
    const proxy = await startFaultProxy({ target: ec2Endpoint(), dialect: 'ec2' });
    cleanup.add('fault proxy', () => proxy.close());
    const vpc = new LocalVpc(seed, prefix, dir, cleanup);
    vpc.ec2TargetPort = Number(new URL(proxy.url).port);
    await vpc.build();
    const big = seed.instances.find((i) => i.type === 'm5.4xlarge')!;
    const small = seed.instances.find((i) => i.type === 'm5.large')!;
    const nodes = [await vpc.addNode(big), await vpc.addNode(small)];
    vpc.startSyncLoop(300);
    const env = {
      WARM_IP_TARGET: String(o.warmIpTarget),
      VPC_IPAM_MIN_GROW_STEP: '2',
      IP_COOLDOWN_PERIOD: '1',
      VPC_IPAM_SHRINK_DELAY: '2',
      // CNI GC skips allocations younger than this (default 60 s); the settle phase repeats GC.
      VPC_IPAM_GC_GRACE: '5',
      // A daemon killed with an unassign in flight (the proxy delays it) restarts before EC2 applies
      // it: drift the resync repairs. A short interval lets the settle phase see it repaired.
      VPC_IPAM_RESYNC_INTERVAL: '3',
      LOG_LEVEL: 'warn',
    };
    const daemonArgs = [...DAEMON_NODE_FLAGS, 'dist/vpc-ipamd/vpc-ipamd.mjs'];
    // Started as the kubelet would: a daemon that exits while starting is started again.
    await Promise.all(
      nodes.map(async (n) => {
        for (let attempt = 1; ; attempt++) {
          try {
            if (attempt === 1) await vpc.startDaemon(n, env, daemonArgs);
            else await vpc.respawnDaemon(n);
            return;
          } catch (e) {
            let tail = '';
            try {
              tail = readFileSync(n.daemonLog, 'utf8').trim().split('\n').slice(-2).join(' | ').slice(0, 600);
            } catch {}
            log(`soak: daemon in ${n.ns} did not start (${(e as Error).message}): ${tail}`);
            if (attempt >= 3 || !n.daemonEnv) throw e;
          }
        }
      }),
    );
    log(`soak: cluster ${clusterName}, nodes ${nodes.map((n) => `${n.ns}=${n.instance.type}`).join(' ')}`);
    proxy.addRule({ action: MUTATING, share: o.faultShare, mode: MUTATING_FAULTS, delayMs: 1500 });
    proxy.addRule({ share: o.faultShare, mode: ['error-before', 'drop-after'] });

    // ---- the workload ----
    interface LivePod {
      id: string;
      ip: string;
      node: VpcNode;
    }
    const live = new Map<string, LivePod>(); // ip -> pod
    const inflight = new Map<VpcNode, number>(nodes.map((n) => [n, 0]));
    let seq = 0;
    let stop = false;
    const podEnv = (id: string, command: string, netns: string) => ({
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: `K8S_POD_NAMESPACE=soak;K8S_POD_NAME=${id};K8S_POD_UID=${id}-uid`,
    });
    const conf = (node: VpcNode) => vpcCniConfig(node);

    const cycle = async (node: VpcNode) => {
      const n = ++seq;
      const id = `${prefix}c${n}`;
      const nsName = `${prefix}-c${n}`;
      const nsPath = await createNetns(nsName, cleanup);
      const killPlugin = Math.random() < o.pluginKillShare;
      let pod: LivePod | undefined;
      inflight.set(node, inflight.get(node)! + 1);
      try {
        // ADD as the kubelet does: "try again later" (11) is retried; anything else ends it.
        for (let attempt = 1; attempt <= 6 && !pod; attempt++) {
          report.addAttempts++;
          const killAt = killPlugin && attempt === 1 ? Math.floor(Math.random() * 400) : undefined;
          const r = await callPlugin(plugin, node, podEnv(id, 'ADD', nsPath), conf(node), killAt);
          if (r.killed) {
            report.pluginKills++;
            break; // the runtime saw the plugin die: it DELs this sandbox and starts another
          }
          if (r.code === 0) {
            const ip = String((r.out?.ips as { address: string }[] | undefined)?.[0]?.address ?? '').split(
              '/',
            )[0]!;
            const other = live.get(ip);
            if (other)
              violate(
                'ip-on-two-pods',
                `${ip} given to ${id} on ${node.ns} while ${other.id} on ${other.node.ns} holds it`,
              );
            pod = { id, ip, node };
            live.set(ip, pod);
            break;
          }
          if ((r.out as { code?: number } | null)?.code !== 11) break;
          await sleep(1000); // the kubelet's pace: while a daemon is down each try runs the Node fallback
        }
      } finally {
        inflight.set(node, inflight.get(node)! - 1);
      }
      if (pod) {
        report.addsOk++;
        await sleep(Math.floor(Math.random() * 100)); // the pod lives a little
        live.delete(pod.ip);
      } else {
        report.addsFailed++;
      }
      // DEL (also after a failed ADD, as the runtime does); it must succeed in the end.
      let deleted = false;
      for (let attempt = 1; attempt <= 40 && !deleted; attempt++) {
        const r = await callPlugin(plugin, node, podEnv(id, 'DEL', nsPath), conf(node));
        deleted = r.code === 0;
        if (!deleted) await sleep(500);
      }
      if (deleted) report.dels++;
      else violate('del-failed', `DEL of ${id} on ${node.ns} never succeeded`);
      await run('ip', ['netns', 'del', nsName]).catch(() => {});
      report.cycles++;
    };

    const targetsMet = () => report.cycles >= o.cycles && report.daemonKills >= o.kills;
    // SIGINT/SIGTERM end the run early but still settle, check and clean up.
    let interrupted = false;
    const onSignal = () => {
      interrupted = true;
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    cleanup.add('signal handlers', () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });
    const over = () => stop || interrupted || targetsMet() || Date.now() > deadline;
    const workers = nodes.flatMap((node) =>
      Array.from({ length: o.workersPerNode }, async () => {
        while (!over()) await cycle(node);
      }),
    );

    // ---- the killer: kill -9 a daemon at a random moment, restart it at once ----
    // A node is killed again only once its restarted daemon has been ready for a while (so pods
    // get through between kills); every 4th kill hits a daemon that is still starting up.
    const readySince = new Map<VpcNode, number | undefined>(nodes.map((n) => [n, Date.now()]));
    const restarts: number[] = [];
    const watchReady = async (node: VpcNode, child: ChildProcess, t0: number) => {
      while (!over() && node.daemon === child && child.exitCode === null && child.signalCode === null) {
        const r = await daemonGet(node.socketPath, '/readyz').catch(() => undefined);
        if (r?.status === 200) {
          readySince.set(node, Date.now());
          restarts.push(Date.now() - t0);
          return;
        }
        await sleep(200);
      }
    };
    // The kubelet's part: a daemon that exits on its own is restarted (after 1 s, like a
    // CrashLoopBackOff's first steps); each such exit is counted with the last line it logged.
    const killing = new Set<ChildProcess>();
    const supervise = (node: VpcNode, child: ChildProcess) => {
      child.once('exit', (code, signal) => {
        if (killing.has(child) || stop) return;
        report.daemonSelfExits++;
        let tail: string;
        try {
          tail = readFileSync(node.daemonLog, 'utf8').trim().split('\n').slice(-3).join(' | ');
        } catch (e) {
          tail = `(log unreadable: ${(e as Error).message})`;
        }
        if (report.selfExitReasons.length < 10) {
          report.selfExitReasons.push(`${node.ns} exit ${code ?? signal}: ${tail.slice(0, 600)}`);
        }
        log(`soak: daemon in ${node.ns} exited on its own (${code ?? signal}); restarting`);
        setTimeout(() => {
          if (stop || node.daemon !== child) return;
          readySince.set(node, undefined);
          const t0 = Date.now();
          void vpc.respawnDaemon(node, 0).then((next) => {
            supervise(node, next);
            void watchReady(node, next, t0);
          });
        }, 1000);
      });
    };
    for (const n of nodes) supervise(n, n.daemon!);
    const killer = (async () => {
      let k = 0;
      while (!over()) {
        const wake = Date.now() + o.killIntervalMs * (0.5 + Math.random());
        while (!over() && Date.now() < wake) await sleep(Math.min(250, wake - Date.now()));
        if (over()) break;
        const node = nodes[k++ % nodes.length]!;
        const d = node.daemon;
        if (!d || d.exitCode !== null || d.signalCode !== null) continue;
        const whileStarting = k % 4 === 0;
        if (readySince.get(node) === undefined && !whileStarting) continue;
        if (inflight.get(node)! > 0) report.daemonKillsDuringAdd++;
        if (readySince.get(node) === undefined) report.daemonKillsWhileStarting++;
        const exited = new Promise((r) => d.once('exit', r));
        killing.add(d);
        d.kill('SIGKILL');
        await exited;
        report.daemonKills++;
        readySince.set(node, undefined);
        const t0 = Date.now();
        const child = await vpc.respawnDaemon(node, 0);
        supervise(node, child);
        void watchReady(node, child, t0);
      }
    })();

    // ---- the continuous check: every live pod's address is on an ENI of its node in LocalStack ----
    const owners = async () => {
      const out = await ec2.send(
        new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'vpc-id', Values: [seed.vpcId] }] }),
      );
      return out.NetworkInterfaces ?? [];
    };
    const checker = (async () => {
      while (!over()) {
        await sleep(2000);
        const snapshot = [...live.values()];
        let enis: Awaited<ReturnType<typeof owners>>;
        try {
          enis = await owners();
        } catch {
          continue;
        }
        const owner = new Map<string, string>();
        for (const e of enis) {
          if (!e.Attachment?.InstanceId) continue;
          for (const a of e.PrivateIpAddresses ?? [])
            if (!a.Primary) owner.set(a.PrivateIpAddress!, e.Attachment.InstanceId);
        }
        report.continuousChecks++;
        for (const pod of snapshot) {
          if (live.get(pod.ip) !== pod) continue; // deleted meanwhile
          report.podsChecked++;
          const at = owner.get(pod.ip);
          if (at !== pod.node.instance.id) {
            violate(
              'pod-ip-not-on-eni',
              `${pod.ip} of ${pod.id} (${pod.node.instance.id}) is on ${at ?? 'no ENI'} in LocalStack`,
            );
          }
        }
        if (report.continuousChecks % 10 === 0) {
          log(
            `soak: ${Math.round((Date.now() - started) / 1000)} s, ${report.cycles} cycles (${report.addsOk} ok, ${report.addsFailed} failed), ${report.daemonKills} daemon kills, ${report.pluginKills} plugin kills, ${proxy.injectedTotal()} faults, ${violations.length} violations`,
          );
        }
      }
    })();

    await Promise.all([...workers, killer, checker]);
    restarts.sort((a, b) => a - b);
    report.restartMs = {
      median: restarts[Math.floor(restarts.length / 2)] ?? 0,
      max: restarts.at(-1) ?? 0,
    };
    report.endedBy = targetsMet() ? 'targets' : 'time';
    stop = true;

    // ---- settle: faults off, daemons up, GC, then the end checks ----
    proxy.clearRules();
    report.ec2Calls = proxy.stats.requests;
    report.faultsInjected = proxy.injectedTotal();
    report.faultsByMode = Object.fromEntries(Object.entries(proxy.stats.injected).filter(([, v]) => v > 0));
    for (const e of proxy.stats.events) report.faultsByCall[e.call] = (report.faultsByCall[e.call] ?? 0) + 1;
    for (const node of nodes) {
      const d = node.daemon;
      if (!d || d.exitCode !== null || d.signalCode !== null) await vpc.respawnDaemon(node, 120_000);
      await waitReady(node);
    }
    // The pool engine keeps up to VPC_IPAM_MIN_GROW_STEP - 1 IPs over WARM_IP_TARGET (hysteresis).
    const warmBound = o.warmIpTarget + 2 - 1;
    // The runtime's GC, repeated as a runtime does (the daemon skips allocations younger than its
    // GC grace): no attachment is valid any more.
    const gc = async (node: VpcNode) => {
      const r = await callPlugin(
        plugin,
        node,
        { CNI_COMMAND: 'GC' },
        { ...conf(node), 'cni.dev/valid-attachments': [] },
      );
      if (r.code !== 0) log(`soak: GC on ${node.ns} answered ${JSON.stringify(r.out)}`);
    };
    // LocalStack vs the daemon's pool, both ways: what would be a violation once settled.
    const disagreements = async (node: VpcNode, status: PoolStatus): Promise<[string, string][]> => {
      const out: [string, string][] = [];
      const enis = (await owners()).filter((e) => e.Attachment?.InstanceId === node.instance.id);
      const poolIps = new Set(status.interfaces.flatMap((i) => (i.ips ?? []).map((x) => x.ip)));
      const poolIfs = new Set(status.interfaces.map((i) => i.interfaceId));
      for (const e of enis) {
        if (!poolIfs.has(e.NetworkInterfaceId!)) {
          out.push([
            'unknown-to-daemon',
            `${node.ns}: ENI ${e.NetworkInterfaceId} attached in LocalStack, not in the pool`,
          ]);
          continue;
        }
        for (const a of e.PrivateIpAddresses ?? []) {
          if (!a.Primary && !poolIps.has(a.PrivateIpAddress!)) {
            out.push([
              'unknown-to-daemon',
              `${node.ns}: ${a.PrivateIpAddress} on ${e.NetworkInterfaceId} not in the pool`,
            ]);
          }
        }
      }
      const cloudIps = new Set(
        enis.flatMap((e) => (e.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress!)),
      );
      for (const ipAddr of poolIps) {
        if (!cloudIps.has(ipAddr))
          out.push(['unknown-to-daemon', `${node.ns}: pool holds ${ipAddr}, LocalStack does not`]);
      }
      return out;
    };
    for (const node of nodes) {
      const t0 = Date.now();
      let status: PoolStatus | undefined;
      while (Date.now() - t0 < 120_000) {
        await gc(node);
        const r = await daemonGet(node.socketPath, '/v1/pool').catch(() => undefined);
        status = r?.status === 200 ? (r.body as PoolStatus) : undefined;
        if (
          status &&
          status.assigned === 0 &&
          status.cooling === 0 &&
          status.free <= warmBound &&
          // Nothing being given back: an unassign or an ENI delete in flight is not settled.
          status.interfaces.every((i) => (i.ips ?? []).every((x) => x.state !== 'releasing')) &&
          (await disagreements(node, status)).length === 0
        )
          break;
        await sleep(1000);
      }
      report.settle.push({
        node: `${node.ns} (${node.instance.type})`,
        free: status?.free ?? -1,
        total: status?.total ?? -1,
        interfaces: status?.interfaces.length ?? -1,
        settleSeconds: Math.round((Date.now() - t0) / 1000),
      });
      if (!status) {
        violate('daemon-unreachable', `${node.ns}: no pool status after settling`);
        continue;
      }
      if (status.free > warmBound)
        violate(
          'free-beyond-warm',
          `${node.ns}: ${status.free} free, warm target ${o.warmIpTarget} (+ grow step - 1: ${warmBound})`,
        );
      const allocs = await daemonGet(node.socketPath, '/v1/allocations');
      const left = (allocs.body as { allocations?: unknown[] }).allocations ?? [];
      if (left.length > 0)
        violate('allocations-left', `${node.ns}: daemon still holds ${left.length} allocations`);
      try {
        const cp = JSON.parse(readFileSync(node.daemonEnv!.VPC_IPAM_CHECKPOINT!, 'utf8')) as {
          allocations?: unknown[];
          journal?: string;
        };
        if (!cp.journal && (cp.allocations?.length ?? 0) > 0) {
          violate('allocations-left', `${node.ns}: checkpoint file still lists ${cp.allocations!.length}`);
        }
      } catch (e) {
        violate('checkpoint-unreadable', `${node.ns}: ${(e as Error).message}`);
      }
      for (const [kind, msg] of await disagreements(node, status)) violate(kind, msg);
    }
    // What the janitor does for a daemon killed between detaching and deleting an ENI: delete
    // detached ENIs of the cluster (counted, not violations); any left after it is a leak.
    const janitor = createAwsProvider({
      region: process.env.AWS_REGION ?? 'us-east-1',
      ec2Endpoint: ec2Endpoint(),
      clusterName,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    try {
      for (const l of await janitor.findLeakedInterfaces({ clusterName })) {
        await janitor.deleteInterface(l.id, { onlyIfDetached: true });
        report.janitorDeleted++;
      }
    } finally {
      await janitor.close();
    }
    const leaked = (await owners()).filter(
      (e) =>
        !e.Attachment?.InstanceId &&
        e.TagSet?.some((t) => t.Key === OWNER_TAGS.clusterName && t.Value === clusterName),
    );
    for (const e of leaked)
      violate('leaked-eni', `${e.NetworkInterfaceId} is detached and tagged for ${clusterName}`);
  } finally {
    report.seconds = Math.round((Date.now() - started) / 1000);
    const errors = await cleanup.run();
    for (const e of errors) log(`cleanup: ${e}`);
    // The daemons' logs are what explains a violation: kept then.
    if (violations.length > 0) log(`soak: violations; daemon logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  return report;
}
