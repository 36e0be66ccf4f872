// ADD/DEL wall time of vpc-cni in ipvlan mode vs routed veth, side by side in one run, on Debian's
// stock 6.1 kernel in a VM (this machine's kernel has no ipvlan). The host side boots the VM
// (test/helpers/vm.ts), the guest side (--in-vm) measures: one node of the local VPC with its
// daemon and a warm pool, N sequential ADD+DEL pairs per mode (order alternating, each pod a
// fresh netns), then ROUNDS bursts of C concurrent ADDs per mode. dist/vpc-cni is executed as a
// runtime does it. Under qemu TCG every figure is many times the bare-metal one: compare the two
// modes with each other, not with bench/results/cni-add-del.md.
//
//   sudo npx node bench/ipvlan-vs-veth.ts [--iterations 12] [--concurrency 10] [--rounds 2] [--write]
//
// Needs root, scripts/setup.sh (the VM), LocalStack on VPC_IPAM_EC2_ENDPOINT. --write stores the
// report in bench/results/ipvlan-vs-veth.md.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execPlugin, vpcCniConfig } from '../test/helpers/cni-runtime.ts';
import { daemonGet, LocalVpc } from '../test/helpers/local-vpc.ts';
import {
  deleteCluster,
  requireLocalStack,
  seedCluster,
  uniqueClusterName,
} from '../test/helpers/localstack.ts';
import { Cleanup, createNetns, requireNetnsPrivileges, run, runPrefix } from '../test/helpers/netns.ts';
import { ensurePluginBuilt } from '../test/helpers/plugin-binary.ts';
import { ROOT, runInVm } from '../test/helpers/vm.ts';
import { fmt, median, tail } from './stats.ts';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '12' },
    concurrency: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '2' },
    write: { type: 'boolean', default: false },
    'in-vm': { type: 'string' },
  },
});
const N = Number(values.iterations);
const C = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const MODES = ['veth', 'ipvlan'] as const;
const loadAvg = () => loadavg()[0]!.toFixed(1);
/** "On par": within this fraction of routed veth. */
const PAR = 0.1;

interface Samples {
  add: number[];
  del: number[];
  burst: number[];
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const r = await fn();
  return [performance.now() - t, r];
}

