import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeStdin, parseConfig, parseEnv } from '../../../src/cni/config.ts';
import { CniError } from '../../../src/cni/spec.ts';

const code = (n: number) => (e: unknown) => e instanceof CniError && e.code === n;

describe('network config', () => {
  test('defaults', () => {
    const c = parseConfig({ cniVersion: '1.0.0', name: 'vpc', type: 'vpc-cni' });
    assert.equal(c.mtu, 9001);
    assert.equal(c.mode, 'veth');
    assert.equal(c.socketPath, '/run/vpc-ipam/ipamd.sock');
    assert.equal(c.prevResult, undefined);
    assert.deepEqual([c.timeoutMs, c.connectTimeoutMs, c.answerMarginMs], [30_000, 2_000, 15_000]);
  });

  test('bad JSON is code 6, unsupported version code 1, bad fields code 7', () => {
    assert.throws(() => decodeStdin('{nope'), code(6));
    assert.throws(() => decodeStdin('[1]'), code(6));
    assert.throws(() => parseConfig({ cniVersion: '0.3.1', name: 'x' }), code(1));
    assert.throws(() => parseConfig({ cniVersion: '1.0.0' }), code(7));
    assert.throws(() => parseConfig({ cniVersion: '1.0.0', name: 'x', mtu: 70000 }), code(7));
    assert.throws(() => parseConfig({ cniVersion: '1.0.0', name: 'x', mode: 'bridge' }), code(7));
    assert.throws(() => parseConfig({ cniVersion: '1.0.0', name: 'x', socketPath: 'rel/path' }), code(7));
    assert.throws(() => parseConfig({ cniVersion: '1.0.0', name: 'x', hostCidrs: ['10.0.0.0/99'] }), code(7));
    for (const [k, v] of [
      ['connectTimeoutMs', 0],
      ['connectTimeoutMs', '5000'],
      ['answerMarginMs', -1],
      ['answerMarginMs', 1.5],
    ] as const) {
      assert.throws(() => parseConfig({ cniVersion: '1.0.0', name: 'x', [k]: v }), code(7), `${k}=${v}`);
    }
    assert.throws(
      () => parseConfig({ cniVersion: '1.1.0', name: 'x', 'cni.dev/valid-attachments': [{}] }),
      code(7),
    );
  });

  test('GC valid attachments are read', () => {
    const c = parseConfig({
      cniVersion: '1.1.0',
      name: 'x',
      'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }],
    });
    assert.deepEqual(c.validAttachments, [{ containerId: 'c1', ifName: 'eth0' }]);
  });
});

describe('CNI environment', () => {
  const base = {
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'c1',
    CNI_NETNS: '/run/netns/p',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=p',
  };

  test('ADD needs container id, netns, ifname and the pod identity; errors name the variable (code 4)', () => {
    assert.deepEqual(parseEnv(base), {
      command: 'ADD',
      containerId: 'c1',
      netns: '/run/netns/p',
      ifName: 'eth0',
      podNamespace: 'default',
      podName: 'p',
    });
    for (const [k, v, re] of [
      ['CNI_COMMAND', 'FOO', /CNI_COMMAND must be one of ADD, DEL/],
      ['CNI_CONTAINERID', 'a b', /CNI_CONTAINERID/],
      ['CNI_NETNS', 'rel', /CNI_NETNS/],
      ['CNI_NETNS', '', /CNI_NETNS is required/],
      ['CNI_IFNAME', 'x'.repeat(16), /CNI_IFNAME/],
      ['CNI_CONTAINERID', 'a'.repeat(129), /CNI_CONTAINERID.*max 128/],
      ['CNI_ARGS', '', /K8S_POD_NAMESPACE=<namespace>;K8S_POD_NAME=<name>/],
      ['CNI_ARGS', 'K8S_POD_NAME=p', /K8S_POD_NAMESPACE/],
      ['CNI_ARGS', 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=Bad Name', /K8S_POD_NAME/],
    ] as const) {
      assert.throws(
        () => parseEnv({ ...base, [k]: v }),
        (e: unknown) => code(4)(e) && re.test((e as Error).message),
      );
    }
  });

  test('DEL accepts an empty netns; VERSION/GC/STATUS need nothing else', () => {
    assert.equal(parseEnv({ ...base, CNI_COMMAND: 'DEL', CNI_NETNS: '' }).netns, '');
    assert.equal(parseEnv({ CNI_COMMAND: 'STATUS' }).command, 'STATUS');
  });

  test('pod identity comes from CNI_ARGS when well-formed', () => {
    const e = parseEnv({
      ...base,
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_X=;',
    });
    assert.equal(e.podNamespace, 'default');
    assert.equal(e.podName, 'web-1');
    const del = { ...base, CNI_COMMAND: 'DEL' };
    assert.equal(parseEnv({ ...del, CNI_ARGS: 'K8S_POD_NAME=Bad Name' }).podName, undefined);
    assert.equal(parseEnv({ ...del, CNI_ARGS: '' }).podName, undefined, 'DEL needs no identity');
    const uid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
    assert.equal(parseEnv({ ...base, CNI_ARGS: `${base.CNI_ARGS};K8S_POD_UID=${uid}` }).podUid, uid);
    assert.equal(parseEnv({ ...base, CNI_ARGS: `${base.CNI_ARGS};K8S_POD_UID=x;y` }).podUid, undefined);
  });
});
