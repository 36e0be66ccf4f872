// Runs the real vpc-ipamd (src/ipam-daemon/main.ts) as a child process, as the DaemonSet would,
// and talks to it over its Unix socket. Shared by the LocalStack (and Azure) daemon scenarios.

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { resolve } from 'node:path';
import { call } from '../../unit/ipam-daemon/harness.ts';

export const MAIN = resolve('src/ipam-daemon/main.ts');

/** Every daemon started here, so a suite's after() can kill them all even when a test failed. */
export const started = new Set<DaemonProcess>();

export async function killAllDaemons(): Promise<void> {
  await Promise.all([...started].map((d) => d.stop('SIGKILL')));
}

export interface DaemonProcess {
  child: ChildProcess;
  socketPath: string;
  logPath: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Send a signal and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start the daemon with `env` (on top of a minimal PATH/HOME); resolves once /readyz answers 200. */
export async function startDaemonProcess(
  env: Record<string, string>,
  opts: { logPath: string; readyTimeoutMs?: number },
): Promise<DaemonProcess> {
  const socketPath = env.VPC_IPAM_SOCKET;
  if (!socketPath) throw new Error('startDaemonProcess: env.VPC_IPAM_SOCKET is required');
  // Another daemon answering here would make our readiness check lie.
  if (
    await call(socketPath, 'GET', '/readyz').then(
      () => true,
      () => false,
    )
  ) {
    throw new Error(`a daemon already answers on ${socketPath}; stop it first`);
  }
  const log = createWriteStream(opts.logPath, { flags: 'a' });
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  let exitedEarly = false;
  void exited.then(() => {
    exitedEarly = true;
  });
  for (;;) {
    if (exitedEarly) throw new Error(`vpc-ipamd exited during startup; see ${opts.logPath}`);
    try {
      const r = await call(socketPath, 'GET', '/readyz');
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`vpc-ipamd not ready within ${opts.readyTimeoutMs ?? 30_000} ms; see ${opts.logPath}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const proc: DaemonProcess = {
    child,
    socketPath,
    logPath: opts.logPath,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  started.add(proc);
  void exited.then(() => started.delete(proc));
  return proc;
}
