// The pod watcher through the real @kubernetes/client-node against the real kube-apiserver
// (test/helpers/kube-apiserver.ts), as the chart's daemon ServiceAccount under the chart's RBAC:
// real list+watch by field selector, pods deleted gracefully (Terminating, no kubelet confirms),
// force-deleted and recreated under the same name with a new UID, a daemon restart mid-watch, and
// the release rules. Network faults come from a TCP relay in front of the real server (a stream
// cut mid-flight, the server unreachable); 410 Gone on resume is the real one: this file's API
// server serves pods without its watch cache (--watch-cache-sizes=pods#0), so a watch resumed from
// a revision etcd has compacted gets the server's own "too old resourceVersion" 410.
//
// One fault the real server cannot be made to give on demand is injected in front of it: a 503 and
// a 429 answer to the pod list (the last test, through an HTTPS fault proxy that passes everything
// else to the real server). A real server sheds load only when overloaded; API Priority and
// Fairness with a zero-share, no-borrowing, Reject priority level matched to the daemon's
// ServiceAccount still admitted its lists (checked on v1.34.4), and a stopped etcd answers only
// after long timeouts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { GcAllocation } from '../../../../src/ipam-daemon/k8s/pod-gc-policy.ts';
import {
  type AllocationSource,
  createNodePodsReflector,
  PodWatcher,
} from '../../../../src/ipam-daemon/k8s/pod-watcher.ts';
import type { Reflector } from '../../../../src/ipam-daemon/k8s/reflector.ts';
import {
  type KubeApiServer,
  podRef,
  sleep,
  startKubeApiServer,
  startKubeFaultProxy,
  TcpRelay,
  until,
} from '../../../helpers/kube-apiserver.ts';

const logger = pino({ level: 'silent' });

