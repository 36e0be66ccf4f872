import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  inProcessTransport,
  MAX_CNI_BODY_BYTES,
  parseCniRequest,
} from '../../../src/ipam-daemon/cni-host.ts';
import { apiRoutes, toApiError } from '../../../src/ipam-daemon/server.ts';
import { ValidationError } from '../../../src/ipam-daemon/validate.ts';
import { call, startHarness } from './harness.ts';

describe('POST /v1/cni request shape', () => {
  test('only CNI_* variables, strings, no NUL; stdin a string', () => {
    const ok = parseCniRequest({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{}' });
    assert.deepEqual(ok, { env: { CNI_COMMAND: 'VERSION' }, stdin: '{}' });
    for (const bad of [
      null,
      [],
      'x',
      { env: [], stdin: '' },
      { env: { CNI_COMMAND: 'ADD' } },
      { env: { AWS_SECRET_ACCESS_KEY: 'x' }, stdin: '' },
      { env: { PATH: '/bin' }, stdin: '' },
      { env: { CNI_COMMAND: 1 }, stdin: '' },
      { env: { CNI_NETNS: '/var/run/netns/a\0b' }, stdin: '' },
      { env: { CNI_ARGS: 'x'.repeat(5000) }, stdin: '' },
    ]) {
      assert.throws(() => parseCniRequest(bad), ValidationError, JSON.stringify(bad).slice(0, 80));
    }
  });
});

describe('CNI commands run by the daemon', () => {
  test('VERSION, and bad env rejected with the CNI error code and nothing allocated', async () => {
    const h = await startHarness({ socket: true });
    try {
      await h.daemon.reconcileNow();
      const cni = (env: Record<string, string>, conf: Record<string, unknown>) =>
        call(h.socketPath, 'POST', '/v1/cni', { env, stdin: JSON.stringify(conf) });
      const v = await cni({ CNI_COMMAND: 'VERSION' }, { cniVersion: '1.0.0' });
      assert.equal(v.status, 200);
      const vb = v.body as { stdout: string; exitCode: number };
      assert.equal(vb.exitCode, 0);
      assert.ok(
        (JSON.parse(vb.stdout) as { supportedVersions: string[] }).supportedVersions.includes('1.1.0'),
      );
      const conf = { cniVersion: '1.0.0', name: 'vpc', type: 'vpc-cni', logFile: `${h.dir}/cni.log` };
      for (const [env, code] of [
        [
          {
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: '../etc',
            CNI_IFNAME: 'eth0',
            CNI_NETNS: '/var/run/netns/x',
          },
          4,
        ],
        [
          {
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: 'abc',
            CNI_IFNAME: 'eth0/../x',
            CNI_NETNS: '/var/run/netns/x',
          },
          4,
        ],
        [{ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_IFNAME: 'eth0', CNI_NETNS: 'relative/ns' }, 4],
        [
          {
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: 'abc',
            CNI_IFNAME: 'eth0',
            CNI_NETNS: '/nonexistent/netns/path',
          },
          4,
        ],
        [{ CNI_COMMAND: 'BOGUS' }, 4],
      ] as const) {
        const r = await cni(env, conf);
        assert.equal(r.status, 200, r.text);
        const b = r.body as { stdout: string; exitCode: number };
        assert.equal(b.exitCode, 1, JSON.stringify(env));
        assert.equal((JSON.parse(b.stdout) as { code: number }).code, code, b.stdout);
      }
      assert.equal(h.daemon.list().length, 0, 'nothing was allocated for a rejected command');
      // Not a CNI request at all: a 400, not a command.
      const bad = await call(h.socketPath, 'POST', '/v1/cni', { env: { LD_PRELOAD: '/x' }, stdin: '' });
      assert.equal(bad.status, 400);
      const big = await call(h.socketPath, 'POST', '/v1/cni', {
        env: {},
        stdin: 'x'.repeat(MAX_CNI_BODY_BYTES + 1),
      });
      assert.equal(big.status, 413);
    } finally {
      await h.close();
    }
  });

  test('the in-process transport answers like the socket: validation, 404, readiness, allocate', async () => {
    const h = await startHarness();
    try {
      await h.daemon.reconcileNow();
      const t = inProcessTransport(apiRoutes(h.daemon), toApiError);
      assert.equal((await t('POST', '/v1/allocate', { containerId: '../x', ifName: 'eth0' })).status, 400);
      assert.equal((await t('GET', '/v1/allocation?containerId=abc&ifName=eth0')).status, 404);
      assert.equal((await t('GET', '/readyz')).status, 200);
      const a = await t('POST', '/v1/allocate', {
        containerId: 'abc',
        ifName: 'eth0',
        podNamespace: 'default',
        podName: 'p',
      });
      assert.equal(a.status, 200);
      const got = await t('GET', '/v1/allocation?containerId=abc&ifName=eth0');
      assert.equal((got.body as { ip: string }).ip, (a.body as { ip: string }).ip);
      assert.deepEqual((await t('POST', '/v1/release', { containerId: 'abc', ifName: 'eth0' })).body, {
        released: (a.body as { ip: string }).ip,
      });
      assert.equal((await t('POST', '/v1/nope', {})).status, 404);
    } finally {
      await h.close();
    }
  });
});
