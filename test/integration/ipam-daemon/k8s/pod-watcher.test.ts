// The pod watcher driven through the real @kubernetes/client-node against the fake API server:
// streams that break mid-flight, 410 Gone, a daemon restart mid-watch, and the release rules.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { GcAllocation } from '../../../../src/ipam-daemon/k8s/pod-gc-policy.ts';
import {
  type AllocationSource,
  createNodePodsReflector,
  PodWatcher,
} from '../../../../src/ipam-daemon/k8s/pod-watcher.ts';
import type { Reflector } from '../../../../src/ipam-daemon/k8s/reflector.ts';
import { FakeKubeApiServer, type KubeObject } from '../../../fakes/kube-apiserver.ts';

const NODE = 'ip-10-0-1-23.ec2.internal';
const logger = pino({ level: 'silent' });

function pod(name: string, node = NODE, namespace = 'default'): KubeObject {
  // Created two hours ago: before the allocations below, as a real pod precedes its sandbox.
  const creationTimestamp = new Date(Date.now() - 7_200_000).toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, creationTimestamp },
    spec: { nodeName: node, containers: [] },
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

class MemoryAllocations implements AllocationSource {
  readonly items = new Map<string, GcAllocation>();
  readonly releases: string[] = [];
  add(
    containerId: string,
    podName: string,
    assignedAt = new Date(Date.now() - 3_600_000).toISOString(),
  ): void {
    this.items.set(containerId, {
      containerId,
      ifName: 'eth0',
      ip: `10.0.1.${this.items.size + 10}`,
      podNamespace: 'default',
      podName,
      assignedAt,
    });
  }
  list(): GcAllocation[] {
    return [...this.items.values()];
  }
  async releaseIfUnwired(key: { containerId: string; ifName: string }) {
    const a = this.items.get(key.containerId);
    this.releases.push(key.containerId);
    this.items.delete(key.containerId);
    return { released: a?.ip ?? null };
  }
}