/** Guest side: measure and write the raw samples as JSON. */
async function measure(outFile: string): Promise<void> {
  requireNetnsPrivileges(['ip', 'nsenter', 'iptables-save', 'iptables-restore', 'sysctl']);
  await requireLocalStack();
  const plugin = await ensurePluginBuilt();
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const dir = mkdtempSync(join(tmpdir(), 'ipvlan-bench-'));
  const clusterName = uniqueClusterName('ipvlan-bench');
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
      WARM_IP_TARGET: '4',
    });
    for (let i = 0; ; i++) {
      const pool = (await daemonGet(node.socketPath, '/v1/pool')).body as { free?: number };
      if ((pool.free ?? 0) >= C + 2) break;
      if (i > 480) throw new Error(`warm pool never reached ${C + 2} free IPs: ${JSON.stringify(pool)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const conf = (mode: string) => vpcCniConfig(node, { mode, logFile: join(dir, `cni-${mode}.log`) });
    let seq = 0;
    const pod = async () => {
      const n = ++seq;
      const ns = `${prefix}-b${n}`;
      return { ns, path: await createNetns(ns, cleanup), id: `${prefix}c${n}`, n };
    };
    const call = (mode: string, command: 'ADD' | 'DEL', p: { path: string; id: string; n: number }) =>
      execPlugin(
        plugin,
        {
          command,
          containerId: p.id,
          netns: p.path,
          ifName: 'eth0',
          args: `K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p${p.n}`,
        },
        conf(mode),
        node.ns,
      );
    const must = (what: string, o: { code: number; out: unknown }) => {
      if (o.code !== 0) throw new Error(`${what} failed: ${JSON.stringify(o.out)}`);
    };
    const samples: Record<string, Samples> = {
      veth: { add: [], del: [], burst: [] },
      ipvlan: { add: [], del: [], burst: [] },
    };
    // warm-up, not measured
    for (const mode of MODES) {
      const p = await pod();
      must(`${mode} warm-up ADD`, await call(mode, 'ADD', p));
      must(`${mode} warm-up DEL`, await call(mode, 'DEL', p));
      await run('ip', ['netns', 'del', p.ns]);
    }
    for (let i = 0; i < N; i++) {
      for (const mode of i % 2 === 0 ? MODES : [...MODES].reverse()) {
        const p = await pod();
        const [addMs, a] = await timed(() => call(mode, 'ADD', p));
        must(`${mode} ADD`, a);
        const [delMs, d] = await timed(() => call(mode, 'DEL', p));
        must(`${mode} DEL`, d);
        samples[mode]!.add.push(addMs);
        samples[mode]!.del.push(delMs);
        await run('ip', ['netns', 'del', p.ns]);
      }
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of round % 2 === 0 ? MODES : [...MODES].reverse()) {
        const ps = await Promise.all(Array.from({ length: C }, () => pod()));
        const [ms, outcomes] = await timed(() => Promise.all(ps.map((p) => call(mode, 'ADD', p))));
        for (const o of outcomes) must(`${mode} concurrent ADD`, o);
        samples[mode]!.burst.push(ms);
        await Promise.all(ps.map((p) => call(mode, 'DEL', p)));
        for (const p of ps) await run('ip', ['netns', 'del', p.ns]);
      }
    }
    const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
    writeFileSync(outFile, JSON.stringify({ kernel, samples }));
  } finally {
    await cleanup.run();
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(
  raw: { kernel: string; samples: Record<string, Samples> },
  vmSeconds: number,
  load: string,
): string {
  const [v, i] = [raw.samples.veth!, raw.samples.ipvlan!];
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  const row = (what: string, a: number, b: number) => `| ${what} | ${fmt(a)} | ${fmt(b)} | ${ratio(b, a)} |`;
  const addRatio = median(i.add) / median(v.add);
  const delRatio = median(i.del) / median(v.del);
  const verdict = (r: number) =>
    r <= 1 + PAR
      ? r < 1 - PAR
        ? 'faster than routed veth'
        : 'on par with routed veth'
      : 'slower than routed veth';
  const cmd = `npx node bench/ipvlan-vs-veth.ts --iterations ${N} --concurrency ${C} --rounds ${ROUNDS} --write`;
  return `# CNI ADD/DEL: ipvlan mode vs routed veth, in a VM (stock kernel)

Command: \`${cmd}\` (as root, LocalStack running).
Run: ${new Date().toISOString()}, guest kernel ${raw.kernel} (Debian), qemu TCG (no KVM), 2 vCPUs, 2 GiB; ${vmSeconds} s from boot to power-off; host load average ${load}.
One node of the local VPC (m5.4xlarge) with vpc-ipamd and a warm pool; dist/vpc-cni executed as a runtime does it on a fresh pod netns; ${N} sequential ADD+DEL pairs per mode, order alternating; then ${ROUNDS} rounds of ${C} concurrent ADDs per mode, order alternating.
TCG emulates every instruction: absolute figures are many times bare metal's. Read the ratios.

| | routed veth | ipvlan | ratio (ipvlan / veth) |
|---|---:|---:|---:|
${row(`ADD median (ms, ${N} samples)`, median(v.add), median(i.add))}
${row(`ADD ${tail(v.add).label} (ms)`, tail(v.add).value, tail(i.add).value)}
${row('DEL median (ms)', median(v.del), median(i.del))}
${row(`DEL ${tail(v.del).label} (ms)`, tail(v.del).value, tail(i.del).value)}
${row(`${C} concurrent ADDs, wall, median of ${ROUNDS} (ms)`, median(v.burst), median(i.burst))}

## Reading

- ipvlan ADD is ${verdict(addRatio)} (median ratio ${addRatio.toFixed(2)}; within ${PAR * 100}% counts as on par).
- ipvlan DEL is ${verdict(delRatio)} (median ratio ${delRatio.toFixed(2)}).
- An ipvlan ADD does what a routed one does (host veth, host /32 route, pod addresses and routes) plus
  the ipvlan slave and one \`ip -j addr\` to find the ENI's interface by MAC, minus the policy rules.
- The two modes take different paths: a routed veth ADD is planned by the daemon and applied by the
  shim with netlink (no process forked), while an ipvlan ADD is wired by the daemon with \`ip -batch\`
  (three \`ip\` processes, one through nsenter). DEL too: a routed veth DEL is a plan the shim applies
  with netlink, an ipvlan DEL is run by the daemon with \`ip\`. Part of both ratios is that path
  difference, not the kernel work of the mode.
`;
}

async function main(): Promise<void> {
  if (values['in-vm']) return measure(values['in-vm']);
  await requireLocalStack();
  await ensurePluginBuilt({ daemon: true });
  const loadBefore = loadAvg();
  const outDir = join(ROOT, '.run', 'vm', `bench-${process.pid}`);
  const rawFile = join(outDir, 'ipvlan-vs-veth.json');
  const args = ['bench/ipvlan-vs-veth.ts', `--iterations=${N}`, `--concurrency=${C}`, `--rounds=${ROUNDS}`];
  const outcome = await runInVm({
    phases: [{ label: 'bench ipvlan vs veth', iptables: 'nft', script: [...args, `--in-vm=${rawFile}`] }],
    outDir,
    timeoutMs: 60 * 60_000,
  });
  const phase = outcome.phases[0]!;
  if (phase.exitCode !== 0) {
    throw new Error(
      `the benchmark failed in the VM (exit ${phase.exitCode}, ${outcome.guestError ?? ''}); see ${join(outDir, 'spec-0.log')}`,
    );
  }
  const text = report(
    JSON.parse(readFileSync(rawFile, 'utf8')),
    Math.round(outcome.bootToEndMs / 1000),
    `${loadBefore} at the start, ${loadAvg()} at the end (1-min)`,
  );
  process.stdout.write(text);
  if (values.write) writeFileSync(join(ROOT, 'bench', 'results', 'ipvlan-vs-veth.md'), text);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
