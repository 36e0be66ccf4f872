// Runs inside the VM (started by test/helpers/vm.ts through vng): makes the host's LocalStack
// answer on the guest's 127.0.0.1 through a virtio serial port (test/vm/serial-mux.ts; the guest
// has no network interface but lo, which is checked), then runs each phase of <outDir>/plan.json as one `node --test` with the iptables
// variant it asks for, writing events-<i>.jsonl, spec-<i>.log and finally status.json to outDir.
//
// The guest sees the host's root filesystem read-only, with virtme-ng's tmpfs overlays on /etc,
// /usr and /var: update-alternatives changes only the guest's copy. We check that before switching.
import { execFileSync, spawn } from 'node:child_process';
import {
  createReadStream,
  createWriteStream,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { Duplex } from 'node:stream';
import { checkLocalStack } from '../../localstack/health.ts';
import type { VmPhase } from '../helpers/vm.ts';
import { listenMux } from './serial-mux.ts';

interface GuestPlan {
  phases: VmPhase[];
  /** Name of the virtio serial port carrying LocalStack connections. */
  serialPort: string;
  /** Guest loopback port the suites use for LocalStack. */
  localstackPort: number;
  testTimeoutMs: number;
}

const ROOT = join(import.meta.dirname, '..', '..');
/** How much longer the e2e helpers wait under TCG (test/helpers/slowdown.ts). */
const SLOWDOWN = 15;
const outDir = process.argv[2] ?? '';
const status: {
  kernel: string;
  done?: boolean;
  error?: string;
  localstackMs?: number;
  phases: { exitCode: number; ms: number }[];
} = {
  kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
  phases: [],
};

function say(msg: string): void {
  process.stdout.write(`[vm guest] ${msg}\n`);
}

function finish(error?: string): never {
  if (error) {
    status.error = error;
    say(`error: ${error}`);
  }
  status.done = true;
  writeFileSync(join(outDir, 'status.json'), JSON.stringify(status, null, 2));
  // Not process.exit: the serial port's pending read sits in libuv's thread pool and exit would
  // wait for it forever. The status file is written; end at once so the VM powers off.
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

/** / read-only, /etc an overlay: alternatives we switch here stay in the guest. */
function overlaysInPlace(): string | null {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '));
  const root = mounts.find((m) => m[1] === '/');
  if (!root?.[3]?.split(',').includes('ro')) return 'the root filesystem is not read-only in the guest';
  for (const dir of ['/etc', '/var']) {
    if (!mounts.some((m) => m[1] === dir && m[2] === 'overlay')) return `${dir} is not a guest-only overlay`;
  }
  return null;
}

function setIptables(variant: 'nft' | 'legacy'): void {
  const refusal = overlaysInPlace();
  if (refusal) finish(`refusing to switch iptables to ${variant}: ${refusal}`);
  for (const tool of ['iptables', 'ip6tables']) {
    execFileSync('update-alternatives', ['--set', tool, `/usr/sbin/${tool}-${variant}`], { stdio: 'ignore' });
  }
  const version = execFileSync('iptables', ['--version'], { encoding: 'utf8' }).trim();
  const want = variant === 'nft' ? '(nf_tables)' : '(legacy)';
  if (!version.includes(want)) finish(`iptables is "${version}" after switching to ${variant}`);
  say(`iptables: ${version}`);
}

/** The guest must have no network to the host: lo only (the serial port carries LocalStack). */
function onlyLoopback(): string | null {
  const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as {
    ifname: string;
  }[];
  const others = links.map((l) => l.ifname).filter((n) => n !== 'lo');
  return others.length > 0 ? `the guest has network interfaces besides lo: ${others.join(', ')}` : null;
}

/** The virtio serial port qemu joined to the host's LocalStack demultiplexer (test/helpers/vm.ts). */
function openSerialPort(name: string): Duplex {
  const dir = '/sys/class/virtio-ports';
  const port = readdirSync(dir).find((p) => readFileSync(join(dir, p, 'name'), 'utf8').trim() === name);
  if (!port) return finish(`no virtio serial port named ${name} in ${dir}`);
  const fd = openSync(`/dev/${port}`, 'r+');
  return Duplex.from({
    readable: createReadStream('', { fd, autoClose: false, highWaterMark: 65536 }),
    writable: createWriteStream('', { fd, autoClose: false }),
  });
}

async function connectLocalStack(plan: GuestPlan): Promise<void> {
  const started = performance.now();
  await listenMux(openSerialPort(plan.serialPort), plan.localstackPort);
  const endpoint = `http://127.0.0.1:${plan.localstackPort}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await checkLocalStack(endpoint);
      break;
    } catch (e) {
      if (Date.now() > deadline)
        finish(`the host's LocalStack is not usable through the serial port: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  status.localstackMs = Math.round(performance.now() - started);
  say(`host LocalStack reachable on guest ${endpoint} in ${status.localstackMs} ms`);
}

function runPhase(plan: GuestPlan, i: number, env: NodeJS.ProcessEnv): Promise<number> {
  const phase = plan.phases[i]!;
  const args = phase.script ?? [
    '--test',
    '--test-concurrency=1',
    `--test-timeout=${plan.testTimeoutMs}`,
    `--test-reporter=${join(ROOT, 'test', 'vm', 'event-reporter.ts')}`,
    `--test-reporter-destination=${join(outDir, `events-${i}.jsonl`)}`,
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    ...(phase.namePattern ? [`--test-name-pattern=${phase.namePattern}`] : []),
    ...(phase.files ?? []),
  ];
  const log = openSync(join(outDir, `spec-${i}.log`), 'a');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...env, ...phase.env },
      stdio: ['ignore', log, log],
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

async function main(): Promise<void> {
  if (!outDir) finish('usage: guest.ts <outDir>');
  say(`kernel ${status.kernel}`);
  const plan = JSON.parse(readFileSync(join(outDir, 'plan.json'), 'utf8')) as GuestPlan;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: '/root',
    PATH: [
      dirname(process.execPath),
      join(ROOT, 'node_modules', '.bin'),
      '/usr/sbin:/usr/bin:/sbin:/bin',
    ].join(':'),
    LOCALSTACK_PORT: String(plan.localstackPort),
    VPC_IPAM_EC2_ENDPOINT: `http://127.0.0.1:${plan.localstackPort}`,
    VPC_IPAM_E2E_SLOWDOWN: String(SLOWDOWN),
    VPC_IPAM_PLUGIN_PREBUILT: '1',
    VPC_IPAM_E2E_LOG_DIR: outDir,
    VPC_IPAM_E2E_DAEMON: 'bundle', // dist/vpc-ipamd, built by the host with the plugin
  };
  process.env.PATH = env.PATH;
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  const networked = onlyLoopback();
  if (networked) finish(networked);
  await connectLocalStack(plan);
  for (let i = 0; i < plan.phases.length; i++) {
    const phase = plan.phases[i]!;
    setIptables(phase.iptables);
    say(`phase ${i}: ${phase.label}`);
    const started = performance.now();
    const exitCode = await runPhase(plan, i, env);
    const ms = Math.round(performance.now() - started);
    status.phases.push({ exitCode, ms });
    say(`phase ${i} exit ${exitCode} in ${ms} ms`);
    writeFileSync(join(outDir, 'status.json'), JSON.stringify(status, null, 2));
  }
  finish();
}

main().catch((e: unknown) => finish(`guest crashed: ${(e as Error).stack ?? String(e)}`));
