// Runs e2e suites inside a VM booted from Debian's stock kernel (ipvlan and iptables-legacy, which
// this machine's kernel cannot give): qemu TCG (`--disable-kvm`; KVM aborted or hung here) through
// virtme-ng, over the host's root filesystem read-only, so the guest has this checkout, Node 24,
// ip and iptables. scripts/setup-vm.sh installs the kernel, qemu and virtme-ng.
//
//   vmTools()            the kernel and vng, or an error naming what is missing (suites FAIL)
//   runInVm(plan)        boots once, runs each phase's `node --test` in turn (test/vm/guest.ts),
//                        returns each phase's events and exit code
//   replayPhase(t, ...)  turns a phase's events into subtests of t, so VM results count and
//                        print like any other test (failures with the guest's message and stack)
//
// The guest has no network interface but lo. The suites reach the host's LocalStack on the guest's
// 127.0.0.1:4566 through a virtio serial port that qemu joins to a Unix socket here, from which
// each connection goes to the host's LocalStack on 127.0.0.1 (test/vm/serial-mux.ts): loopback at
// both ends, no IP between them. (LocalStack inside the guest did not even start within 7 minutes
// under TCG on this 2-core machine.)
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { VmTestEvent } from '../vm/event-reporter.ts';
import { serveDemux } from '../vm/serial-mux.ts';
import { ec2Endpoint } from './localstack.ts';

export const ROOT = join(import.meta.dirname, '..', '..');
const SERIAL_PORT = 'vpc-ipam.localstack';

export interface VmPhase {
  /** Printed as the host test's name. */
  label: string;
  iptables: 'nft' | 'legacy';
  /** Test files for `node --test`; or */
  files?: string[];
  /** a script to run with node instead (a benchmark), arguments included. */
  script?: string[];
  /** Passed to --test-name-pattern. */
  namePattern?: string;
  /** Extra environment for the phase's tests. */
  env?: Record<string, string>;
}

export interface VmPlan {
  phases: VmPhase[];
  /** Where the guest writes events and logs (shared read-write with the guest). */
  outDir: string;
  timeoutMs: number;
  memory?: string;
  cpus?: number;
}

export interface PhaseOutcome {
  phase: VmPhase;
  /** null: the phase never finished (guest crash, timeout). */
  exitCode: number | null;
  events: VmTestEvent[];
  ms: number | null;
}

export interface VmOutcome {
  phases: PhaseOutcome[];
  /** Guest-side failure before or between phases (LocalStack would not start, ...). */
  guestError: string | null;
  consoleLog: string;
  bootToEndMs: number;
  kernel: string;
}

export function toolsDir(): string {
  return (
    process.env.VPC_IPAM_TOOLS ??
    join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? homedir(), '.cache'), 'vpc-ipam', 'tools')
  );
}

