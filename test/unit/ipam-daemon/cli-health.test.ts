// `vpc-ipam health [--ready]`, the DaemonSet's exec probes: the real CLI as a child process against
// a real socket server (daemon on the in-memory cloud), a daemon still starting, a missing socket
// and a daemon that accepts connections but never answers.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HEALTH_TIMEOUT_MS } from '../../../src/ipam-daemon/cli.ts';
import type { NodeInfo } from '../../../src/providers/types.ts';
import { MemoryProvider } from '../../fakes/memory-provider.ts';
import { type Harness, startHarness } from './harness.ts';

const CLI = resolve(import.meta.dirname, '../../../src/ipam-daemon/cli.ts');

/** Runs the CLI; resolves with its exit code, output and wall time (never rejects on a non-zero exit). */
function health(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      [CLI, 'health', ...args],
      { timeout: 15_000, env: { PATH: process.env.PATH ?? '', ...env } },
      (err, stdout, stderr) => {
        const ms = performance.now() - t0;
        if (err && typeof err.code !== 'number') return fail(err);
        done({ code: err ? (err.code as number) : 0, out: `${stdout}${stderr}`.trim(), ms });
      },
    );
  });
}

describe('vpc-ipam health', () => {
  test('a missing socket: exit 1 naming the path', async () => {
    const r = await health(['--socket', '/nonexistent/vpc-ipam/ipamd.sock']);
    assert.equal(r.code, 1, r.out);
    assert.equal(
      r.out,
      'not healthy: no socket at /nonexistent/vpc-ipam/ipamd.sock (vpc-ipamd not started yet?)',
    );
    const ready = await health(['--ready', '--socket', '/nonexistent/vpc-ipam/ipamd.sock']);
    assert.equal(ready.code, 1);
    assert.match(ready.out, /^not ready: no socket at /);
  });

  test('bad usage: exit 2', async () => {
    assert.equal((await health(['--socket'])).code, 2);
    const r = await health(['--frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.out, /unknown argument "--frobnicate"/);
  });

  test('a daemon that accepts but never answers fails within the bound', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ipam-health-'));
    const sockets: Socket[] = [];
    const mute: Server = createServer((s) => sockets.push(s));
    const path = join(dir, 'mute.sock');
    await new Promise<void>((r) => mute.listen(path, r));
    try {
      const r = await health(['--socket', path]);
      assert.equal(r.code, 1, r.out);
      assert.equal(
        r.out,
        `not healthy: vpc-ipamd at ${path} did not answer /healthz within ${HEALTH_TIMEOUT_MS} ms`,
      );
      assert.ok(r.ms >= HEALTH_TIMEOUT_MS, `gave up after ${r.ms} ms, before the bound`);
      assert.ok(r.ms < HEALTH_TIMEOUT_MS + 5000, `took ${r.ms} ms`);
      assert.ok(sockets.length >= 1, 'the CLI did connect');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => mute.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('vpc-ipam health against a daemon starting up', () => {
  let h: Harness;
  let releaseDiscovery: () => void = () => {};

  before(async () => {
    // Node discovery (the first thing start() does) waits until the test lets it go.
    const provider = new MemoryProvider();
    const gate = new Promise<void>((r) => {
      releaseDiscovery = r;
    });
    const describeNode = provider.describeNode.bind(provider);
    provider.describeNode = async (): Promise<NodeInfo> => {
      await gate;
      return describeNode();
    };
    h = await startHarness({ provider, socket: true, realClock: true, startInBackground: true });
  });
  after(async () => {
    releaseDiscovery();
    await h?.started.catch(() => {});
    await h?.close();
  });

  test('alive but not ready while starting (503 with the reason); ready once the pool is rebuilt', async () => {
    assert.equal(h.daemon.ready, false);
    const live = await health(['--socket', h.socketPath]);
    assert.equal(live.code, 0, live.out);
    assert.equal(live.out, `vpc-ipamd at ${h.socketPath} is healthy`);
    const notReady = await health(['--ready', '--socket', h.socketPath]);
    assert.equal(notReady.code, 1, notReady.out);
    assert.equal(notReady.out, 'not ready: vpc-ipamd answered /readyz with 503: daemon is starting');

    releaseDiscovery();
    await h.started;
    const ready = await health(['--ready', '--socket', h.socketPath]);
    assert.equal(ready.code, 0, ready.out);
    assert.equal(ready.out, `vpc-ipamd at ${h.socketPath} is ready`);
    // VPC_IPAM_SOCKET works as for the other commands (the container's env in the probe).
    const byEnv = await health(['--ready'], { VPC_IPAM_SOCKET: h.socketPath });
    assert.equal(byEnv.code, 0, byEnv.out);
  });

  test('not ready again while draining', async () => {
    await h.started;
    const stopping = h.daemon.stop(1000);
    try {
      const r = await health(['--ready', '--socket', h.socketPath]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /^not ready: vpc-ipamd answered \/readyz with 503: daemon is (stopping|stopped)$/);
    } finally {
      await stopping;
    }
  });
});
