import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadCheckpoint } from '../../../../src/ipam-daemon/checkpoint.ts';
import { CheckpointWriter } from '../../../../src/ipam-daemon/daemon/checkpoint-writer.ts';
import { DaemonCore, type DaemonOptions } from '../../../../src/ipam-daemon/daemon/core.ts';
import { Datastore } from '../../../../src/ipam-daemon/datastore.ts';
import { ManualClock, quietLogger } from '../harness.ts';

function setup(path: string) {
  const clock = new ManualClock();
  const core = new DaemonCore(
    { checkpointPath: path, logger: quietLogger, clock } as unknown as DaemonOptions,
    () => true,
  );
  const ds = new Datastore({ cooldownMs: 30_000, vpcCidrs: ['10.0.0.0/16'] });
  ds.upsertInterface({
    id: 'eni-1',
    mac: '02:00:00:00:00:01',
    deviceIndex: 0,
    subnetId: 'subnet-1',
    subnetCidr: '10.0.0.0/24',
    primaryIp: '10.0.0.10',
    usable: true,
    deletable: false,
    draining: false,
  });
  ds.addIps('eni-1', ['10.0.0.11', '10.0.0.12', '10.0.0.13']);
  core.ds = ds;
  const writer = new CheckpointWriter(core);
  return { clock, ds, writer };
}

const key = (n: number) => ({ containerId: `c${n}`, ifName: 'eth0' });

describe('checkpoint writer', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ipamd-writer-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('each write holds what the datastore changed: assign, release into cooldown, cooldown end', async () => {
    const path = join(dir, 'a', 'checkpoint.json');
    const { clock, ds, writer } = setup(path);
    await writer.persist(); // the first write is a snapshot
    ds.assign(key(1), clock.now());
    ds.assign(key(2), clock.now());
    await writer.persist();
    ds.release(key(1), clock.now());
    await writer.persist();
    let cp = await loadCheckpoint(path);
    assert.equal(cp.kind, 'ok');
    if (cp.kind !== 'ok') return;
    assert.deepEqual(cp.data.allocations, ds.list());
    assert.deepEqual(cp.data.cooling, ds.coolingEntries());
    assert.equal(cp.data.cooling.length, 1);
    clock.advance(30_000);
    ds.tick(clock.now());
    ds.assign(key(3), clock.now());
    await writer.persist();
    cp = await loadCheckpoint(path);
    assert.deepEqual(cp.kind === 'ok' && cp.data.cooling, []);
    assert.deepEqual(cp.kind === 'ok' && cp.data.allocations.map((a) => a.containerId).sort(), ['c2', 'c3']);
    assert.equal(writer.writes.snapshots, 1);
    assert.equal(writer.writes.journalLines, 3);
    await writer.finish(true);
  });

  test('random pool changes: after every write the checkpoint read back equals the datastore', async () => {
    const path = join(dir, 'r', 'checkpoint.json');
    const { clock, ds, writer } = setup(path);
    ds.addIps(
      'eni-1',
      Array.from({ length: 12 }, (_, i) => `10.0.0.${20 + i}`),
    );
    await writer.persist();
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let nextIp = 40;
    const sorted = <T>(xs: T[]) => xs.map((x) => JSON.stringify(x)).sort();
    for (let step = 0; step < 300; step++) {
      // A few changes between two writes, as concurrent requests and the pool loop make them.
      for (let n = rnd(4) + 1; n > 0; n--) {
        const op = rnd(6);
        const k = key(rnd(10));
        if (op <= 1 && !ds.get(k)) ds.assign(k, clock.now());
        else if (op === 2) ds.release(k, clock.now());
        else if (op === 3) {
          clock.advance(rnd(20_000));
          ds.tick(clock.now());
        } else if (op === 4) {
          // The pool gives a free or cooling IP back to the cloud.
          const ip = [...ds.coolingEntries().map((c) => c.ip), '10.0.0.20'][rnd(2)];
          if (ip && ds.ipState(ip)?.state !== 'assigned') ds.dropIps([ip]);
        } else ds.addIps('eni-1', [`10.0.0.${nextIp++ % 250}`]);
      }
      await writer.persist();
      const cp = await loadCheckpoint(path);
      assert.equal(cp.kind, 'ok');
      if (cp.kind !== 'ok') return;
      assert.deepEqual(sorted(cp.data.allocations), sorted(ds.list()), `step ${step}: allocations`);
      assert.deepEqual(sorted(cp.data.cooling), sorted(ds.coolingEntries()), `step ${step}: cooling`);
    }
    assert.ok(writer.writes.journalLines > 100, `${writer.writes.journalLines} journal records`);
    await writer.finish(true);
  });

  test('intents are durable when setIntent resolves, survive compaction, and are cleared by null', async () => {
    const path = join(dir, 'b', 'checkpoint.json');
    const { writer } = setup(path);
    await writer.persist();
    await writer.setIntent('unassign/eni-1', { action: 'unassign', ips: ['10.0.0.12'] });
    await writer.setIntent('delete/eni-2', { action: 'delete' });
    let cp = await loadCheckpoint(path);
    assert.deepEqual(cp.kind === 'ok' && cp.data.intents, {
      'unassign/eni-1': { action: 'unassign', ips: ['10.0.0.12'] },
      'delete/eni-2': { action: 'delete' },
    });
    await writer.setIntent('delete/eni-2', null);
    await writer.finish(true); // a fresh snapshot
    cp = await loadCheckpoint(path);
    assert.deepEqual(cp.kind === 'ok' && cp.data.intents, {
      'unassign/eni-1': { action: 'unassign', ips: ['10.0.0.12'] },
    });
    // A restart: the intents read back are kept by the next snapshot.
    const again = setup(path);
    again.writer.restoreIntents(cp.kind === 'ok' ? cp.data.intents : undefined);
    assert.deepEqual([...again.writer.intents().keys()], ['unassign/eni-1']);
    await again.writer.persist();
    await again.writer.setIntent('unassign/eni-1', null);
    cp = await loadCheckpoint(path);
    assert.deepEqual(cp.kind === 'ok' && cp.data.intents, {});
    await again.writer.finish(true);
  });
});
