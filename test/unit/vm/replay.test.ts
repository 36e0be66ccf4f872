// The VM runner's replay (test/helpers/vm.ts): guest events (children reported before their
// parent) rebuild into the right tree, and a replayed guest failure fails on the host.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, type TestContext, test } from 'node:test';
import { eventTree, replayPhase, type VmOutcome } from '../../helpers/vm.ts';
import type { VmTestEvent } from '../../vm/event-reporter.ts';
import { frame, readFrames } from '../../vm/serial-mux.ts';

/** A stand-in TestContext that runs subtests in place and logs what became of them. */
function recorder(log: string[]): TestContext {
  type Fn = (t: TestContext) => unknown;
  return {
    diagnostic: (m: string) => log.push(`# ${m}`),
    test: async (name: string, a?: { skip?: unknown; todo?: unknown } | Fn, b?: Fn) => {
      const opts = typeof a === 'object' ? a : {};
      const fn = typeof a === 'function' ? a : b;
      if (opts.skip || opts.todo) return void log.push(`skip ${name}`);
      try {
        await fn?.(recorder(log));
        log.push(`pass ${name}`);
      } catch (e) {
        log.push(`fail ${name}: ${(e as Error).message}`);
      }
    },
  } as unknown as TestContext;
}

const events: VmTestEvent[] = [
  { kind: 'pass', name: 'a1', nesting: 1 },
  { kind: 'diagnostic', name: '50 ADDs: 900 ms', nesting: 1 },
  { kind: 'fail', name: 'a2', nesting: 1, error: { message: 'expected 1, got 2' } },
  { kind: 'fail', name: 'suite A', nesting: 0, suite: true, error: { message: '1 subtest failed' } },
  { kind: 'pass', name: 'b1', nesting: 1, skip: 'no reason' },
  { kind: 'pass', name: 'suite B', nesting: 0, suite: true },
];

describe('VM runner replay', () => {
  test('the tree comes back from completion-order events', () => {
    const { roots, diagnostics } = eventTree(events);
    assert.deepEqual(
      roots.map((r) => [r.event.name, r.children.map((c) => c.event.name)]),
      [
        ['suite A', ['a1', 'a2']],
        ['suite B', ['b1']],
      ],
    );
    assert.deepEqual(diagnostics, ['50 ADDs: 900 ms']);
  });

  test('replay: failures carry the guest message, skips stay skips; an unfinished phase fails', async () => {
    const log: string[] = [];
    const outcome = (exitCode: number | null): VmOutcome => ({
      phases: [{ phase: { label: 'p', iptables: 'nft', files: [] }, exitCode, events, ms: 1000 }],
      guestError: exitCode === null ? 'the VM did not finish within 10 s' : null,
      consoleLog: '/x/console.log',
      bootToEndMs: 1,
      kernel: 'k',
    });
    await replayPhase(recorder(log), outcome(1), 0);
    assert.ok(log.includes('pass a1'), log.join('\n'));
    assert.ok(log.includes('fail a2: (in the VM) expected 1, got 2'), log.join('\n'));
    assert.ok(log.includes('skip b1'), log.join('\n'));
    assert.ok(log.includes('# 50 ADDs: 900 ms'));
    await assert.rejects(
      replayPhase(recorder([]), outcome(null), 0),
      /phase did not finish: the VM did not finish/,
    );
    const empty = { ...outcome(0), phases: [{ ...outcome(0).phases[0]!, events: [] }] };
    await assert.rejects(replayPhase(recorder([]), empty, 0), /no test ran in the VM/);
  });

  test('serial mux frames survive arbitrary chunking', () => {
    const link = new PassThrough();
    const got: [number, number, string][] = [];
    readFrames(link, (id, kind, payload) => got.push([id, kind, payload.toString()]));
    const bytes = Buffer.concat([frame(7, 1), frame(7, 2, Buffer.from('hello')), frame(9, 3)]);
    for (let i = 0; i < bytes.length; i += 3) link.write(bytes.subarray(i, i + 3));
    assert.deepEqual(got, [
      [7, 1, ''],
      [7, 2, 'hello'],
      [9, 3, ''],
    ]);
  });
});
