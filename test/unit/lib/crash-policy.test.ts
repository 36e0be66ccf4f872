// The crash policy (src/lib/crash-policy.ts) in a real child process: an unhandled rejection or an
// uncaught exception is one structured fatal log line and a non-zero exit, never a hang — even
// with timers that would keep the process alive.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';
import { CRASH_EXIT_CODE } from '../../../src/lib/crash-policy.ts';

function child(trigger: string): Promise<{ code: number | null; lines: Record<string, unknown>[] }> {
  const src = `
    import { installCrashPolicy } from ${JSON.stringify(resolve('src/lib/crash-policy.ts'))};
    import { createLogger } from ${JSON.stringify(resolve('src/lib/log.ts'))};
    installCrashPolicy(createLogger('crash-test'));
    setInterval(() => {}, 1000); // would keep a hung process alive
    ${trigger}
  `;
  return new Promise((done, fail) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', src], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    c.stdout.on('data', (b: Buffer) => out.push(b));
    const killer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    c.on('error', fail);
    c.on('close', (code) => {
      clearTimeout(killer);
      const lines = Buffer.concat(out)
        .toString('utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      done({ code, lines });
    });
  });
}

describe('crash policy', () => {
  for (const [kind, trigger] of [
    ['unhandledRejection', "Promise.reject(new Error('boom in a promise'));"],
    ['uncaughtException', "setTimeout(() => { throw new Error('boom in a timer'); }, 5);"],
  ] as const) {
    test(`${kind}: one fatal JSON line naming the error, exit ${CRASH_EXIT_CODE}`, async () => {
      const r = await child(trigger);
      assert.equal(r.code, CRASH_EXIT_CODE);
      const fatal = r.lines.filter((l) => l.level === 60);
      assert.equal(fatal.length, 1, JSON.stringify(r.lines));
      assert.equal(fatal[0]?.kind, kind);
      assert.match(String((fatal[0]?.err as { message?: string })?.message), /boom in a/);
    });
  }
});
