// Keeps the main job true: runs `node scripts/demo.ts` (what `npm run demo` runs once setup, the
// CNI build and LocalStack are done) as a child process and asserts it passes every check.
//
// Needs: root, iproute2, iptables, LocalStack on VPC_IPAM_EC2_ENDPOINT (default
// http://127.0.0.1:4566; scripts/test.sh starts it). Fails (never skips) without them: the demo
// itself reports the missing piece as a failed check and exits 1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { listNetns } from '../helpers/netns.ts';

const ROOT = join(import.meta.dirname, '..', '..');

test('npm run demo: every check passes and nothing is left behind', { timeout: 300_000 }, async () => {
  const started = performance.now();
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'demo.ts')], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: process.env,
    });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => chunks.push(b));
    child.on('error', reject);
    const timer = setTimeout(() => child.kill('SIGTERM'), 240_000);
    child.on('close', (c) => {
      clearTimeout(timer);
      resolve({ code: c, out: Buffer.concat(chunks).toString('utf8') });
    });
  });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const lines = out.trimEnd().split('\n');
  const last = lines.at(-1) ?? '';
  const failures = lines.filter((l) => l.includes('✗'));
  assert.equal(
    code,
    0,
    `demo exited ${code} after ${seconds} s; failed checks:\n${failures.join('\n')}\n\n${out}`,
  );
  const m = /^demo: (\d+) checks passed, 0 failed$/.exec(last);
  assert.ok(m, `last line is the summary, got ${JSON.stringify(last)}`);
  assert.ok(Number(m[1]) >= 25, `the demo ran all its checks (${m[1]})`);
  assert.deepEqual(failures, []);
  // The demo names its netns <prefix>-fab, -n1, -p1...; it prints the prefix with the fabric.
  const prefix = /fabric (d[0-9a-f]{4})-fab/.exec(out)?.[1];
  assert.ok(prefix, 'the demo printed its netns prefix');
  assert.deepEqual(await listNetns(`${prefix}-`), [], 'no netns left behind');
  console.log(`# demo: ${m[1]} checks in ${seconds} s`);
});
