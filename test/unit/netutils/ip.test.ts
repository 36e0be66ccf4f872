import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Runner, RunOptions, RunResult } from '../../../src/netutils/exec.ts';
import { createIpTool, isGoneError, toBatch } from '../../../src/netutils/ip.ts';

function recorder(result: Partial<RunResult> = {}) {
  const calls: { file: string; args: readonly string[]; options?: RunOptions }[] = [];
  const runner: Runner = async (file, args, options) => {
    calls.push({ file, args, ...(options ? { options } : {}) });
    return { code: 0, stdout: '', stderr: '', ...result };
  };
  return { calls, runner };
}

describe('ip tool', () => {
  test('batch lines are joined; unsafe tokens are refused', () => {
    assert.equal(
      toBatch([
        ['link', 'set', 'dev', 'x', 'up'],
        ['route', 'add', '1.2.3.4/32', 'dev', 'x'],
      ]),
      'link set dev x up\nroute add 1.2.3.4/32 dev x\n',
    );
    for (const bad of ['a b', 'a\nb', '"x"', '', 'a#b', 'a\\b']) {
      assert.throws(() => toBatch([['link', bad]]), /unsafe/);
    }
  });

  test('netns runs go through nsenter --net=<path> with an argv, never a shell', async () => {
    const { calls, runner } = recorder();
    const ip = createIpTool(runner);
    await ip.batch([['link', 'set', 'dev', 'eth0', 'up']], { netns: '/run/netns/p1' });
    assert.deepEqual(calls[0]!.file, 'nsenter');
    assert.deepEqual(calls[0]!.args, ['--net=/run/netns/p1', '--', 'ip', '-batch', '-']);
    assert.equal(calls[0]!.options?.input, 'link set dev eth0 up\n');
    await assert.rejects(ip.batch([['x']], { netns: '../etc' }), /invalid netns path/);
  });

  test('failed batch throws with stderr; json maps "gone" to []', async () => {
    const fail = createIpTool(recorder({ code: 1, stderr: 'RTNETLINK answers: File exists\n' }).runner);
    await assert.rejects(fail.batch([['link', 'add']]), /File exists/);
    const gone = createIpTool(recorder({ code: 1, stderr: 'Cannot find device "x"\n' }).runner);
    assert.deepEqual(await gone.json(['link', 'show', 'dev', 'x']), []);
    const ok = createIpTool(recorder({ stdout: '[{"ifname":"lo"}]\n' }).runner);
    assert.deepEqual(await ok.json(['link']), [{ ifname: 'lo' }]);
  });

  test('best-effort batches report only unexpected errors', async () => {
    const stderr =
      'Cannot find device "vpcx"\nCommand failed -:2\nRTNETLINK answers: Operation not permitted\n';
    const ip = createIpTool(recorder({ code: 1, stderr }).runner);
    assert.deepEqual(await ip.batchBestEffort([['link', 'del', 'dev', 'vpcx']]), [
      'RTNETLINK answers: Operation not permitted',
    ]);
    assert.ok(isGoneError('RTNETLINK answers: No such file or directory'));
    assert.ok(!isGoneError('RTNETLINK answers: File exists'));
  });
});
