// Small process helpers for the cluster test bed: binaries from the tools cache, children with
// their output in a log file, free loopback ports, and waiting for a condition with a reason.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const K8S_VERSION = process.env.K8S_VERSION ?? 'v1.34.4';

export function toolsDir(): string {
  if (process.env.VPC_IPAM_TOOLS) return process.env.VPC_IPAM_TOOLS;
  const cache = process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? '/root', '.cache');
  return join(cache, 'vpc-ipam', 'tools');
}

/** A Kubernetes binary built by cluster/build-k8s.sh; throws naming the script when it is missing. */
export function k8sBin(name: string): string {
  const path = join(toolsDir(), 'k8s', K8S_VERSION, name);
  if (!existsSync(path))
    throw new Error(`${path} is missing: run bash cluster/build-k8s.sh (scripts/setup.sh does)`);
  return path;
}

/** Any binary from the tools cache's bin/ (ec2-metadata-mock, helm). */
export function toolBin(name: string): string {
  const path = join(toolsDir(), 'bin', name);
  if (!existsSync(path)) throw new Error(`${path} is missing: run bash scripts/setup.sh`);
  return path;
}

/** A port the kernel says is free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Child {
  name: string;
  proc: ChildProcess;
  log: string;
  stop(): Promise<void>;
}

/** Spawns a long-running child with stdout+stderr appended to log; stop() = SIGTERM, then SIGKILL. */
export function startChild(
  name: string,
  file: string,
  args: string[],
  log: string,
  env?: NodeJS.ProcessEnv,
): Child {
  const fd = openSync(log, 'a');
  const proc = spawn(file, args, { stdio: ['ignore', fd, fd], env: env ?? process.env });
  return { name, proc, log, stop: () => stopProcess(proc) };
}

export function stopProcess(proc: ChildProcess, graceMs = 8000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

/** Polls check() until it returns a value (not undefined); throws with the last reason after withinMs. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  withinMs: number,
  everyMs = 250,
  alive?: Child,
): Promise<T> {
  const deadline = Date.now() + withinMs;
  let last = '';
  while (Date.now() < deadline) {
    if (alive && alive.proc.exitCode !== null)
      throw new Error(
        `${alive.name} exited ${alive.proc.exitCode} while waiting for ${what}; see ${alive.log}`,
      );
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(
    `${what}: not within ${withinMs} ms${last ? ` (${last})` : ''}${alive ? `; see ${alive.log}` : ''}`,
  );
}