describe('pod watcher against the fake API server', () => {
  const server = new FakeKubeApiServer({ token: 'node-token' });
  let kc: KubeConfig;
  let core: CoreV1Api;

  before(async () => {
    await server.start();
    kc = new KubeConfig();
    kc.loadFromOptions(server.kubeConfigOptions());
    core = kc.makeApiClient(CoreV1Api);
  });
  after(async () => {
    await server.stop();
  });

  function reflector(): Reflector<V1Pod> {
    return createNodePodsReflector(kc, core, NODE, logger);
  }

  test('lists only this node, then follows adds and deletes through a watch', async () => {
    server.put('pods', pod('a'));
    server.put('pods', pod('elsewhere', 'other-node'));
    const r = reflector();
    r.start();
    try {
      await until('first list', () => r.hasSynced && r.connectedSince !== null);
      assert.deepEqual(
        r.items().map((p) => p.metadata?.name),
        ['a'],
      );
      const list = server.requests.find(
        (q) => q.method === 'GET' && q.path === '/api/v1/pods' && !q.query.watch,
      );
      assert.equal(list?.query.fieldSelector, `spec.nodeName=${NODE}`);
      assert.equal(list?.authorization, 'Bearer node-token');
      server.put('pods', pod('b'));
      server.put('pods', pod('c', 'other-node'));
      await until('b added', () => r.get('default/b') !== undefined);
      server.remove('pods', 'a');
      await until('a deleted', () => r.get('default/a') === undefined);
      assert.equal(r.get('default/c'), undefined);
      const watch = server.requests.find((q) => q.query.watch === 'true');
      assert.equal(watch?.query.allowWatchBookmarks, 'true');
    } finally {
      await r.stop();
      server.remove('pods', 'b');
      server.remove('pods', 'elsewhere');
      server.remove('pods', 'c');
    }
  });

  test('a stream cut mid-flight resumes from the last resourceVersion without relisting', async () => {
    const r = reflector();
    r.start();
    try {
      await until('connected', () => r.connectedSince !== null);
      server.put('pods', pod('x1'));
      await until('x1', () => r.get('default/x1') !== undefined);
      const rvBefore = r.lastResourceVersion;
      const watchesBefore = server.requests.filter((q) => q.query.watch === 'true').length;
      assert.equal(server.breakWatches(), 1);
      // Changes made while the stream is down must arrive after the resume.
      server.put('pods', pod('x2'));
      server.remove('pods', 'x1');
      await until('x2 seen after resume', () => r.get('default/x2') !== undefined, 8000);
      await until('x1 deletion seen after resume', () => r.get('default/x1') === undefined);
      const resumed = server.requests.filter((q) => q.query.watch === 'true').slice(watchesBefore);
      assert.equal(resumed[0]?.query.resourceVersion, rvBefore);
      assert.equal(r.stats.lists, 1, 'a resumable break must not relist');
      assert.ok(r.stats.errors >= 1);
    } finally {
      await r.stop();
      server.remove('pods', 'x2');
    }
  });

  test('410 Gone on resume makes it relist and emit the deletes it missed', async () => {
    server.put('pods', pod('g1'));
    server.put('pods', pod('g2'));
    const r = reflector();
    const deleted: string[] = [];
    r.on('delete', (p: V1Pod) => deleted.push(p.metadata?.name ?? ''));
    r.start();
    try {
      await until(
        'synced',
        () => r.hasSynced && r.get('default/g2') !== undefined && r.connectedSince !== null,
      );
      server.breakWatches();
      server.remove('pods', 'g1');
      server.put('pods', pod('g3'));
      server.compact(); // the deletion of g1 is no longer in the history
      await until('relisted after 410', () => r.stats.lists === 2, 8000);
      await until(
        'g1 gone, g3 present',
        () => r.get('default/g1') === undefined && r.get('default/g3') !== undefined,
      );
      assert.equal(r.stats.gone, 1);
      assert.deepEqual(deleted, ['g1']);
    } finally {
      await r.stop();
      server.remove('pods', 'g2');
      server.remove('pods', 'g3');
    }
  });

  test('releases the IP of a pod deleted without CNI DEL, only after the grace period', async () => {
    server.put('pods', pod('web-1'));
    server.put('pods', pod('web-2'));
    const allocations = new MemoryAllocations();
    allocations.add('c-web-1', 'web-1');
    allocations.add('c-web-2', 'web-2');
    allocations.add('c-manual', 'unused');
    allocations.items.get('c-manual')!.podName = undefined; // made outside Kubernetes: never touched
    const grace = 300;
    const w = new PodWatcher({
      nodeName: NODE,
      allocations,
      logger,
      reflector: reflector(),
      policy: { graceMs: grace, settleMs: 50 },
      intervalMs: 25,
    });
    w.start();
    try {
      await until('watching', () => server.openWatches > 0);
      await new Promise((r) => setTimeout(r, 150));
      assert.deepEqual(allocations.releases, [], 'live pods keep their IPs');
      const deletedAt = Date.now();
      server.remove('pods', 'web-1');
      await until('web-1 released', () => allocations.releases.includes('c-web-1'));
      const waited = Date.now() - deletedAt;
      assert.ok(waited >= grace, `released after ${waited} ms, before the ${grace} ms grace`);
      await new Promise((r) => setTimeout(r, grace + 100));
      assert.deepEqual(allocations.releases, ['c-web-1']);
    } finally {
      await w.stop();
      server.remove('pods', 'web-2');
    }
  });

  test('a daemon restart mid-watch: the new watcher lists afresh and releases what vanished meanwhile', async () => {
    server.put('pods', pod('db-0'));
    server.put('pods', pod('db-1'));
    const allocations = new MemoryAllocations();
    allocations.add('c-db-0', 'db-0');
    allocations.add('c-db-1', 'db-1');
    const make = () =>
      new PodWatcher({
        nodeName: NODE,
        allocations,
        logger,
        reflector: reflector(),
        policy: { graceMs: 200, settleMs: 50 },
        intervalMs: 25,
      });
    const first = make();
    first.start();
    await until('first watching', () => server.openWatches > 0);
    // The daemon dies with its stream open; the pod goes away while nobody watches.
    await first.stop();
    server.remove('pods', 'db-1');
    server.compact();
    assert.deepEqual(allocations.releases, []);
    const second = make();
    second.start();
    try {
      await until('db-1 released by the restarted watcher', () => allocations.releases.includes('c-db-1'));
      assert.deepEqual(allocations.releases, ['c-db-1']);
      assert.ok(allocations.items.has('c-db-0'));
    } finally {
      await second.stop();
      server.remove('pods', 'db-0');
    }
  });

  test('while the API server is unreachable nothing is released', async () => {
    server.put('pods', pod('api-down'));
    const allocations = new MemoryAllocations();
    allocations.add('c-api-down', 'api-down');
    allocations.add('c-ghost', 'ghost'); // no such pod: would be released if the view were trusted
    const w = new PodWatcher({
      nodeName: NODE,
      allocations,
      logger,
      reflector: createNodePodsReflector(kc, core, NODE, logger),
      policy: { graceMs: 100, settleMs: 50 },
      intervalMs: 20,
    });
    server.failNext('GET', /^\/api\/v1\/pods$/, 503, 'ServiceUnavailable', 1);
    w.start();
    try {
      // The first list fails: no view, so no decision.
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(allocations.releases, []);
      await until(
        'ghost released once the view is live',
        () => allocations.releases.includes('c-ghost'),
        8000,
      );
      assert.ok(allocations.items.has('c-api-down'));
    } finally {
      await w.stop();
      server.remove('pods', 'api-down');
    }
  });
});
