// ADD/DEL wall time: dist/vpc-cni (+ vpc-ipamd over its socket) vs Debian's containernetworking-plugins
// ptp + host-local with ipMasq, side by side in one run, each pod on a fresh network namespace.
// Both plugins are executed exactly as a runtime does (env + stdin), inside the same node netns
// (`ip netns exec <node> <plugin>`), so both pay the same exec overhead.
//
//   sudo npx node bench/cni-add-del.ts [--iterations 60] [--concurrency 50] [--write]
//
// Needs root, LocalStack (VPC_IPAM_EC2_ENDPOINT, default http://127.0.0.1:4566), /usr/lib/cni/ptp.
// --write stores the report in bench/results/cni-add-del.md.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execPlugin } from '../test/helpers/cni-runtime.ts';
import { daemonGet, LocalVpc } from '../test/helpers/local-vpc.ts';
import {
  deleteCluster,
  requireLocalStack,
  seedCluster,
  uniqueClusterName,
} from '../test/helpers/localstack.ts';
import { Cleanup, createNetns, requireNetnsPrivileges, run, runPrefix } from '../test/helpers/netns.ts';
import { ensurePluginBuilt } from '../test/helpers/plugin-binary.ts';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '60' },
    concurrency: { type: 'string', default: '50' },
    write: { type: 'boolean', default: false },
  },
});
const N = Number(values.iterations);
const C = Number(values.concurrency);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
const med = (xs: number[]) => pct(xs, 50);
const f = (n: number) => n.toFixed(1);

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function main(): Promise<void> {
  requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
  await requireLocalStack();
  const plugin = await ensurePluginBuilt();
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
    vpc.startSyncLoop(500);
    await vpc.startDaemon(node, {
      IP_COOLDOWN_PERIOD: '0',
      MINIMUM_IP_TARGET: String(C + 5),
      WARM_IP_TARGET: '8',
    });
    // Wait for a warm pool big enough for the burst, so we time wiring, not EC2.
    for (let i = 0; ; i++) {
      const pool = (await daemonGet(node.socketPath, '/v1/pool')).body as { free?: number };
      if ((pool.free ?? 0) >= C + 2) break;
      if (i > 240) throw new Error(`warm pool never reached ${C + 2} free IPs: ${JSON.stringify(pool)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
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
      { name: 'vpc-cni', bin: plugin, conf: ours },
      { name: 'ptp+host-local (ipMasq)', bin: '/usr/lib/cni/ptp', conf: ptp },
    ];
    const times = kinds.map(() => ({ add: [] as number[], del: [] as number[] }));
    let seq = 0;
    const pod = async () => {
      const n = ++seq; // taken before the await: concurrent callers must not share it
      const ns = `${prefix}-b${n}`;
      return { ns, path: await createNetns(ns, cleanup), id: `${prefix}c${n}` };
    };
    const call = (k: number, command: 'ADD' | 'DEL', p: { path: string; id: string }) =>
      execPlugin(
        kinds[k]!.bin,
        { command, containerId: p.id, netns: p.path, ifName: 'eth0' },
        kinds[k]!.conf,
        node.ns,
      );

    // warm-up (page cache, first iptables chain creation) — not measured
    for (let k = 0; k < kinds.length; k++) {
      const p = await pod();
      if ((await call(k, 'ADD', p)).code !== 0) throw new Error(`${kinds[k]!.name} warm-up ADD failed`);
      await call(k, 'DEL', p);
      await run('ip', ['netns', 'del', p.ns]);
    }
    // sequential, alternating which plugin goes first
    for (let i = 0; i < N; i++) {
      const order = i % 2 === 0 ? [0, 1] : [1, 0];
      for (const k of order) {
        const p = await pod();
        let o: Awaited<ReturnType<typeof call>> | undefined;
        times[k]!.add.push(await timeIt(async () => (o = await call(k, 'ADD', p))));
        if (o?.code !== 0) throw new Error(`${kinds[k]!.name} ADD failed: ${JSON.stringify(o?.out)}`);
        times[k]!.del.push(await timeIt(() => call(k, 'DEL', p)));
        await run('ip', ['netns', 'del', p.ns]);
      }
    }
    const sequentialLogLines = readFileSync(oursLog, 'utf8').trim().split('\n').length;
    // burst: C concurrent ADDs per plugin on fresh netns
    const burst: number[] = [];
    for (let k = 0; k < kinds.length; k++) {
      const ps = await Promise.all(Array.from({ length: C }, () => pod()));
      const outcomes: number[] = [];
      const errs: unknown[] = [];
      burst.push(
        await timeIt(async () =>
          outcomes.push(
            ...(await Promise.all(ps.map((p) => call(k, 'ADD', p)))).map((o) => {
              if (o.code !== 0) errs.push(o.out);
              return o.code;
            }),
          ),
        ),
      );
      const failed = outcomes.filter((c) => c !== 0).length;
      if (failed > 0)
        throw new Error(
          `${kinds[k]!.name}: ${failed} of ${C} concurrent ADDs failed: ${JSON.stringify(errs[0])}`,
        );
      await Promise.all(ps.map((p) => call(k, 'DEL', p)));
      for (const p of ps) await run('ip', ['netns', 'del', p.ns]);
    }
    // where our time goes: process start (VERSION), one `ip -batch`, one `nsenter ip -batch`,
    // and the plugin's own view (log: allocate + wiring) of each ADD
    const startup: number[] = [];
    const ipSpawn: number[] = [];
    for (let i = 0; i < 30; i++) {
      startup.push(
        await timeIt(() => execPlugin(plugin, { command: 'VERSION' }, { cniVersion: '1.0.0' }, node.ns)),
      );
      ipSpawn.push(await timeIt(() => run('ip', ['-n', node.ns, '-batch', '-'], 'link show dev lo\n')));
    }
    const logLines = readFileSync(oursLog, 'utf8')
      .trim()
      .split('\n')
      .slice(0, sequentialLogLines) // sequential ADDs only: the burst measures contention
      .map((l) => JSON.parse(l) as { msg: string; ms?: number; daemonMs?: number; bootMs?: number });
    const allocMs = logLines.filter((l) => l.msg === 'allocated').map((l) => l.daemonMs ?? 0);
    const bootMs = logLines.filter((l) => l.msg === 'allocated').map((l) => l.bootMs ?? 0);
    const addInternal = logLines.filter((l) => l.msg === 'ADD done').map((l) => l.ms ?? 0);

    const [o, r] = times as [{ add: number[]; del: number[] }, { add: number[]; del: number[] }];
    const rows = [
      `| | ${kinds[0]!.name} | ${kinds[1]!.name} | ratio (ours / ref) |`,
      '|---|---:|---:|---:|',
      `| ADD median (ms) | ${f(med(o.add))} | ${f(med(r.add))} | ${(med(o.add) / med(r.add)).toFixed(2)} |`,
      `| ADD p99 (ms) | ${f(pct(o.add, 99))} | ${f(pct(r.add, 99))} | ${(pct(o.add, 99) / pct(r.add, 99)).toFixed(2)} |`,
      `| DEL median (ms) | ${f(med(o.del))} | ${f(med(r.del))} | ${(med(o.del) / med(r.del)).toFixed(2)} |`,
      `| DEL p99 (ms) | ${f(pct(o.del, 99))} | ${f(pct(r.del, 99))} | ${(pct(o.del, 99) / pct(r.del, 99)).toFixed(2)} |`,
      `| ${C} concurrent ADDs, wall (ms) | ${f(burst[0]!)} | ${f(burst[1]!)} | ${(burst[0]! / burst[1]!).toFixed(2)} |`,
    ];
    const breakdown = [
      `| plugin bootstrap: process start to first line of plugin code (median, sequential ADDs) | ${f(med(bootMs))} ms |`,
      `| plugin process start + exit (VERSION, median) | ${f(med(startup))} ms |`,
      `| one \`ip -batch\` process (median) | ${f(med(ipSpawn))} ms |`,
      `| daemon allocate over the socket, seen by the plugin (median, sequential ADDs) | ${f(med(allocMs))} ms |`,
      `| ADD inside the plugin: allocate + 2 ip batches (median, sequential ADDs) | ${f(med(addInternal))} ms |`,
    ];
    const report = [
      '# CNI ADD/DEL benchmark: vpc-cni vs ptp + host-local (ipMasq)',
      '',
      `Command: \`npx node bench/cni-add-del.ts --iterations ${N} --concurrency ${C} --write\` (as root, LocalStack running).`,
      `Run: ${new Date().toISOString()}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}, kernel ${(await run('uname', ['-r'])).stdout.trim()}.`,
      `Each sample is one plugin execution as a runtime does it (\`ip netns exec <node> <plugin>\`, env + stdin) on a fresh pod netns; ${N} sequential ADD+DEL pairs per plugin, order alternating; then ${C} concurrent ADDs per plugin. vpc-cni allocates from vpc-ipamd (warm pool, IP_COOLDOWN_PERIOD=0) over its Unix socket; ptp uses host-local and installs its ipMasq iptables rules.`,
      '',
      ...rows,
      '',
      '## Where vpc-cni spends an ADD',
      '',
      '| component | time |',
      '|---|---:|',
      ...breakdown,
      '',
      '## Reading',
      '',
      `- Goal: an ADD no slower than the reference. **Not met**: our median ADD is ${(med(o.add) / med(r.add)).toFixed(1)}x ptp's.`,
      `- What dominates: the Node.js bootstrap of the single executable (${f(med(bootMs))} ms before our first line runs;`,
      `  a bare \`node -e 0\` costs about as much). ptp is a Go binary that starts in a few ms and does its netlink work`,
      '  in-process; its cost is host-local (one more exec) and the ipMasq iptables calls.',
      `- Inside the plugin (${f(med(addInternal))} ms): the daemon round trip (socket + checkpoint fsync before the answer)`,
      '  overlapped with creating the veth pair, then the host `ip -batch` and the pod `nsenter ip -batch` in parallel.',
      '- DEL is on par: ptp DEL also removes its iptables chains; ours is one `ip -batch` plus the release.',
      '- 50 concurrent ADDs: on 2 CPUs every plugin process pays the Node bootstrap in CPU, so the burst is CPU-bound;',
      '  ptp serialises on the xtables lock instead.',
      '- Tried: a V8 startup snapshot in the SEA (`useSnapshot`) fails to build (node:child_process / node:http are not',
      '  snapshot-safe in Node 24); replacing node:http by a 60-line HTTP/1.1 client on node:net saved ~10 ms (node:http',
      '  lazily initialises on the first request); creating the veth during the daemon call and running the host and pod',
      '  batches in parallel took one process off the critical path.',
      '- What would close the gap: a small static shim (Go/Rust/C, no runtime) as the CNI executable that forwards',
      '  env + stdin to the already-running daemon, with the daemon doing the wiring (it already links src/netutils).',
      '  That removes the bootstrap from every ADD/DEL; it changes the daemon API, so it is left for a follow-up.',
      "- The machine is shared with other engineers' builds and tests: medians move by +-20% between runs; p99 is noisy.",
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
