// Network-namespace helpers for the e2e suites: preflight (root + tools, failing loudly), named
// netns with per-run prefixes, commands inside a netns, and cleanup that runs even after failures.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync } from 'node:fs';
import { promisify } from 'node:util';

const pexec = promisify(execFile);

/** Throws (so the suite FAILS, never skips) unless we are root and every tool is on PATH. */
export function requireNetnsPrivileges(
  tools: string[] = ['ip', 'nsenter', 'iptables-save', 'iptables-restore'],
): void {
  if (process.getuid?.() !== 0) {
    throw new Error('e2e data-plane tests need root (network namespaces, veth, iptables); run them as root');
  }
  const path = (process.env.PATH ?? '').split(':');
  const missing = tools.filter(
    (t) =>
      !path.some((dir) => {
        try {
          accessSync(`${dir}/${t}`, constants.X_OK);
          return true;
        } catch {
          return false;
        }
      }),
  );
  if (missing.length > 0)
    throw new Error(`e2e data-plane tests need these tools on PATH: ${missing.join(', ')}`);
}

/** A short per-run prefix (interface names are limited to 15 characters). */
export function runPrefix(): string {
  return `t${randomBytes(2).toString('hex')}`;
}

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

export async function run(
  file: string,
  args: string[],
  input?: string,
): Promise<{ stdout: string; stderr: string }> {
  const p = pexec(file, args, { maxBuffer: 16 << 20 });
  if (input !== undefined) {
    // a tool that fails before reading stdin must not turn into an uncaught EPIPE
    p.child.stdin?.on('error', () => {});
    p.child.stdin?.end(input);
  }
  try {
    return await p;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${err.stderr?.trim() || err.message}`);
  }
}

/** One end of a veth pair: its name, the netns it lives in, and optionally its MAC. */
export interface VethEnd {
  name: string;
  ns: string;
  mac?: string;
}

/** Creates a veth pair whose two ends land directly in their namespaces (one `ip link add`). */
export function addVethPair(a: VethEnd, b: VethEnd): Promise<{ stdout: string; stderr: string }> {
  const end = (e: VethEnd) => [e.name, ...(e.mac ? ['address', e.mac] : []), 'netns', e.ns];
  return run('ip', ['link', 'add', ...end(a), 'type', 'veth', 'peer', 'name', ...end(b)]);
}

/** `ip` inside a named netns (or the root netns when ns is null). */
export function ip(ns: string | null, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run('ip', ns ? ['-n', ns, ...args] : args);
}

export async function ipBatch(ns: string | null, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await run('ip', [...(ns ? ['-n', ns] : []), '-batch', '-'], `${lines.join('\n')}\n`);
}

export async function ipJson<T = Record<string, unknown>>(
  ns: string | null,
  ...args: string[]
): Promise<T[]> {
  const { stdout } = await ip(ns, '-j', ...args);
  return stdout.trim() === '' ? [] : (JSON.parse(stdout) as T[]);
}

export function nsExec(ns: string, file: string, args: string[], input?: string) {
  return run('ip', ['netns', 'exec', ns, file, ...args], input);
}

/** Tracks what a test created and removes it in reverse order; every step is best-effort. */
export class Cleanup {
  private readonly steps: { what: string; fn: () => Promise<unknown> | unknown }[] = [];
  add(what: string, fn: () => Promise<unknown> | unknown): void {
    this.steps.push({ what, fn });
  }
  /** Runs every step, newest first; onStep (optional) hears each step's name and duration. */
  async run(onStep?: (what: string, ms: number) => void): Promise<string[]> {
    const errors: string[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      const t0 = performance.now();
      try {
        await step.fn();
        onStep?.(step.what, performance.now() - t0);
      } catch (e) {
        errors.push(`${step.what}: ${(e as Error).message}`);
      }
    }
    return errors;
  }
}

export async function createNetns(name: string, cleanup: Cleanup): Promise<string> {
  await run('ip', ['netns', 'add', name]);
  cleanup.add(`netns ${name}`, async () => {
    // a test may already have deleted it (e.g. "DEL after the netns is gone")
    if (existsSync(netnsPath(name))) await run('ip', ['netns', 'del', name]);
  });
  await ip(name, 'link', 'set', 'lo', 'up');
  return netnsPath(name);
}

/** Every netns whose name starts with the prefix (leak check). */
export async function listNetns(prefix: string): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}
