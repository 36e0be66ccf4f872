// localstack/start.sh and stop.sh: a real LocalStack started on a free port and stopped again,
// a second start detected, the shared instance detected and left alone, bad input refused.
// Needs the venv from localstack/setup-venv.sh (scripts/setup.sh runs it).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from '../../../cluster/proc.ts';
import { ec2Endpoint, requireLocalStack } from '../../helpers/localstack.ts';

const run = promisify(execFile);
const root = join(import.meta.dirname, '../../..');

async function script(name: string, env: Record<string, string>) {
  try {
    const { stdout, stderr } = await run('bash', [join(root, 'localstack', name)], {
      env: { ...process.env, ...env },
      timeout: 150_000,
    });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/_localstack/health`, {
      signal: AbortSignal.timeout(2000),
    });
    return res.ok;
  } catch {
    return false;
  }
}

let port = 0;
const setup = async () => {
  await requireLocalStack();
  port = await freePort();
};
const teardown = async () => {
  if (port) await script('stop.sh', { LOCALSTACK_PORT: String(port) });
};

// Outside the suite, so a missing LocalStack counts as a failed test, not only as cancelled ones.
test('LocalStack is reachable', () => requireLocalStack());

describe('localstack/start.sh + stop.sh', () => {
  before(setup);
  after(teardown);

  test('starts LocalStack on a free port, detects the second start, stops it', async () => {
    const env = { LOCALSTACK_PORT: String(port) };
    const first = await script('start.sh', env);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, new RegExp(`ready on http://127.0.0.1:${port}`));
    assert.ok(await healthy(port));

    const second = await script('start.sh', env);
    assert.equal(second.code, 0, second.out);
    assert.match(second.out, /already running .*started by start\.sh/);

    const stop = await script('stop.sh', env);
    assert.equal(stop.code, 0, stop.out);
    assert.match(stop.out, /stopped/);
    assert.equal(await healthy(port), false, 'still answering after stop.sh');
    const again = await script('stop.sh', env);
    assert.match(again.out, /nothing started by start\.sh/);
  });

  test('a LocalStack already serving the shared port is detected and left alone', async () => {
    const shared = new URL(ec2Endpoint()).port || '80';
    const res = await script('start.sh', { LOCALSTACK_PORT: shared });
    assert.equal(res.code, 0, res.out);
    assert.match(res.out, new RegExp(`already running on 127.0.0.1:${shared}`));
    assert.ok(await healthy(Number(shared)));
  });

  test('a stale pid file is removed without signalling anyone', async () => {
    const stalePort = await freePort();
    mkdirSync(join(root, '.run/localstack'), { recursive: true });
    writeFileSync(join(root, `.run/localstack/localstack-${stalePort}.pid`), `${process.pid}\n`);
    const res = await script('stop.sh', { LOCALSTACK_PORT: String(stalePort) });
    assert.equal(res.code, 0, res.out);
    assert.match(res.out, /stale/);
  });

  test('bad LOCALSTACK_PORT is refused naming the variable', async () => {
    const res = await script('start.sh', { LOCALSTACK_PORT: '45x' });
    assert.equal(res.code, 2);
    assert.match(res.out, /LOCALSTACK_PORT must be a port number 1-65535, got '45x'/);
  });
});
