// AWS_VPC_K8S_CNI_LOG_FILE (issue 13): stdout (vpc-ipam's default), stderr, or a file. The real
// vpc-ipamd process is started with a file target and a cloud it cannot reach: its fatal start-up
// line must be in the file, not on stdout; an unwritable target stops it naming the variable.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../../src/ipam-daemon/config.ts';

function runDaemon(
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [resolve('src/ipam-daemon/main.ts')],
      { env: { PATH: process.env.PATH, ...env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        done({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

describe('AWS_VPC_K8S_CNI_LOG_FILE', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ipamd-log-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('stdout by default; stderr; absolute paths only', () => {
    assert.equal(loadConfig({}).logFile, 'stdout');
    assert.equal(loadConfig({ AWS_VPC_K8S_CNI_LOG_FILE: 'stderr' }).logFile, 'stderr');
    assert.equal(
      loadConfig({ AWS_VPC_K8S_CNI_LOG_FILE: '/var/log/x/ipamd.log' }).logFile,
      '/var/log/x/ipamd.log',
    );
    for (const bad of ['ipamd.log', '/var/log/../etc/x', '/var/log/'])
      assert.throws(() => loadConfig({ AWS_VPC_K8S_CNI_LOG_FILE: bad }), /AWS_VPC_K8S_CNI_LOG_FILE/, bad);
  });

  // A daemon that cannot reach instance metadata fails at start-up and logs it at fatal level.
  const unreachable = {
    CLOUD_PROVIDER: 'aws',
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    VPC_IPAM_EC2_ENDPOINT: 'http://127.0.0.1:9',
    VPC_IPAM_IMDS_ENDPOINT: 'http://127.0.0.1:9',
    VPC_IPAM_NODE_SETUP: 'false',
    METRICS_PORT: '0',
    DISABLE_INTROSPECTION: 'true',
  };

  test('the real daemon writes its JSON lines to the file (directory created), none to stdout', async () => {
    const file = join(dir, 'sub', 'ipamd.log');
    const r = await runDaemon({
      ...unreachable,
      VPC_IPAM_SOCKET: join(dir, 'run', 'ipamd.sock'),
      VPC_IPAM_CHECKPOINT: join(dir, 'state', 'checkpoint.json'),
      AWS_VPC_K8S_CNI_LOG_FILE: file,
    });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    const lines = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(
      lines.some((l) => l.level === 60 && l.msg === 'startup failed'),
      JSON.stringify(lines),
    );
  });

  test('an unusable file stops the daemon with exit 2, naming the variable', async () => {
    const notADir = join(dir, 'plain');
    await writeFile(notADir, 'x');
    const r = await runDaemon({ ...unreachable, AWS_VPC_K8S_CNI_LOG_FILE: join(notADir, 'ipamd.log') });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /vpc-ipamd: AWS_VPC_K8S_CNI_LOG_FILE=.*plain\/ipamd\.log: /);
  });
});
