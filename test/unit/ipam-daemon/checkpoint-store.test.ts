import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type CheckpointData,
  loadCheckpoint,
  removeStaleTemps,
} from '../../../src/ipam-daemon/checkpoint.ts';
import { CheckpointStore } from '../../../src/ipam-daemon/checkpoint-store.ts';
import type { StoredAllocation } from '../../../src/ipam-daemon/datastore.ts';

const STORE = resolve('src/ipam-daemon/checkpoint-store.ts');

function alloc(k: number): StoredAllocation {
  return {
    containerId: `c${k}`,
    ifName: 'eth0',
    ip: `10.0.${k >> 8}.${k & 255}`,
    interfaceId: 'eni-1',
    assignedAt: new Date(0).toISOString(),
  };
}

/** A tiny in-memory "daemon state" the store snapshots. */
function state() {
  const allocations = new Map<string, StoredAllocation>();
  const cooling = new Map<string, number>();
  const take = (): CheckpointData => ({
    version: 1,
    instanceId: 'i-1',
    writtenAt: new Date(0).toISOString(),
    allocations: [...allocations.values()],
    cooling: [...cooling].map(([ip, coolUntil]) => ({ ip, coolUntil })),
  });
  return { allocations, cooling, take };
}

function deferred() {
  let open!: () => void;
  const p = new Promise<void>((r) => {
    open = r;
  });
  return { p, open };
}

