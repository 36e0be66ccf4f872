// The static shim (dist/vpc-cni, src/cni/shim) as the runtime calls it: against the real socket
// server + Daemon, against a stand-in server for the answers a daemon can give (a relayed result,
// an older daemon without /v1/cni, a 500), and with no daemon at all (the Node fallback answers).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ensurePluginBuilt } from '../../helpers/plugin-binary.ts';
import { standIn } from '../../helpers/stand-in-daemon.ts';
import { startHarness } from '../ipam-daemon/harness.ts';

function runShim(
  bin: string,
  env: Record<string, string>,
  conf: Record<string, unknown>,
): Promise<{ code: number; out: Record<string, unknown> | null; text: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env } });
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const text = Buffer.concat(out).toString('utf8');
      let parsed: Record<string, unknown> | null = null;
      try {
        parsed = text.trim() === '' ? null : JSON.parse(text);
      } catch {
        // relayed as is
      }
      resolve({ code: code ?? -1, out: parsed, text });
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

describe('vpc-cni shim', () => {
  let bin: string;
  let dir: string;
  before(async () => {
    bin = await ensurePluginBuilt();
    dir = await mkdtemp(join(tmpdir(), 'cni-shim-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  for (const framing of ['frames', 'http'] as const) {
    test(`relays the daemon answer (stdout and exit code) and forwards only CNI_* variables (a daemon speaking ${framing === 'frames' ? 'frames only' : 'HTTP/1.1 only, as before frames'})`, async () => {
      const sock = join(dir, `relay-${framing}.sock`);
      const d = await standIn(
        sock,
        () => ({
          status: 200,
          body: JSON.stringify({ stdout: '{"x":1}\n', exitCode: 3 }),
        }),
        { framing },
      );
      try {
        const r = await runShim(
          bin,
          {
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: 'c1',
            CNI_IFNAME: 'eth0',
            CNI_NETNS: '/x',
            AWS_SECRET_ACCESS_KEY: 's3cret',
          },
          { cniVersion: '1.0.0', socketPath: sock },
        );
        assert.equal(r.code, 3);
        assert.equal(r.text, '{"x":1}\n');
        assert.equal(d.seen.length, 1);
        assert.equal(d.seen[0]?.url, '/v1/cni');
        assert.equal(d.seen[0]?.framing, framing);
        const sent = JSON.parse(d.seen[0]?.body ?? '{}') as { env: Record<string, string>; stdin: string };
        assert.deepEqual(Object.keys(sent.env).sort(), [
          'CNI_COMMAND',
          'CNI_CONTAINERID',
          'CNI_IFNAME',
          'CNI_NETNS',
        ]);
        assert.equal(JSON.parse(sent.stdin).socketPath, sock, 'stdin forwarded byte for byte');
      } finally {
        await d.close();
      }
    });
  }

  test('a daemon error is a CNI "try again later", not a fallback run', async () => {
    const sock = join(dir, 'err.sock');
    const d = await standIn(sock, () => ({ status: 500, body: '{"code":"INTERNAL","message":"boom"}' }));
    try {
      const r = await runShim(bin, { CNI_COMMAND: 'VERSION' }, { cniVersion: '1.0.0', socketPath: sock });
      assert.equal(r.code, 1);
      assert.equal(r.out?.code, 11);
      assert.equal(r.out?.cniVersion, '1.0.0');
      assert.match(String(r.out?.msg), /HTTP 500.*boom/);
    } finally {
      await d.close();
    }
  });

  test("a daemon that never answers: the shim gives up after the config's timeoutMs + answerMarginMs", async () => {
    const sock = join(dir, 'silent.sock');
    const held: Socket[] = [];
    const silent = createServer((c) => held.push(c)); // accepts, reads nothing, answers nothing
    await new Promise<void>((r) => silent.listen(sock, r));
    try {
      const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/x' };
      const started = performance.now();
      const r = await runShim(bin, env, {
        cniVersion: '1.0.0',
        socketPath: sock,
        timeoutMs: 300,
        answerMarginMs: 200,
      });
      const took = performance.now() - started;
      assert.equal(r.code, 1);
      assert.equal(r.out?.code, 11, r.text);
      assert.match(String(r.out?.msg), /did not answer/);
      // The defaults (30 s + 15 s) would hold it 45 s; a margin ignored would hold it 15.3 s.
      assert.ok(took >= 450 && took < 10_000, `gave up after ${Math.round(took)} ms`);
    } finally {
      for (const c of held) c.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  test('no daemon, or one without /v1/cni: the Node plugin beside the shim answers', async () => {
    const missing = await runShim(
      bin,
      { CNI_COMMAND: 'VERSION' },
      { cniVersion: '1.0.0', socketPath: join(dir, 'none.sock') },
    );
    assert.equal(missing.code, 0);
    assert.ok((missing.out?.supportedVersions as string[] | undefined)?.includes('1.1.0'));
    // ADD without a daemon: the shim says why, as "try again later", without starting the fallback
    // (it could only say the same: nothing can allocate).
    const add = await runShim(
      bin,
      {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c1',
        CNI_IFNAME: 'eth0',
        CNI_NETNS: '/proc/self/ns/net',
        CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1',
      },
      {
        cniVersion: '1.0.0',
        name: 'vpc',
        type: 'vpc-cni',
        socketPath: join(dir, 'none.sock'),
        logFile: join(dir, 'fb.log'),
      },
    );
    assert.equal(add.code, 1);
    assert.equal(add.out?.code, 11);
    assert.match(String(add.out?.msg), /vpc-ipamd is not reachable on .*none\.sock.*try again later/);
    assert.ok(!existsSync(join(dir, 'fb.log')), 'the Node fallback did not run (it would log the ADD)');
    const sock = join(dir, 'old.sock');
    const d = await standIn(sock, () => ({
      status: 404,
      body: '{"code":"NOT_FOUND","message":"no such endpoint"}',
    }));
    try {
      const r = await runShim(bin, { CNI_COMMAND: 'VERSION' }, { cniVersion: '0.4.0', socketPath: sock });
      assert.equal(r.code, 0);
      assert.equal(r.out?.cniVersion, '0.4.0');
      assert.equal(d.seen.length, 1, 'the daemon was asked first');
    } finally {
      await d.close();
    }
  });

  test('a GC config listing 5,000 attachments reaches the daemon whole (stdin and /v1/cni caps)', async () => {
    const h = await startHarness({ socket: true });
    try {
      const attachments = Array.from({ length: 5000 }, (_, n) => ({
        containerID: `${n.toString(16).padStart(8, '0')}${'e'.repeat(56)}`,
        ifname: 'eth0',
      }));
      // cniVersion 1.0.0 has no GC: the daemon parses the whole config, then answers the version
      // error, so nothing on this host is touched.
      const r = await runShim(
        bin,
        { CNI_COMMAND: 'GC' },
        {
          cniVersion: '1.0.0',
          name: 'vpc',
          type: 'vpc-cni',
          socketPath: h.socketPath,
          logFile: join(h.dir, 'cni.log'),
          'cni.dev/valid-attachments': attachments,
        },
      );
      assert.equal(r.out?.code, 1, r.text.slice(0, 300)); // incompatible version, from the daemon
      assert.match(String(r.out?.msg), /GC needs cniVersion 1\.1\.0/);
    } finally {
      await h.close();
    }
  });

  test('against the real daemon: the command runs in vpc-ipamd (its log line says via daemon)', async () => {
    const h = await startHarness({ socket: true });
    try {
      await h.daemon.reconcileNow();
      const logFile = join(h.dir, 'cni.log');
      const r = await runShim(
        bin,
        {
          CNI_COMMAND: 'ADD',
          CNI_CONTAINERID: 'c1',
          CNI_IFNAME: 'eth0',
          CNI_NETNS: join(h.dir, 'no-such-netns'),
          CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1',
        },
        { cniVersion: '1.0.0', name: 'vpc', type: 'vpc-cni', socketPath: h.socketPath, logFile },
      );
      assert.equal(r.code, 1);
      assert.equal(r.out?.code, 4);
      assert.match(String(r.out?.msg), /does not exist/);
      const lines = (await readFile(logFile, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.equal(lines.at(-1)?.via, 'daemon');
      assert.equal(
        lines.at(-1)?.pid,
        process.pid,
        'logged by the daemon process (this test), not a plugin process',
      );
      assert.equal(h.daemon.list().length, 0);
    } finally {
      await h.close();
    }
  });
});
