import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Runner, RunOptions } from '../../../src/netutils/exec.ts';
import { createIpTool } from '../../../src/netutils/ip.ts';
import { hostVethName } from '../../../src/netutils/names.ts';
import { listPodHostRoutes, parsePodHostRoutes } from '../../../src/netutils/pod-routes.ts';

describe('pod host routes', () => {
  const veth = hostVethName('abc', 'eth0');

  test('keeps /32 routes on our host veths and nothing else', () => {
    const rows = [
      { dst: '10.1.0.5', dev: veth, scope: 'link', flags: [] },
      { dst: '10.1.0.0/24', dev: veth }, // not a /32
      { dst: '10.1.0.6', dev: 'eth0' }, // not a pod veth
      { dst: '10.1.0.7', dev: 'vpcXYZ' }, // our prefix, not our shape
      { dst: '10.1.0.8', dev: `${veth}0` }, // too long
      { dst: 'default', dev: veth },
      { dst: '10.1.0.256', dev: veth },
      { dst: '10.1.0.9' },
      null,
      'garbage',
      { dst: '10.1.0.5', dev: hostVethName('other', 'eth0') }, // the kernel cannot, but: first wins
    ];
    assert.deepEqual(parsePodHostRoutes(rows), [{ ip: '10.1.0.5', hostVeth: veth }]);
  });

  test("reads `ip -j route show table main proto 118` in the caller's own netns (no nsenter)", async () => {
    const calls: { file: string; args: readonly string[]; options?: RunOptions }[] = [];
    const runner: Runner = async (file, args, options) => {
      calls.push({ file, args, ...(options ? { options } : {}) });
      return { code: 0, stdout: JSON.stringify([{ dst: '10.2.0.9', dev: veth }]), stderr: '' };
    };
    const routes = await listPodHostRoutes(createIpTool(runner));
    assert.deepEqual(routes, [{ ip: '10.2.0.9', hostVeth: veth }]);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.file, 'ip');
    assert.deepEqual(calls[0]?.args, ['-j', 'route', 'show', 'table', 'main', 'proto', '118']);
  });

  test('a failing ip is an error, not "no pods"', async () => {
    const runner: Runner = async () => ({
      code: 1,
      stdout: '',
      stderr: 'RTNETLINK answers: Permission denied',
    });
    await assert.rejects(listPodHostRoutes(createIpTool(runner)), /Permission denied/);
  });
});
