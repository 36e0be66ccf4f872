import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { DAEMON_ENV_VARS } from '../../../src/ipam-daemon/config.ts';

describe('daemon docs and startup', () => {
  test('every variable in DAEMON_ENV_VARS is documented (docs/daemon.md, or docs/kubernetes.md for the Kubernetes ones)', async () => {
    const daemon = await readFile('docs/daemon.md', 'utf8');
    const k8s = await readFile('docs/kubernetes.md', 'utf8').catch(() => '');
    const missing = DAEMON_ENV_VARS.filter(
      (s) => !daemon.includes(`\`${s.name}`) && !(s.group === 'kubernetes' && k8s.includes(s.name)),
    ).map((s) => s.name);
    assert.deepEqual(missing, [], 'add these to the environment table in docs/daemon.md');
  });

  test('vpc-ipamd exits 2 on a bad variable, naming it and the accepted values', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((done) => {
      execFile(
        process.execPath,
        [resolve('src/ipam-daemon/main.ts')],
        {
          env: { PATH: process.env.PATH, WARM_ENI_TARGET: 'abc', AWS_VPC_K8S_CNI_RANDOMIZESNAT: 'sometimes' },
        },
        (err, _stdout, stderr) => done({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /WARM_ENI_TARGET="abc" is invalid \(not a whole number\); accepted: a whole number >= 0/,
    );
    assert.match(
      r.stderr,
      /AWS_VPC_K8S_CNI_RANDOMIZESNAT="sometimes" is invalid .*accepted: none \| hashrandom \| prng/,
    );
  });
});
