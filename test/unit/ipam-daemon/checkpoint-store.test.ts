import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type CheckpointData,
  type JournalRecord,
  loadCheckpoint,
  removeStaleTemps,
} from '../../../src/ipam-daemon/checkpoint.ts';
import { type CheckpointSource, CheckpointStore } from '../../../src/ipam-daemon/checkpoint-store.ts';
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

/** Maps that remember which keys changed, as the datastore does for the checkpoint. */
class Tracked<V> extends Map<string, V> {
  readonly changed = new Set<string>();
  override set(k: string, v: V): this {
    this.changed?.add(k);
    return super.set(k, v);
  }
  override delete(k: string): boolean {
    this.changed.add(k);
    return super.delete(k);
  }
}

/** A tiny in-memory "daemon state" the store persists (a CheckpointSource). */
function state() {
  const allocations = new Tracked<StoredAllocation>();
  const cooling = new Tracked<number>();
  const take = (): CheckpointData => ({
    version: 1,
    instanceId: 'i-1',
    writtenAt: new Date(0).toISOString(),
    allocations: [...allocations.values()],
    cooling: [...cooling].map(([ip, coolUntil]) => ({ ip, coolUntil })),
  });
  const source: CheckpointSource = {
    snapshot() {
      allocations.changed.clear();
      cooling.changed.clear();
      return take();
    },
    changes() {
      const rec: JournalRecord = {};
      const put = [...allocations.changed].flatMap((k) => allocations.get(k) ?? []);
      const del = [...allocations.changed]
        .filter((k) => !allocations.has(k))
        .map((k) => [k, 'eth0'] as [string, string]);
      const cool = [...cooling.changed].flatMap((ip) => {
        const t = cooling.get(ip);
        return t === undefined ? [] : [{ ip, coolUntil: t }];
      });
      const uncool = [...cooling.changed].filter((ip) => !cooling.has(ip));
      allocations.changed.clear();
      cooling.changed.clear();
      if (put.length) rec.put = put;
      if (del.length) rec.del = del;
      if (cool.length) rec.cool = cool;
      if (uncool.length) rec.uncool = uncool;
      return Object.keys(rec).length > 0 ? rec : null;
    },
  };
  return { allocations, cooling, take, source };
}