/** The daemon's allocations, as the pod watcher reads and releases them. */
class MemoryAllocations implements AllocationSource {
  readonly items = new Map<string, GcAllocation>();
  readonly releases: string[] = [];
  /** An allocation for this pod (its uid, as the CNI's K8S_POD_UID carries it), assigned an hour ago. */
  add(
    containerId: string,
    pod: { namespace: string; name: string; uid?: string },
    ip = `10.0.1.${this.items.size + 10}`,
  ): void {
    this.items.set(containerId, {
      containerId,
      ifName: 'eth0',
      ip,
      podNamespace: pod.namespace,
      podName: pod.name,
      ...(pod.uid ? { podUid: pod.uid } : {}),
      assignedAt: new Date(Date.now() - 3_600_000).toISOString(),
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

describe('pod watcher against the real kube-apiserver', { timeout: 600_000 }, () => {
  let kube: KubeApiServer;
  let token: string;
  let n = 0;

  before(async () => {
    kube = await startKubeApiServer('pod-watcher', { apiServerArgs: ['--watch-cache-sizes=pods#0'] });
    token = (await kube.installChart('vpc')).daemonToken;
  });
  after(async () => {
    await kube?.stop();
  });

  /** Each test watches a node of its own, so pods of other tests never show. */
  const nodeName = () => `ip-10-0-1-${++n}.ec2.internal`;
  /** The node's pods as the daemon lists+watches them, through `server` (a relay) or directly. */
  const reflectorFor = (node: string, server?: string): Reflector<V1Pod> => {
    const kc = kube.tokenKubeConfig(token, server);
    return createNodePodsReflector(kc, kc.makeApiClient(CoreV1Api), node, logger);
  };
  const watcherFor = (
    node: string,
    allocations: AllocationSource,
    policy: { graceMs: number; settleMs?: number },
    server?: string,
  ) =>
    new PodWatcher({
      nodeName: node,
      allocations,
      logger,
      reflector: reflectorFor(node, server),
      policy: { settleMs: 50, ...policy },
      intervalMs: 25,
    });

  test('lists only this node, then follows adds and deletes through a watch', async () => {
    const node = nodeName();
    const ns = await kube.namespace('list');
    await kube.createPod(ns, 'a', node);
    await kube.createPod(ns, 'elsewhere', 'other-node');
    const r = reflectorFor(node);
    r.start();
    try {
      await until('first list', () => r.hasSynced && r.connectedSince !== null);
      assert.deepEqual(
        r.items().map((p) => p.metadata?.name),
        ['a'],
      );
      await kube.createPod(ns, 'b', node);
      await kube.createPod(ns, 'c', 'other-node');
      await until('b added', () => r.get(`${ns}/b`) !== undefined);
      await kube.forceDeletePod(ns, 'a');
      await until('a deleted', () => r.get(`${ns}/a`) === undefined);
      assert.equal(r.get(`${ns}/c`), undefined);
      assert.equal(r.get(`${ns}/elsewhere`), undefined);
      assert.equal(r.stats.lists, 1);
    } finally {
      await r.stop();
    }
  });

  test('a stream cut mid-flight resumes from the last resourceVersion without relisting', async () => {
    const node = nodeName();
    const ns = await kube.namespace('cut');
    const relay = new TcpRelay(kube.cp.apiPort);
    await relay.up();
    const r = reflectorFor(node, relay.url);
    r.start();
    try {
      await until('connected', () => r.connectedSince !== null);
      await kube.createPod(ns, 'x1', node);
      await until('x1', () => r.get(`${ns}/x1`) !== undefined);
      const watchesBefore = r.stats.watches;
      // The stream dies with no clean end, and the server stays unreachable while pods change.
      assert.ok(relay.cut() >= 1, 'a connection was open');
      await relay.down();
      await until('disconnected', () => r.connectedSince === null);
      await kube.createPod(ns, 'x2', node);
      await kube.forceDeletePod(ns, 'x1');
      await relay.up();
      await until('x2 seen after resume', () => r.get(`${ns}/x2`) !== undefined, 30_000);
      await until('x1 deletion seen after resume', () => r.get(`${ns}/x1`) === undefined);
      // A deletion made while no stream was open can only arrive by resuming from before it.
      assert.equal(r.stats.lists, 1, 'a resumable break must not relist');
      assert.ok(r.stats.watches > watchesBefore);
      assert.ok(r.stats.errors >= 1);
      assert.equal(r.stats.gone, 0);
    } finally {
      await r.stop();
      await relay.down();
    }
  });

  test('410 Gone on resume (etcd compacted) makes it relist and emit the deletes it missed', async () => {
    const node = nodeName();
    const ns = await kube.namespace('gone');
    const relay = new TcpRelay(kube.cp.apiPort);
    await relay.up();
    await kube.createPod(ns, 'g1', node);
    await kube.createPod(ns, 'g2', node);
    const r = reflectorFor(node, relay.url);
    const deleted: string[] = [];
    r.on('delete', (p: V1Pod) => deleted.push(p.metadata?.name ?? ''));
    r.start();
    try {
      await until(
        'synced',
        () => r.hasSynced && r.get(`${ns}/g2`) !== undefined && r.connectedSince !== null,
      );
      await relay.down();
      await kube.forceDeletePod(ns, 'g1');
      await kube.createPod(ns, 'g3', node);
      await kube.compactEtcd(); // the deletion of g1 is no longer in etcd's history
      await relay.up();
      await until('relisted after 410', () => r.stats.lists === 2, 30_000);
      await until(
        'g1 gone, g3 present',
        () => r.get(`${ns}/g1`) === undefined && r.get(`${ns}/g3`) !== undefined,
      );
      assert.equal(r.stats.gone, 1);
      assert.deepEqual(deleted, ['g1']);
    } finally {
      await r.stop();
      await relay.down();
    }
  });

  test('releases the IP of a pod deleted without CNI DEL, only after the grace period', async () => {
    const node = nodeName();
    const ns = await kube.namespace('grace');
    const allocations = new MemoryAllocations();
    allocations.add('c-web-1', podRef(await kube.createPod(ns, 'web-1', node)));
    allocations.add('c-web-2', podRef(await kube.createPod(ns, 'web-2', node)));
    allocations.add('c-manual', { namespace: ns, name: 'unused' });
    allocations.items.get('c-manual')!.podName = undefined; // made outside Kubernetes: never touched
    const grace = 300;
    const w = watcherFor(node, allocations, { graceMs: grace });
    w.start();
    try {
      await sleep(1500);
      assert.deepEqual(allocations.releases, [], 'live pods keep their IPs');
      const deletedAt = Date.now();
      await kube.forceDeletePod(ns, 'web-1');
      await until('web-1 released', () => allocations.releases.includes('c-web-1'));
      const waited = Date.now() - deletedAt;
      assert.ok(waited >= grace, `released after ${waited} ms, before the ${grace} ms grace`);
      await sleep(grace + 500);
      assert.deepEqual(allocations.releases, ['c-web-1']);
    } finally {
      await w.stop();
    }
  });

  test('a Terminating pod keeps its IP; recreated under its name with a new UID, only the old IP goes', async () => {
    const node = nodeName();
    const ns = await kube.namespace('recreate');
    const allocations = new MemoryAllocations();
    const first = podRef(await kube.createPod(ns, 'db-0', node));
    allocations.add('c-old', first, '10.0.1.100');
    const w = watcherFor(node, allocations, { graceMs: 300 });
    w.start();
    try {
      // A graceful delete: the pod is Terminating until its kubelet confirms (none runs here).
      await kube.core.deleteNamespacedPod({ namespace: ns, name: 'db-0', gracePeriodSeconds: 30 });
      const terminating = await kube.core.readNamespacedPod({ namespace: ns, name: 'db-0' });
      assert.ok(terminating.metadata?.deletionTimestamp, 'the pod is Terminating');
      await sleep(1500);
      assert.deepEqual(allocations.releases, [], 'the kubelet is still tearing it down');
      // Gone for good, and a new incarnation (a StatefulSet replica) under the same name.
      await kube.forceDeletePod(ns, 'db-0');
      const second = podRef(await kube.createPod(ns, 'db-0', node));
      assert.notEqual(second.uid, first.uid);
      allocations.add('c-new', second, '10.0.1.101');
      await until('the old incarnation released', () => allocations.releases.includes('c-old'));
      await sleep(1000);
      assert.deepEqual(allocations.releases, ['c-old']);
      assert.ok(allocations.items.has('c-new'));
    } finally {
      await w.stop();
    }
  });

  test('a daemon restart mid-watch: the new watcher lists afresh and releases what vanished meanwhile', async () => {
    const node = nodeName();
    const ns = await kube.namespace('restart');
    const allocations = new MemoryAllocations();
    allocations.add('c-db-0', podRef(await kube.createPod(ns, 'db-0', node)));
    allocations.add('c-db-1', podRef(await kube.createPod(ns, 'db-1', node)));
    const first = watcherFor(node, allocations, { graceMs: 200 });
    first.start();
    await sleep(1000);
    // The daemon dies with its stream open; the pod goes away while nobody watches.
    await first.stop();
    await kube.forceDeletePod(ns, 'db-1');
    assert.deepEqual(allocations.releases, []);
    const second = watcherFor(node, allocations, { graceMs: 200 });
    second.start();
    try {
      await until('db-1 released by the restarted watcher', () => allocations.releases.includes('c-db-1'));
      assert.deepEqual(allocations.releases, ['c-db-1']);
      assert.ok(allocations.items.has('c-db-0'));
    } finally {
      await second.stop();
    }
  });

  test('while the API server is unreachable nothing is released', async () => {
    const node = nodeName();
    const ns = await kube.namespace('unreachable');
    const relay = new TcpRelay(kube.cp.apiPort);
    await relay.up();
    await relay.down(); // its port, refusing connections
    const allocations = new MemoryAllocations();
    allocations.add('c-api-down', podRef(await kube.createPod(ns, 'api-down', node)));
    allocations.add('c-ghost', { namespace: ns, name: 'ghost' }); // no such pod: released once the view is live
    const w = watcherFor(node, allocations, { graceMs: 100 }, relay.url);
    w.start();
    try {
      // The lists fail: no view, so no decision.
      await sleep(1500);
      assert.deepEqual(allocations.releases, []);
      await relay.up();
      await until(
        'ghost released once the view is live',
        () => allocations.releases.includes('c-ghost'),
        30_000,
      );
      assert.ok(allocations.items.has('c-api-down'));
    } finally {
      await w.stop();
      await relay.down();
    }
  });

  test('the API server sheds load on the pod list (503, then 429): nothing is released until a list succeeds', async () => {
    const node = nodeName();
    const ns = await kube.namespace('shed');
    const proxy = await startKubeFaultProxy(kube);
    const isList = (q: URLSearchParams) => q.get('watch') !== 'true';
    proxy.failNext('GET', /^\/api\/v1\/pods$/, 503, 1, isList);
    proxy.failNext('GET', /^\/api\/v1\/pods$/, 429, 1, isList);
    const allocations = new MemoryAllocations();
    allocations.add('c-live', podRef(await kube.createPod(ns, 'live', node)));
    allocations.add('c-ghost', { namespace: ns, name: 'ghost' }); // no such pod
    const w = watcherFor(node, allocations, { graceMs: 100 }, proxy.url);
    w.start();
    try {
      await until(
        'two refused lists',
        () =>
          proxy.seen.filter((r) => r.startsWith('GET /api/v1/pods?') && !r.includes('watch=true')).length >=
          2,
        30_000,
      );
      assert.deepEqual(allocations.releases, [], 'no view, no decision');
      await until(
        'ghost released once a list succeeds',
        () => allocations.releases.includes('c-ghost'),
        30_000,
      );
      assert.ok(allocations.items.has('c-live'));
      const lists = proxy.seen.filter((r) => r.startsWith('GET /api/v1/pods?') && !r.includes('watch=true'));
      assert.equal(lists.length, 3, lists.join('\n'));
    } finally {
      await w.stop();
      await proxy.close();
    }
  });
});
