import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runCli } from '../../../src/ipam-daemon/cli.ts';
import { type Harness, startHarness } from './harness.ts';

const run = promisify(execFile);

describe('vpc-ipam CLI', () => {
  let h: Harness;
  before(async () => {
    // Resync on every loop (1 ms interval) so a test can make drift visible at once.
    h = await startHarness({
      socket: true,
      realClock: true,
      pool: { warmEniTarget: 0, resyncIntervalMs: 1 },
      // The IPs this test assigns are seconds old: no grace for the daemon's own recent changes.
      daemon: { resync: { graceMs: 0 } },
    });
    await h.daemon.reconcileNow();
    await h.daemon.allocate({
      containerId: 'abcdef0123456789',
      ifName: 'eth0',
      podNamespace: 'kube-system',
      podName: 'coredns-1',
    });
  });
  after(async () => h.close());

  test('prints the pool as a table (the real executable, over the socket)', async () => {
    const { stdout } = await run(process.execPath, [
      resolve('src/ipam-daemon/cli.ts'),
      '--socket',
      h.socketPath,
    ]);
    const lines = stdout.split('\n');
    assert.match(lines[0] ?? '', /^instance i-0123456789abcdef0 \(m5\.large\), max pods 29$/);
    assert.match(lines[1] ?? '', /^IPs: 9 total, 1 assigned, 0 cooling, 8 free, 0 lost$/);
    assert.ok(!stdout.includes('LOST:'), 'no warning when nothing is lost');
    const header = lines.find((l) => l.startsWith('DEV'));
    assert.match(header ?? '', /^DEV\s+INTERFACE\s+MAC\s+SUBNET\s+TOTAL\s+ASSIGNED\s+COOLING\s+FREE\s+LOST$/);
    assert.match(stdout, /\n0\s+eni-00000000\s+02:00:00:00:00:00\s+subnet-aaaa0001\s+9\s+1\s+0\s+8\s+0\n?/);
  });

  test('a lost pod IP (drift) shows in the counts, the LOST column and a warning line', async () => {
    // The pod's IP removed behind the daemon's back; the resync marks it lost.
    const ip = h.daemon.list()[0]!.ip;
    h.provider.removeIpOutOfBand(ip);
    await new Promise((r) => setTimeout(r, 5));
    await h.daemon.reconcileNow();
    assert.equal(h.daemon.status().lost, 1, 'the resync marked it lost');
    try {
      const out: string[] = [];
      assert.equal(await runCli(['--socket', h.socketPath], {}, (s) => out.push(s)), 0);
      const text = out.join('\n');
      assert.match(text, /\nIPs: 9 total, 1 assigned, 0 cooling, 8 free, 1 lost\n/);
      assert.match(text, /\nLOST: 1 pod IP\(s\) are gone from the cloud .*delete them/);
      assert.match(text, /\n0\s+eni-00000000\s+02:00:00:00:00:00\s+subnet-aaaa0001\s+9\s+1\s+0\s+8\s+1\n?/);
    } finally {
      h.provider.putIpBackOutOfBand(h.provider.interfaces[0]!.id, ip);
      await new Promise((r) => setTimeout(r, 5));
      await h.daemon.reconcileNow();
    }
  });

  test('allocations table and --json', async () => {
    const out: string[] = [];
    assert.equal(await runCli(['allocations', '--socket', h.socketPath], {}, (s) => out.push(s)), 0);
    assert.match(out[0] ?? '', /kube-system\/coredns-1\s+abcdef012345\/eth0/);
    out.length = 0;
    assert.equal(await runCli(['--json', '--socket', h.socketPath], {}, (s) => out.push(s)), 0);
    assert.equal(JSON.parse(out[0] ?? '').assigned, 1);
  });

  test('a missing daemon is a clear error and exit 1; bad usage exit 2', async () => {
    const out: string[] = [];
    assert.equal(await runCli([], { VPC_IPAM_SOCKET: '/nonexistent/ipamd.sock' }, (s) => out.push(s)), 1);
    assert.match(out[0] ?? '', /cannot reach vpc-ipamd at \/nonexistent\/ipamd\.sock/);
    assert.equal(await runCli(['--frobnicate'], {}, (s) => out.push(s)), 2);
  });
});