/** A promise and whether it has resolved yet. */
function watched(p: Promise<void>) {
  const w = { done: false, p };
  w.p = p.then(() => {
    w.done = true;
  });
  return w;
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

  test('no commit resolves before its write and every earlier one are durable; commits made during a write share the next one', async () => {
    const path = join(dir, 'a', 'checkpoint.json');
    // One gate per journal write, opened by the test in any order.
    const gates: Array<ReturnType<typeof deferred>> = [];
    const store = new CheckpointStore({
      path,
      beforeJournalSync: async () => {
        const g = deferred();
        gates.push(g);
        await g.p;
      },
    });
    const s = state();
    await store.compact(s.source); // first write: a snapshot
    s.allocations.set('c0', alloc(0));
    const first = watched(store.commit(s.source));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(gates.length, 1, 'the first commit is waiting in its write');
    // 31 more changes while the first write is held before its sync.
    const rest: Array<Promise<void>> = [];
    const done = new Set<number>();
    for (let k = 1; k < 32; k++) {
      s.allocations.set(`c${k}`, alloc(k));
      rest.push(store.commit(s.source).then(() => void done.add(k)));
    }
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(gates.length, 2, 'the 31 changes went into one second write, beside the first');
    assert.equal(store.stats.pipelined, 1);
    // A third write waits: two are in flight at most.
    s.allocations.set('c32', alloc(32));
    const last = watched(store.commit(s.source));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(gates.length, 2, 'a third write waits for one in flight');
    // The second write reaches the disk first: still nothing is answered (the first is not durable).
    gates[1]?.open();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(first.done, false, 'answered before the data was durable');
    assert.equal(done.size, 0, 'answered before an earlier write was durable');
    assert.equal(gates.length, 2);
    gates[0]?.open();
    await first.p;
    await Promise.all(rest);
    assert.equal(last.done, false, 'the third write is still held');
    assert.equal(gates.length, 3, 'issued once a write settled');
    gates[2]?.open();
    await last.p;
    assert.equal(store.stats.journalLines, 3);
    const loaded = await loadCheckpoint(path);
    assert.equal(loaded.kind, 'ok');
    assert.equal(loaded.kind === 'ok' && loaded.data.allocations.length, 33);
    await store.close();
  });

  test('a failed write fails its own commits; the write beside it and later commits go into a snapshot', async () => {
    const path = join(dir, 'h', 'checkpoint.json');
    const gates: Array<ReturnType<typeof deferred>> = [];
    let failNext = 0;
    const store = new CheckpointStore({
      path,
      beforeJournalSync: async () => {
        const g = deferred();
        gates.push(g);
        const fail = gates.length === failNext;
        await g.p;
        if (fail) throw new Error('disk full');
      },
    });
    const s = state();
    await store.compact(s.source);
    failNext = 1;
    s.allocations.set('c1', alloc(1));
    const a = store.commit(s.source);
    await new Promise((r) => setImmediate(r));
    s.allocations.set('c2', alloc(2));
    const b = store.commit(s.source);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(gates.length, 2, 'both writes in flight');
    gates[1]?.open(); // the second reaches the disk, the first fails
    gates[0]?.open();
    await assert.rejects(a, /disk full/);
    await b; // through a fresh snapshot: a reader drops a record written beside a failed one
    assert.equal(store.stats.snapshots, 2);
    const loaded = await loadCheckpoint(path);
    assert.deepEqual(
      loaded.kind === 'ok' && loaded.data.allocations.map((x) => x.containerId).sort(),
      ['c1', 'c2'],
      'the snapshot holds the state (c1 stays allocated in memory until the caller rolls it back)',
    );
    await store.close();
  });

  test('journal replay: puts, deletes, cooling, compaction to a fresh snapshot and journal', async () => {
    const path = join(dir, 'b', 'checkpoint.json');
    const store = new CheckpointStore({ path, compactAfter: 5 });
    const s = state();
    await store.compact(s.source);
    for (let k = 0; k < 12; k++) {
      s.allocations.set(`c${k}`, alloc(k));
      if (k % 3 === 0 && k > 0) {
        s.allocations.delete(`c${k - 1}`);
        s.cooling.set(alloc(k - 1).ip, 1000 + k);
      }
      if (k === 7) s.cooling.delete(alloc(2).ip);
      await store.commit(s.source);
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
    await store.compact(s.source);
    s.allocations.set('c1', alloc(1));
    await store.commit(s.source);
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
    await store.compact(state().source);
    await store.close();
    await writeFile(join(dir, 'd', 'checkpoint.json.journal-0123456789ab'), '{"put":[]}\n');
    assert.deepEqual(await removeStaleTemps(path), ['checkpoint.json.journal-0123456789ab']);
    assert.equal((await readdir(join(dir, 'd'))).filter((n) => n.includes('.journal-')).length, 1);
  });

  test('a journal cut or damaged at every byte offset: no acknowledged change lost, no IP held twice', async () => {
    const sub = join(dir, 'f');
    const path = join(sub, 'checkpoint.json');
    const store = new CheckpointStore({ path, journalBytes: 4096 });
    const s = state();
    await store.compact(s.source);
    // After each commit: the allocations (key -> ip) a restore must give back.
    const states: Array<Record<string, string>> = [];
    const view = (data: CheckpointData) =>
      Object.fromEntries(data.allocations.map((a) => [a.containerId, a.ip]).sort());
    states.push(view(s.take()));
    const commit = async () => {
      await store.commit(s.source);
      states.push(view(s.take()));
    };
    for (const k of [0, 1, 2]) s.allocations.set(`c${k}`, alloc(k));
    await commit();
    s.allocations.delete('c1');
    s.cooling.set(alloc(1).ip, 5000);
    await commit();
    // c1's IP goes to c9: replaying the put without the delete before it would hold it twice.
    s.cooling.delete(alloc(1).ip);
    s.allocations.set('c9', { ...alloc(9), ip: alloc(1).ip });
    await commit();
    s.allocations.delete('c0');
    await commit();
    s.allocations.set('c4', alloc(4));
    await commit();
    await store.close();
    const snapshot = await readFile(path);
    const journalName = (JSON.parse(snapshot.toString()) as CheckpointData).journal ?? '';
    const full = await readFile(join(sub, journalName));
    assert.equal(full.length, 4096, 'preallocated');
    const ends: number[] = [];
    for (let i = full.indexOf(10); i >= 0; i = full.indexOf(10, i + 1)) ends.push(i + 1);
    assert.equal(ends.length, 5, 'one record per commit');
    const used = ends[ends.length - 1] as number;
    const restore = async (journal: Buffer) => {
      await rm(sub, { recursive: true, force: true });
      await mkdir(sub);
      await writeFile(path, snapshot);
      await writeFile(join(sub, journalName), journal);
      return loadCheckpoint(path);
    };
    const unique = (data: CheckpointData) =>
      assert.equal(
        new Set(data.allocations.map((a) => a.ip)).size,
        data.allocations.length,
        'an IP held twice',
      );
    for (let o = 0; o <= used + 8; o++) {
      // A crash during the write of a record: the file keeps what was written before it (the rest
      // zeros, as preallocated, or missing, as in the first format).
      const whole = ends.filter((e) => e <= o).length;
      for (const journal of [
        Buffer.concat([full.subarray(0, o), Buffer.alloc(4096 - o)]),
        full.subarray(0, o),
      ]) {
        const r = await restore(journal);
        assert.equal(r.kind, 'ok', `cut at ${o}`);
        if (r.kind !== 'ok') continue;
        assert.deepEqual(view(r.data), states[whole], `cut at ${o}: ${whole} records`);
        unique(r.data);
      }
      // One damaged byte: in the last record it reads as that record cut short (it cannot be told
      // apart); before it, the journal is corrupt (moved aside; pods keep their IPs through route
      // recovery), never replayed around the hole.
      const damaged = Buffer.from(full);
      damaged[o] = (damaged[o] as number) ^ 0xff;
      const r = await restore(damaged);
      const record = ends.findIndex((e) => o < e);
      if (record >= 0 && record < ends.length - 1) {
        assert.equal(r.kind, 'corrupt', `byte ${o} damaged (record ${record + 1})`);
      } else {
        assert.equal(r.kind, 'ok', `byte ${o} damaged (record ${record + 1})`);
        if (r.kind !== 'ok') continue;
        assert.deepEqual(view(r.data), states[record < 0 ? ends.length : ends.length - 1], `byte ${o}`);
        unique(r.data);
      }
    }
  });

  test('a checkpoint of the first journal format (appended JSON lines) restores', async () => {
    const sub = join(dir, 'g');
    const path = join(sub, 'checkpoint.json');
    await mkdir(sub);
    const snap: CheckpointData = {
      ...state().take(),
      allocations: [alloc(1), alloc(2)],
      journal: 'checkpoint.json.journal-00000000aaaa',
    };
    await writeFile(path, JSON.stringify(snap));
    await writeFile(
      join(sub, 'checkpoint.json.journal-00000000aaaa'),
      `${JSON.stringify({ put: [alloc(3)] })}\n${JSON.stringify({ del: [['c1', 'eth0']], cool: [{ ip: alloc(1).ip, coolUntil: 7 }] })}\n{"put":[{"contai`,
    );
    const r = await loadCheckpoint(path);
    assert.equal(r.kind, 'ok');
    if (r.kind !== 'ok') return;
    assert.deepEqual(r.data.allocations.map((a) => a.containerId).sort(), ['c2', 'c3']);
    assert.deepEqual(r.data.cooling, [{ ip: alloc(1).ip, coolUntil: 7 }]);
    // The daemon's next write continues in the new format from what was read.
    const store = new CheckpointStore({ path });
    const s = state();
    for (const a of r.data.allocations) s.allocations.set(a.containerId, a);
    await store.compact(s.source);
    s.allocations.delete('c2');
    await store.commit(s.source);
    await store.close();
    const again = await loadCheckpoint(path);
    assert.deepEqual(again.kind === 'ok' && again.data.allocations.map((a) => a.containerId), ['c3']);
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
        let changed = new Set();
        const source = {
          snapshot: () => { changed = new Set(); return { version: 1, instanceId: 'i-1',
            writtenAt: new Date().toISOString(), allocations: [...allocations.values()], cooling: [] }; },
          changes: () => {
            const keys = [...changed];
            changed = new Set();
            if (keys.length === 0) return null;
            return { put: keys.flatMap((k) => allocations.get(k) ?? []),
              del: keys.filter((k) => !allocations.has(k)).map((k) => [k, 'eth0']) };
          },
        };
        await store.compact(source);
        let next = 0;
        await Promise.all(Array.from({ length: 32 }, async () => {
          for (;;) {
            const i = next++;
            allocations.set('c' + i, { containerId: 'c' + i, ifName: 'eth0', ip: '10.1.' + (i >> 8 & 255) + '.' + (i & 255),
              interfaceId: 'eni-1', assignedAt: new Date(0).toISOString() });
            changed.add('c' + i);
            await store.commit(source);
            process.stdout.write('add ' + i + '\\n');
            if (i % 3 === 0) {
              allocations.delete('c' + i);
              changed.add('c' + i);
              await store.commit(source);
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