describe('checkpoint group commit', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ipamd-store-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('no commit resolves before its fdatasync; commits made during a write share the next one', async () => {
    const path = join(dir, 'a', 'checkpoint.json');
    let gate = deferred();
    let syncs = 0;
    const store = new CheckpointStore({
      path,
      beforeJournalSync: async () => {
        syncs++;
        await gate.p;
      },
    });
    const s = state();
    await store.compact(s.take); // first write: a snapshot
    s.allocations.set('c0', alloc(0));
    let firstDone = false;
    const first = store.commit(s.take).then(() => {
      firstDone = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(syncs, 1, 'the first commit is waiting in its fdatasync');
    // 31 more changes while the first write is held before its sync.
    const rest: Array<Promise<void>> = [];
    const done = new Set<number>();
    for (let k = 1; k < 32; k++) {
      s.allocations.set(`c${k}`, alloc(k));
      rest.push(store.commit(s.take).then(() => void done.add(k)));
    }
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(firstDone, false, 'answered before the data was durable');
    assert.equal(done.size, 0);
    const nextGate = deferred();
    const held = gate;
    gate = nextGate;
    held.open();
    await first;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(syncs, 2, 'the 31 waiting changes went into one second write');
    assert.equal(done.size, 0, 'still not durable: the second sync is held');
    nextGate.open();
    await Promise.all(rest);
    assert.equal(store.stats.journalLines, 2);
    const loaded = await loadCheckpoint(path);
    assert.equal(loaded.kind, 'ok');
    assert.equal(loaded.kind === 'ok' && loaded.data.allocations.length, 32);
    await store.close();
  });

  test('journal replay: puts, deletes, cooling, compaction to a fresh snapshot and journal', async () => {
    const path = join(dir, 'b', 'checkpoint.json');
    const store = new CheckpointStore({ path, compactAfter: 5 });
    const s = state();
    await store.compact(s.take);
    for (let k = 0; k < 12; k++) {
      s.allocations.set(`c${k}`, alloc(k));
      if (k % 3 === 0 && k > 0) {
        s.allocations.delete(`c${k - 1}`);
        s.cooling.set(alloc(k - 1).ip, 1000 + k);
      }
      if (k === 7) s.cooling.delete(alloc(2).ip);
      await store.commit(s.take);
    }
    assert.ok(store.stats.snapshots >= 3, `compacted (${store.stats.snapshots} snapshots)`);
    const loaded = await loadCheckpoint(path);
    assert.equal(loaded.kind, 'ok');
    if (loaded.kind !== 'ok') return;
    assert.deepEqual(
      loaded.data.allocations.map((a) => a.containerId).sort(),
      [...s.allocations.keys()].sort(),
    );
    assert.deepEqual(
      loaded.data.cooling.sort((x, y) => x.ip.localeCompare(y.ip)),
      s.take().cooling.sort((x, y) => x.ip.localeCompare(y.ip)),
    );
    const journals = (await readdir(join(dir, 'b'))).filter((n) => n.includes('.journal-'));
    assert.equal(journals.length, 1, `one journal at a time: ${journals.join(',')}`);
    await store.close();
  });

  test('a torn last journal line is ignored; a corrupt line before it makes the checkpoint corrupt', async () => {
    const path = join(dir, 'c', 'checkpoint.json');
    const store = new CheckpointStore({ path });
    const s = state();
    await store.compact(s.take);
    s.allocations.set('c1', alloc(1));
    await store.commit(s.take);
    await store.close();
    const snap = JSON.parse(await readFile(path, 'utf8')) as CheckpointData;
    const journal = join(dir, 'c', snap.journal ?? '');
    await appendFile(journal, '{"put":[{"containerId":"c2"'); // a crash mid-append (never acknowledged)
    let loaded = await loadCheckpoint(path);
    assert.equal(loaded.kind, 'ok');
    assert.deepEqual(loaded.kind === 'ok' && loaded.data.allocations.map((a) => a.containerId), ['c1']);
    await writeFile(journal, 'garbage\n{"del":[["c1","eth0"]]}\n');
    loaded = await loadCheckpoint(path);
    assert.equal(loaded.kind, 'corrupt');
    assert.match(loaded.kind === 'corrupt' ? loaded.reason : '', /journal .* line 1/);
    const names = await readdir(join(dir, 'c'));
    assert.ok(
      names.some((n) => /checkpoint\.json\.corrupt-.*\.journal$/.test(n)),
      names.join(','),
    );
  });

  test('journals the snapshot does not name are removed at start', async () => {
    const path = join(dir, 'd', 'checkpoint.json');
    const store = new CheckpointStore({ path });
    await store.compact(state().take);
    await store.close();
    await writeFile(join(dir, 'd', 'checkpoint.json.journal-0123456789ab'), '{"put":[]}\n');
    assert.deepEqual(await removeStaleTemps(path), ['checkpoint.json.journal-0123456789ab']);
    assert.equal((await readdir(join(dir, 'd'))).filter((n) => n.includes('.journal-')).length, 1);
  });

  test('SIGKILL at any moment: every acknowledged change is in the checkpoint', async () => {
    for (let round = 0; round < 4; round++) {
      const path = join(dir, `e${round}`, 'checkpoint.json');
      // A writer with 32 concurrent clients: add c<i>, then (every third) delete it again; it prints
      // each change once its commit resolved, and keeps going until killed.
      const script = `
        const { CheckpointStore } = await import(${JSON.stringify(STORE)});
        const store = new CheckpointStore({ path: ${JSON.stringify(path)}, compactAfter: 50 });
        const allocations = new Map();
        const take = () => ({ version: 1, instanceId: 'i-1', writtenAt: new Date().toISOString(),
          allocations: [...allocations.values()], cooling: [] });
        await store.compact(take);
        let next = 0;
        await Promise.all(Array.from({ length: 32 }, async () => {
          for (;;) {
            const i = next++;
            allocations.set('c' + i, { containerId: 'c' + i, ifName: 'eth0', ip: '10.1.' + (i >> 8 & 255) + '.' + (i & 255),
              interfaceId: 'eni-1', assignedAt: new Date(0).toISOString() });
            await store.commit(take);
            process.stdout.write('add ' + i + '\\n');
            if (i % 3 === 0) {
              allocations.delete('c' + i);
              await store.commit(take);
              process.stdout.write('del ' + i + '\\n');
            }
          }
        }));`;
      const p = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      p.stdout.on('data', (d) => {
        out += d.toString();
      });
      const killAfter = 200 + round * 400;
      await new Promise<void>((r) => {
        const check = () => {
          if (out.split('\n').length > killAfter) {
            p.stdout.off('data', check);
            r();
          }
        };
        p.stdout.on('data', check);
      });
      p.kill('SIGKILL');
      await new Promise((r) => p.once('exit', r));
      const lines = out.split('\n');
      lines.pop(); // a line the kill cut short says nothing
      const added = new Set<string>();
      const deleted = new Set<string>();
      for (const l of lines) {
        const [op, i] = l.split(' ');
        (op === 'add' ? added : deleted).add(`c${i}`);
      }
      await removeStaleTemps(path);
      const loaded = await loadCheckpoint(path);
      assert.equal(loaded.kind, 'ok', JSON.stringify(loaded));
      const held = new Set(loaded.kind === 'ok' ? loaded.data.allocations.map((a) => a.containerId) : []);
      for (const k of added) {
        // Every third key's delete follows its add at once: unacknowledged, it may or may not be on disk.
        const deletePending = Number(k.slice(1)) % 3 === 0;
        if (!deleted.has(k) && !deletePending)
          assert.ok(held.has(k), `round ${round}: acknowledged ${k} is missing`);
      }
      for (const k of deleted)
        assert.ok(!held.has(k), `round ${round}: acknowledged delete of ${k} was lost`);
      assert.ok(added.size > killAfter / 2, `${added.size} acknowledged adds`);
    }
  });
});
