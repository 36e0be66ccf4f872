// Runs the real vpc-ipamd (src/ipam-daemon/main.ts) as a child process, as the DaemonSet would,
// and talks to it over its Unix socket. Shared by the LocalStack (and Azure) daemon scenarios.
// LocalStackNode: the seeded m5.large, its IMDS fake, a temp dir, and the env every LocalStack
// daemon runs with; tearDown() kills the daemons and removes what setUp() made.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Allocation, ApiError } from '../../../src/ipam-daemon/api-types.ts';
import type { ImdsFake } from '../../fakes/imds-aws.ts';
import {
  ec2Endpoint,
  LocalStackCluster,
  region,
  type SeedResult,
  startInstanceImds,
} from '../../helpers/localstack.ts';
import { call, type SocketResponse } from '../../unit/ipam-daemon/harness.ts';

export const MAIN = resolve('src/ipam-daemon/main.ts');

/** The /v1/allocate body for pod `id` in namespace default. */
export const allocateRequest = (id: string) => ({
  containerId: id,
  ifName: 'eth0',
  podNamespace: 'default',
  podName: id,
});

/**
 * POST /v1/allocate for pod `id` (namespace default) on the daemon at `socketPath`. While the pool
 * grows the answer is a retryable 503 pool-growing, which the runtime would retry: so does this,
 * every 250 ms for up to 15 s (a loaded machine's LocalStack can outlast the daemon's allocate
 * wait). Any other answer, and the last pool-growing one, is returned as it came.
 */
export async function allocateRetryingGrowth(socketPath: string, id: string): Promise<SocketResponse> {
  const req = allocateRequest(id);
  const growing = (r: SocketResponse) =>
    r.status === 503 && (r.body as ApiError | undefined)?.reason === 'pool-growing';
  let r = await call(socketPath, 'POST', '/v1/allocate', req);
  for (let wait = 0; growing(r) && wait < 60; wait++) {
    await new Promise((res) => setTimeout(res, 250));
    r = await call(socketPath, 'POST', '/v1/allocate', req);
  }
  return r;
}

/** allocateRetryingGrowth, asserting the pod got its IP (200). */
export async function allocatePod(socketPath: string, id: string): Promise<Allocation> {
  const r = await allocateRetryingGrowth(socketPath, id);
  assert.equal(r.status, 200, r.text);
  return r.body as Allocation;
}

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

type SeededInstance = SeedResult['instances'][number];

/** A daemon's node in the shared LocalStack: a fresh cluster, its m5.large, IMDSv2 for it. */
export class LocalStackNode {
  readonly cluster: LocalStackCluster;
  private readonly dirPrefix: string;
  // Each part as soon as it exists, so tearDown() removes what a half-done setUp() made.
  private imds: ImdsFake | undefined;
  private dir: string | undefined;
  private parts: { seed: SeedResult; instance: SeededInstance; imdsUrl: string; dir: string } | undefined;

  constructor(prefix: string) {
    this.cluster = new LocalStackCluster(prefix);
    this.dirPrefix = `${prefix}-`;
  }

  /** Fails loudly when LocalStack is down (see LocalStackCluster.seed). */
  async setUp(): Promise<void> {
    const seed = await this.cluster.seed();
    const instance = seed.instances.find((i) => i.type === 'm5.large');
    assert.ok(instance, 'the seed has an m5.large');
    this.imds = await startInstanceImds(instance.id, 200);
    this.dir = await mkdtemp(join(tmpdir(), this.dirPrefix));
    this.parts = { seed, instance, imdsUrl: this.imds.url, dir: this.dir };
  }

  private get ready() {
    if (!this.parts) throw new Error('LocalStackNode: setUp() did not complete');
    return this.parts;
  }
  get seed(): SeedResult {
    return this.ready.seed;
  }
  get instance(): SeededInstance {
    return this.ready.instance;
  }
  get workDir(): string {
    return this.ready.dir;
  }

  /** The daemon env on this node; suites add their pool knobs on top. */
  env(): Record<string, string> {
    const { imdsUrl, dir } = this.ready;
    return {
      CLOUD_PROVIDER: 'aws',
      CLUSTER_NAME: this.cluster.name,
      AWS_REGION: region(),
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      VPC_IPAM_EC2_ENDPOINT: ec2Endpoint(),
      VPC_IPAM_IMDS_ENDPOINT: imdsUrl,
      VPC_IPAM_AWS_PICK_ADDRESSES: 'true',
      VPC_IPAM_SOCKET: join(dir, 'run', 'ipamd.sock'),
      VPC_IPAM_CHECKPOINT: join(dir, 'state', 'checkpoint.json'),
      VPC_IPAM_NODE_SETUP: 'false', // never touch the root netns's routes with VPC addresses
      LOG_LEVEL: 'debug',
    };
  }

  /** Kills every daemon started here, then removes whatever setUp() got to (even half-way). */
  async tearDown(): Promise<void> {
    await killAllDaemons();
    await this.imds?.close();
    await this.cluster.delete();
    if (this.dir && !process.env.KEEP_TEST_DIRS) await rm(this.dir, { recursive: true, force: true });
  }
}