/** The guest kernel (newest Debian 6.1 image in /boot) and vng; throws naming what is missing. */
export function vmTools(): { kernel: string; vng: string; path: string } {
  const missing: string[] = [];
  const kernels = existsSync('/boot')
    ? readdirSync('/boot')
        .filter((f) => /^vmlinuz-6\.1\.0-\d+-amd64$/.test(f))
        .sort((a, b) => Number(b.split('-')[2]) - Number(a.split('-')[2]))
    : [];
  if (kernels.length === 0) missing.push('Debian kernel /boot/vmlinuz-6.1.0-*-amd64 (linux-image-amd64)');
  if (!existsSync('/usr/bin/qemu-system-x86_64')) missing.push('qemu-system-x86_64 (qemu-system-x86)');
  const vngBin = join(toolsDir(), 'vng', 'bin');
  if (!existsSync(join(vngBin, 'vng'))) missing.push(`virtme-ng (${vngBin}/vng)`);
  if (missing.length > 0) {
    throw new Error(
      `VM suites need: ${missing.join('; ')}. Run scripts/setup.sh (it calls scripts/setup-vm.sh)`,
    );
  }
  // vng finds virtme-run and (if built) virtiofsd on PATH
  const path = [vngBin, join(toolsDir(), 'bin'), process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(
    ':',
  );
  return { kernel: join('/boot', kernels[0]!), vng: join(vngBin, 'vng'), path };
}

function readEvents(file: string): VmTestEvent[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as VmTestEvent];
      } catch {
        return [];
      }
    });
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Boots the VM once and runs the plan's phases in it; never throws for test failures. */
export async function runInVm(plan: VmPlan): Promise<VmOutcome> {
  const tools = vmTools();
  rmSync(plan.outDir, { recursive: true, force: true });
  mkdirSync(plan.outDir, { recursive: true });
  const guestPlan = {
    phases: plan.phases,
    serialPort: SERIAL_PORT,
    localstackPort: 4566, // the guest's own loopback: no clash with the host's LocalStacks
    testTimeoutMs: plan.timeoutMs,
  };
  writeFileSync(join(plan.outDir, 'plan.json'), JSON.stringify(guestPlan));
  const consoleLog = join(plan.outDir, 'console.log');
  const out = openSync(consoleLog, 'a');
  const node = process.execPath;
  const guest = join(ROOT, 'test', 'vm', 'guest.ts');
  const started = performance.now();
  const args = [
    '-r',
    tools.kernel,
    '--memory',
    plan.memory ?? '2G',
    '--cpus',
    String(plan.cpus ?? 2),
    '--disable-kvm',
    '--rwdir',
    plan.outDir,
    '--exec',
    // vng runs this with the guest's shell; both paths are ours and contain no spaces (checked)
    `${node} ${guest} ${plan.outDir}`,
  ];
  for (const p of [node, guest, plan.outDir]) {
    if (!/^[\w./+-]+$/.test(p)) throw new Error(`path not usable in the guest command: ${p}`);
  }
  // qemu joins the guest's serial port to this socket; its connections go to the host LocalStack
  const muxPath = join(plan.outDir, 'localstack.sock');
  const lsPort = Number(new URL(ec2Endpoint()).port || 80);
  const mux = createServer((conn) => serveDemux(conn, lsPort));
  await new Promise<void>((resolve, reject) => {
    mux.once('error', reject);
    mux.listen(muxPath, resolve);
  });
  args.splice(
    args.indexOf('--exec'),
    0,
    `--qemu-opts=-chardev socket,id=vpcipamls,path=${muxPath} -device virtserialport,name=${SERIAL_PORT},chardev=vpcipamls`,
  );
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(tools.vng, args, {
      cwd: ROOT,
      env: { ...process.env, PATH: tools.path },
      stdio: ['ignore', out, out],
      detached: true, // own process group: a timeout ends qemu and virtiofsd too
    });
    const kill = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {}
    };
    const timer = setTimeout(kill, plan.timeoutMs);
    // The guest's last act is writing status.json with done: true; a VM that does not power off
    // within 60 s after that is ended here.
    let doneSince = 0;
    const watch = setInterval(() => {
      if (!readJson<{ done?: boolean }>(join(plan.outDir, 'status.json'))?.done) return;
      doneSince ||= Date.now();
      if (Date.now() - doneSince > 60_000) kill();
    }, 2000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      clearInterval(watch);
      resolve(c);
    });
    child.on('error', () => resolve(null));
  });
  mux.close();
  const bootToEndMs = Math.round(performance.now() - started);
  const status = readJson<{ error?: string; phases?: { exitCode: number; ms: number }[] }>(
    join(plan.outDir, 'status.json'),
  );
  let guestError = status?.error ?? null;
  if (!status) {
    guestError =
      bootToEndMs >= plan.timeoutMs
        ? `the VM did not finish within ${plan.timeoutMs / 1000} s`
        : `the VM ended (vng exit ${code}) before the guest wrote its status`;
  }
  const phases = plan.phases.map((phase, i) => ({
    phase,
    exitCode: status?.phases?.[i]?.exitCode ?? null,
    ms: status?.phases?.[i]?.ms ?? null,
    events: readEvents(join(plan.outDir, `events-${i}.jsonl`)),
  }));
  return { phases, guestError, consoleLog, bootToEndMs, kernel: tools.kernel };
}

interface EventNode {
  event: VmTestEvent;
  children: EventNode[];
}

/** Events arrive children first (completion order); rebuild the tree from their nesting. */
export function eventTree(events: VmTestEvent[]): { roots: EventNode[]; diagnostics: string[] } {
  const pending: EventNode[] = [];
  const diagnostics: string[] = [];
  for (const event of events) {
    if (event.kind === 'diagnostic') {
      diagnostics.push(event.name);
      continue;
    }
    const node: EventNode = { event, children: [] };
    while (pending.length > 0 && pending.at(-1)!.event.nesting > event.nesting) {
      node.children.unshift(pending.pop()!);
    }
    pending.push(node);
  }
  return { roots: pending, diagnostics };
}

function replayError(e: VmTestEvent): Error {
  const err = new Error(`(in the VM) ${e.error?.message ?? 'failed'}`);
  if (e.error?.stack) err.stack = `${err.message}\n    guest stack:\n${e.error.stack}`;
  return err;
}

async function replayNode(t: TestContext, n: EventNode): Promise<void> {
  const e = n.event;
  if (e.skip !== undefined) return void (await t.test(e.name, { skip: String(e.skip) }));
  if (e.todo !== undefined) return void (await t.test(e.name, { todo: String(e.todo) }));
  await t.test(e.name, async (st) => {
    for (const child of n.children) await replayNode(st, child);
    // a suite whose children failed fails by itself; anything else fails with the guest's error
    if (e.kind === 'fail' && !n.children.some((c) => c.event.kind === 'fail')) throw replayError(e);
  });
}

/**
 * Replays one phase as subtests of t. Fails when the phase did not finish, when node --test in the
 * guest failed without a failing test to show for it, or when it ran no test at all.
 */
export async function replayPhase(t: TestContext, outcome: VmOutcome, index: number): Promise<void> {
  const { phase, exitCode, events, ms } = outcome.phases[index]!;
  const { roots, diagnostics } = eventTree(events);
  for (const d of diagnostics) t.diagnostic(d);
  if (ms !== null) t.diagnostic(`phase ran ${Math.round(ms / 1000)} s in the VM (${phase.iptables})`);
  for (const r of roots) await replayNode(t, r);
  const where = `see ${outcome.consoleLog} and ${join(outcome.consoleLog, '..', `spec-${index}.log`)}`;
  if (exitCode === null) {
    throw new Error(`phase did not finish: ${outcome.guestError ?? 'unknown reason'}; ${where}`);
  }
  if (roots.length === 0) throw new Error(`no test ran in the VM (node --test exit ${exitCode}); ${where}`);
  if (exitCode !== 0 && !events.some((e) => e.kind === 'fail')) {
    throw new Error(`node --test in the VM exited ${exitCode} with no failing test; ${where}`);
  }
}
