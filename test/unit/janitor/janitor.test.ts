import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { Janitor, type JanitorCloud } from '../../../src/janitor/janitor.ts';
import { InterfaceInUseError, OtherProviderError } from '../../../src/providers/errors.ts';
import type { DeleteInterfaceOptions, LeakedInterface } from '../../../src/providers/types.ts';

const NOW = Date.parse('2030-01-01T00:00:00Z');
const leak = (id: string): LeakedInterface => ({
  id,
  subnetId: 'subnet-1',
  createdAt: new Date(NOW - 2 * 3_600_000),
  instanceId: 'i-gone',
  clusterName: 'c1',
  status: 'available',
});

describe('Janitor delete', () => {
  test('deletes with onlyIfDetached; "in use" at delete time is a skip, other errors are failures', async () => {
    const calls: Array<[string, DeleteInterfaceOptions | undefined]> = [];
    const cloud: JanitorCloud = {
      findLeakedInterfaces: async () => [leak('eni-ok'), leak('eni-taken'), leak('eni-broken')],
      async deleteInterface(id, options) {
        calls.push([id, options]);
        if (id === 'eni-taken') throw new InterfaceInUseError(`${id} is in-use; not deleted`);
        if (id === 'eni-broken') throw new OtherProviderError('boom');
      },
    };
    const report = await new Janitor({
      cloud,
      liveness: { check: async (ids) => new Map(ids.map((i) => [i, false])) },
      leadership: { isLeader: () => true },
      clusterName: 'c1',
      graceMs: 3_600_000,
      dryRun: false,
      logger: pino({ level: 'silent' }),
      now: () => NOW,
    }).sweep();
    assert.deepEqual(calls, [
      ['eni-ok', { onlyIfDetached: true }],
      ['eni-taken', { onlyIfDetached: true }],
      ['eni-broken', { onlyIfDetached: true }],
    ]);
    assert.deepEqual(report.deleted, ['eni-ok']);
    assert.deepEqual(report.kept, [
      { id: 'eni-taken', reason: 'in use at delete time: eni-taken is in-use; not deleted' },
    ]);
    assert.deepEqual(
      report.failed.map((f) => f.id),
      ['eni-broken'],
    );
  });
});
