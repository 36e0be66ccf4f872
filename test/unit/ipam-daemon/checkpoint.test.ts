import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type CheckpointData,
  loadCheckpoint,
  removeStaleTemps,
  writeCheckpoint,
} from '../../../src/ipam-daemon/checkpoint.ts';

const MODULE = resolve('src/ipam-daemon/checkpoint.ts');

function data(n: number): CheckpointData {
  return {
    version: 1,
    instanceId: 'i-1',
    writtenAt: new Date(0).toISOString(),
    allocations: Array.from({ length: n }, (_, k) => ({
      containerId: `c${k}`,
      ifName: 'eth0',
      ip: `10.0.0.${k + 10}`,
      interfaceId: 'eni-1',
      assignedAt: new Date(0).toISOString(),
    })),
    cooling: [],
  };
}

/** Run a script in a child node process (a real process we can SIGKILL). */
function child(script: string): {
  done: Promise<{ code: number | null; signal: string | null; out: string }>;
  firstOutput: Promise<void>;
  kill(): void;
} {
  const p = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  p.stdout.on('data', (d) => {
    out += d.toString();
  });
  return {
    firstOutput: new Promise<void>((r) => p.stdout.once('data', () => r())),
    done: new Promise((r) => p.once('exit', (code, signal) => r({ code, signal, out }))),
    kill: () => p.kill('SIGKILL'),
  };
}

describe('checkpoint crash safety', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ipamd-cp-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('killed between fsync and rename: the old checkpoint is intact, the temp file is cleaned up', async () => {
    const path = join(dir, 'a', 'checkpoint.json');
    await writeCheckpoint(path, data(2));
    const c = child(`
      const { writeCheckpoint } = await import(${JSON.stringify(MODULE)});
      const d = ${JSON.stringify(data(3))};
      await writeCheckpoint(${JSON.stringify(path)}, d, () => process.kill(process.pid, 'SIGKILL'));
      console.log('renamed (should not happen)');
    `);
    const r = await c.done;
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(r.out, '');
    const names = await readdir(join(dir, 'a'));
    assert.ok(
      names.some((n) => n.endsWith('.tmp')),
      `the crash left its temp file: ${names}`,
    );
    const loaded = await loadCheckpoint(path);
    assert.equal(loaded.kind, 'ok');
    assert.equal(loaded.kind === 'ok' && loaded.data.allocations.length, 2, 'old version intact');
    const removed = await removeStaleTemps(path);
    assert.equal(removed.length, 1);
    assert.deepEqual(await readdir(join(dir, 'a')), ['checkpoint.json']);
  });

  test('killed at random moments while writing: the file always parses', async () => {
    const path = join(dir, 'b', 'checkpoint.json');
    for (let round = 0; round < 5; round++) {
      const c = child(`
        const { writeCheckpoint } = await import(${JSON.stringify(MODULE)});
        const base = ${JSON.stringify(data(200))};
        for (let n = 1; ; n++) {
          await writeCheckpoint(${JSON.stringify(path)}, { ...base, allocations: base.allocations.slice(0, n % 200) });
          if (n === 3) console.log('writing');
        }
      `);
      await c.firstOutput; // it is writing in a loop now
      await new Promise((r) => setTimeout(r, 5 + round * 13));
      c.kill();
      await c.done;
      const loaded = await loadCheckpoint(path);
      assert.equal(loaded.kind, 'ok', `round ${round}: ${JSON.stringify(loaded)}`);
      await removeStaleTemps(path);
    }
  });

  test('truncated or garbage checkpoints are moved aside as .corrupt-<ts>', async () => {
    const path = join(dir, 'c', 'checkpoint.json');
    await writeCheckpoint(path, data(5));
    const text = await readFile(path, 'utf8');
    for (const bad of [
      text.slice(0, text.length - 20),
      '',
      '{"version":1}',
      '[]',
      '{"version":9,"instanceId":"i","allocations":[],"cooling":[]}',
    ]) {
      await writeFile(path, bad);
      const r = await loadCheckpoint(path, () => Date.parse('2026-01-01T00:00:00Z'));
      assert.equal(r.kind, 'corrupt', bad);
      if (r.kind === 'corrupt') {
        assert.match(r.movedTo, /checkpoint\.json\.corrupt-2026-01-01T00-00-00-000Z$/);
        assert.equal(await readFile(r.movedTo, 'utf8'), bad, 'the bad file is kept for an operator');
        await rm(r.movedTo);
      }
    }
    await rm(path, { force: true });
    assert.deepEqual(await loadCheckpoint(path), { kind: 'missing' });
  });

  test('the checkpoint is private (0600)', async () => {
    const path = join(dir, 'd', 'checkpoint.json');
    await writeCheckpoint(path, data(1));
    const { stat } = await import('node:fs/promises');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });
});
