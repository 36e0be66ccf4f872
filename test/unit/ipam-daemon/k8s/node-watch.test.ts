// SchedulabilityWatch (k8s/node-watch.ts) on a stand-in for the API client: it reports the Node's
// spec.unschedulable when it changes, and keeps the last state while the Node cannot be read.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { V1Node } from '@kubernetes/client-node';
import { SchedulabilityWatch } from '../../../../src/ipam-daemon/k8s/node-watch.ts';
import { quietLogger } from '../harness.ts';

describe('schedulability watch', () => {
  test('reports cordon and uncordon once each; an unreadable Node changes nothing', async () => {
    let node: V1Node | Error = { metadata: { name: 'n1' }, spec: {} };
    const asked: string[] = [];
    const seen: boolean[] = [];
    const w = new SchedulabilityWatch({
      core: {
        readNode: async ({ name }: { name: string }) => {
          asked.push(name);
          if (node instanceof Error) throw node;
          return node;
        },
      } as never,
      nodeName: 'n1',
      intervalMs: 60_000,
      logger: quietLogger,
      onChange: (u) => seen.push(u),
    });
    await w.poll();
    await w.poll();
    node = { metadata: { name: 'n1' }, spec: { unschedulable: true } };
    await w.poll();
    node = new Error('connection refused');
    await w.poll();
    node = { metadata: { name: 'n1' }, spec: { unschedulable: true } };
    await w.poll();
    node = { metadata: { name: 'n1' }, spec: { unschedulable: false } };
    await w.poll();
    assert.deepEqual(seen, [false, true, false]);
    assert.ok(asked.every((n) => n === 'n1'));
    await w.stop();
  });
});
