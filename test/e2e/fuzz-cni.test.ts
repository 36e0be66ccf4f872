// CNI input fuzzing, short (the full run: `node scripts/fuzz-cni.ts`, results in
// docs/reliability.md): malformed stdin/env to the plugin's entry function and a sample through
// the real dist/vpc-cni, malformed requests to the daemon's socket, in a private network
// namespace. Zero crashes, every answer a spec error (or a valid result for an input that stayed
// valid), the daemon alive and no address held twice. Needs root (unshare).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

test('short CNI fuzz run: no crash, only spec answers', { timeout: 600_000 }, () => {
  const script = join(import.meta.dirname, '..', '..', 'scripts', 'fuzz-cni.ts');
  const r = spawnSync(
    process.execPath,
    [script, '--inputs', '3000', '--exec', '30', '--socket', '3000', '--no-write'],
    {
      encoding: 'utf8',
      timeout: 540_000,
    },
  );
  assert.equal(r.status, 0, `fuzz run failed:\n${r.stdout}\n${r.stderr}`);
  const row = (name: string) => r.stdout.split('\n').find((l) => l.includes(name)) ?? '';
  assert.match(row('in-process'), /\| 3000 \| \d+ \| \d+ \| \*\*0\*\* \|$/);
  assert.match(row('dist/vpc-cni'), /\| 30 \| \d+ \| \d+ \| \*\*0\*\* \|$/);
  assert.match(row('daemon socket'), /\| 3\d{3} \| .* \| \d+ \| \*\*0\*\* \|$/);
  assert.match(r.stdout, /answered \/healthz: yes; addresses held twice: \*\*0\*\*/);
});
