// The daemon's Kubernetes side against the real kube-apiserver (test/helpers/kube-apiserver.ts),
// as the chart's daemon ServiceAccount under the chart's RBAC, with the chart's CRDs: the
// NodeIPAMStatus it publishes (created, owned by the Node and garbage-collected with it by the real
// kube-controller-manager, merge-patched, coalesced, every field kept by the CRD schema), the
// Events on no-IP and on drift (aggregated), custom networking selection from PodNetworkConfig
// objects, the pod watcher wired to the daemon and across a kube-apiserver restart (the new watch
// cache's real 410), kubectl cordon reaching the daemon through its Node read, and in-cluster
// configuration from a real ServiceAccount token. Each test has its own Node (and namespace), so
// they do not depend on one another.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CoreV1Api,
  type CoreV1Event,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import type { AttachmentKey, PoolStatus } from '../../../../src/ipam-daemon/api-types.ts';
import type { KubernetesSettings } from '../../../../src/ipam-daemon/k8s/env.ts';
import {
  resolveCustomNetworking,
  startKubernetesIntegration,
} from '../../../../src/ipam-daemon/k8s/integration.ts';
import { loadKubeConfig } from '../../../../src/ipam-daemon/k8s/kube-client.ts';
import { NETWORK_CONFIG_API } from '../../../../src/ipam-daemon/k8s/network-config.ts';
import { NODE_STATUS_API, statusBody } from '../../../../src/ipam-daemon/k8s/node-status.ts';
import type { GcAllocation } from '../../../../src/ipam-daemon/k8s/pod-gc-policy.ts';
import { createNodePodsReflector, PodWatcher } from '../../../../src/ipam-daemon/k8s/pod-watcher.ts';
import {
  type KubeApiServer,
  podRef,
  sleep,
  startKubeApiServer,
  until,
} from '../../../helpers/kube-apiserver.ts';

const logger = pino({ level: 'silent' });

function pool(assigned: number, noIpReason: string | null = null): PoolStatus {
  return {
    instanceId: 'i-0abc',
    instanceType: 'm5.large',
    maxPods: 29,
    total: 9,
    assigned,
    cooling: 0,
    free: 9 - assigned,
    plan: 'hold',
    noIpReason,
    interfaces: [
      {
        interfaceId: 'eni-1',
        mac: '02:00:00:00:00:01',
        deviceIndex: 0,
        subnetId: 'subnet-1',
        total: 9,
        assigned,
        cooling: 0,
        free: 9 - assigned,
      },
    ],
  };
}

/** The Daemon as the integration sees it: its events and answers, scripted by the test. */
class ScriptedDaemon extends EventEmitter {
  current = pool(0);
  allocations: GcAllocation[] = [];
  released: AttachmentKey[] = [];
  status(): PoolStatus {
    return this.current;
  }
  list(): GcAllocation[] {
    return this.allocations;
  }
  async releaseIfUnwired(key: AttachmentKey) {
    this.released.push(key);
    const a = this.allocations.find((x) => x.containerId === key.containerId && x.ifName === key.ifName);
    this.allocations = this.allocations.filter((x) => x !== a);
    return { released: a?.ip ?? null };
  }
}

const settings = (nodeName: string, over: Partial<KubernetesSettings> = {}): KubernetesSettings => ({
  nodeName,
  enablePodWatch: false,
  podGcGraceMs: 60_000,
  statusIntervalMs: 200,
  customNetworking: false,
  networkConfigLabel: 'vpc-ipam.io/network-config',
  networkConfigAnnotation: 'k8s.amazonaws.com/eniConfig',
  ...over,
});

type NodeEvent = CoreV1Event & { count: number };

describe('daemon Kubernetes integration against the real kube-apiserver', { timeout: 300_000 }, () => {
  let kube: KubeApiServer;
  /** The daemon's credentials: the chart's daemon ServiceAccount token (TokenRequest). */
  let kc: KubeConfig;
  let daemonToken: string;
  let n = 0;

  before(async () => {
    kube = await startKubeApiServer('daemon-k8s', { controllers: true });
    const chart = await kube.installChart('vpc');
    kc = chart.daemonKubeConfig;
    daemonToken = chart.daemonToken;
  });
  after(async () => {
    await kube?.stop();
  });

  /** A Node of this test's own, as kubelet registers it; returns its name and uid. */
  const newNode = async (labels: Record<string, string> = {}) => {
    const name = `ip-10-1-2-${++n}.ec2.internal`;
    const node = await kube.createNode(name, {
      labels: { 'topology.kubernetes.io/zone': 'us-east-1a', ...labels },
    });
    return { name, uid: node.metadata!.uid! };
  };
  const statusOf = async (node: string) =>
    (await kube.custom
      .getClusterCustomObject({ ...NODE_STATUS_API, name: node })
      .catch((e: { code?: number }) => {
        if (e.code === 404) return undefined;
        throw e;
      })) as
      | { metadata: { ownerReferences?: { kind: string; uid: string }[] }; status?: Record<string, unknown> }
      | undefined;
  /** The daemon's own Events on a Node (the node lifecycle controller adds its RegisteredNode there too). */
  const eventsOf = async (node: string) =>
    (
      (
        await kube.core.listNamespacedEvent({
          namespace: 'default',
          fieldSelector: `involvedObject.name=${node}`,
        })
      ).items as NodeEvent[]
    ).filter((e) => e.source?.component === 'vpc-ipamd');

  /** The integration started as the daemon starts it, for a Node of this test's own. */
  const startOnNewNode = async () => {
    const node = await newNode();
    const daemon = new ScriptedDaemon();
    const k8s = await startKubernetesIntegration({
      daemon,
      settings: settings(node.name),
      logger,
      kubeConfig: kc,
    });
    return { node, daemon, k8s };
  };

  test('publishes NodeIPAMStatus owned by the Node, merge-patches it, coalesces bursts; the Node GC takes it', async () => {
    const { node, daemon, k8s } = await startOnNewNode();
    try {
      await until('status created', async () => (await statusOf(node.name)) !== undefined);
      const created = (await statusOf(node.name))!;
      const owner = created.metadata.ownerReferences?.[0];
      assert.deepEqual({ kind: owner?.kind, uid: owner?.uid }, { kind: 'Node', uid: node.uid });
      // Every field the daemon writes survives the CRD's structural schema (unknown fields are pruned).
      const { updatedAt, ...stored } = created.status ?? {};
      assert.deepEqual(stored, JSON.parse(JSON.stringify(statusBody(pool(0), null))));
      assert.ok(!Number.isNaN(Date.parse(String(updatedAt))));
      // A burst of 50 changes within one interval: one or two writes, ending with the latest.
      const writesBefore = k8s.publisher.writes;
      for (let i = 1; i <= 50; i++) {
        daemon.current = pool(i % 9);
        daemon.emit('pool-changed', daemon.current);
      }
      daemon.current = pool(7, 'subnet-full');
      daemon.emit('pool-changed', daemon.current);
      await until('latest state published', async () => (await statusOf(node.name))?.status?.assigned === 7);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(
        k8s.publisher.writes - writesBefore <= 2,
        `${k8s.publisher.writes - writesBefore} writes for a burst`,
      );
      const status = (await statusOf(node.name))!.status!;
      assert.equal(status.noIpReason, 'subnet-full');
      assert.equal(status.free, 2);
      assert.equal(status.maxPods, 29);
    } finally {
      await k8s.stop();
    }
    // The daemon may not write Nodes (the chart grants get only)...
    await assert.rejects(
      kc
        .makeApiClient(CoreV1Api)
        .patchNode(
          { name: node.name, body: { metadata: { labels: { x: 'y' } } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
      (e: { code?: number }) => e.code === 403,
    );
    // ...and its status object goes with the Node (kube-controller-manager's garbage collector).
    await kube.core.deleteNode({ name: node.name });
    await until(
      'NodeIPAMStatus garbage-collected',
      async () => (await statusOf(node.name)) === undefined,
      60_000,
    );
  });

  test('no-IP occurrences become one aggregated Warning Event on the Node', async () => {
    const { node, daemon, k8s } = await startOnNewNode();
    try {
      for (let i = 0; i < 20; i++) {
        daemon.emit('no-ip', {
          reason: 'subnet-full',
          message: 'subnet subnet-1 has no free addresses',
          containerId: `c${i}`,
        });
      }
      await k8s.events.flush();
      const events = await eventsOf(node.name);
      assert.equal(events.length, 1, JSON.stringify(events));
      const e = events[0]!;
      assert.equal(e.reason, 'NoIPSubnetFull');
      assert.equal(e.type, 'Warning');
      assert.equal(e.count, 20);
      assert.deepEqual(
        [e.involvedObject.kind, e.involvedObject.name, e.involvedObject.uid],
        ['Node', node.name, node.uid],
      );
      assert.ok(k8s.events.writes <= 2, `${k8s.events.writes} writes for 20 occurrences`);
      daemon.emit('no-ip', { reason: 'instance-limit', message: 'm5.large holds 3 interfaces' });
      await k8s.events.flush();
      const reasons = (await eventsOf(node.name)).map((x) => x.reason).sort();
      assert.deepEqual(reasons, ['NoIPInstanceLimit', 'NoIPSubnetFull']);
    } finally {
      await k8s.stop();
    }
  });

  test("drift 'ip-lost' becomes an aggregated PodIPLost Warning naming the pod, the IP, the interface and the fix", async () => {
    const { node, daemon, k8s } = await startOnNewNode();
    try {
      const lost = (i: number) => ({
        kind: 'ip-lost',
        interfaceId: 'eni-0abc',
        ip: `10.0.0.${20 + i}`,
        key: `c${i}/eth0`,
        pod: `default/web-${i}`,
        source: 'metadata',
        message: 'the daemon log line',
      });
      daemon.emit('drift', lost(1));
      // Other repairs are not Events (logs and metrics only).
      daemon.emit('drift', {
        kind: 'ip-added',
        interfaceId: 'eni-0abc',
        ip: '10.0.0.99',
        source: 'metadata',
        message: '',
      });
      daemon.emit('drift', {
        kind: 'ip-removed',
        interfaceId: 'eni-0abc',
        ip: '10.0.0.98',
        source: 'api',
        message: '',
      });
      await k8s.events.flush();
      let events = await eventsOf(node.name);
      assert.equal(events.length, 1, JSON.stringify(events));
      const e = events[0]!;
      assert.deepEqual(
        [e.reason, e.type, e.count, e.involvedObject.kind, e.involvedObject.name, e.involvedObject.uid],
        ['PodIPLost', 'Warning', 1, 'Node', node.name, node.uid],
      );
      assert.match(e.message ?? '', /pod default\/web-1 lost its IP 10\.0\.0\.21/);
      assert.match(e.message ?? '', /interface eni-0abc/);
      assert.match(e.message ?? '', /delete the pod so it is recreated with a new IP/);
      // A burst (an interface removed with its pods): one Event, counted, naming every pod.
      for (let i = 2; i <= 6; i++) daemon.emit('drift', lost(i));
      await k8s.events.flush();
      events = await eventsOf(node.name);
      assert.equal(events.length, 1, 'aggregated into the same Event');
      assert.equal(events[0]!.count, 6);
      assert.match(events[0]!.message ?? '', /pod default\/web-6 lost its IP 10\.0\.0\.26/);
      for (let i = 1; i <= 6; i++)
        assert.ok(
          events[0]!.message?.includes(`default/web-${i} (10.0.0.${20 + i} on eni-0abc)`),
          `web-${i} named: ${events[0]!.message}`,
        );
      assert.ok(k8s.events.writes <= 3, `${k8s.events.writes} writes for 6 occurrences`);
    } finally {
      await k8s.stop();
    }
  });

  test('custom networking: the node label wins, else the zone; a missing config is a clear error', async () => {
    const node = await newNode();
    const pnc = (name: string, spec: Record<string, unknown>) =>
      kube.custom.createClusterCustomObject({
        ...NETWORK_CONFIG_API,
        body: { apiVersion: 'vpc-ipam.io/v1alpha1', kind: 'PodNetworkConfig', metadata: { name }, spec },
      });
    await pnc('us-east-1a', { subnetIds: ['subnet-zone-a'], securityGroupIds: ['sg-a'] });
    await pnc('special', { subnetIds: ['subnet-special-1', 'subnet-special-2'] });
    const s = settings(node.name, { customNetworking: true });
    const byZone = await resolveCustomNetworking({ settings: s, logger, kubeConfig: kc });
    assert.deepEqual(byZone, {
      name: 'us-east-1a',
      subnetIds: ['subnet-zone-a'],
      securityGroupIds: ['sg-a'],
    });
    const label = (labels: Record<string, string>) => kube.setNodeMeta(node.name, { labels });
    await label({ 'topology.kubernetes.io/zone': 'us-east-1a', 'vpc-ipam.io/network-config': 'special' });
    const byLabel = await resolveCustomNetworking({ settings: s, logger, kubeConfig: kc });
    assert.equal(byLabel?.name, 'special');
    assert.deepEqual(byLabel?.subnetIds, ['subnet-special-1', 'subnet-special-2']);
    await label({ 'vpc-ipam.io/network-config': 'missing' });
    await assert.rejects(
      resolveCustomNetworking({ settings: s, logger, kubeConfig: kc }),
      /network-config=missing names no PodNetworkConfig/,
    );
    assert.equal(
      await resolveCustomNetworking({ settings: settings(node.name), logger, kubeConfig: kc }),
      null,
    );
  });

  test('pod watcher wired to the daemon releases a vanished pod through the daemon, keeps a live one', async () => {
    const node = await newNode();
    const ns = await kube.namespace('wired');
    const live = await kube.createPod(ns, 'live', node.name);
    const assignedAt = new Date(Date.now() - 3_600_000).toISOString();
    const daemon = new ScriptedDaemon();
    daemon.allocations = [
      {
        containerId: 'c-gone',
        ifName: 'eth0',
        ip: '10.1.2.50',
        podNamespace: ns,
        podName: 'gone',
        assignedAt,
      },
      {
        containerId: 'c-live',
        ifName: 'eth0',
        ip: '10.1.2.51',
        podNamespace: ns,
        podName: 'live',
        podUid: live.metadata!.uid!,
        assignedAt,
      },
    ];
    const k8s = await startKubernetesIntegration({
      daemon,
      settings: settings(node.name, { enablePodWatch: true, podGcGraceMs: 200 }),
      logger,
      kubeConfig: kc,
      podGcIntervalMs: 25,
    });
    try {
      await until('released', () => daemon.released.length === 1, 15_000);
      assert.deepEqual(daemon.released, [{ containerId: 'c-gone', ifName: 'eth0' }]);
      // The live pod's allocation stays through more passes than the grace period.
      await new Promise((r) => setTimeout(r, 3_000));
      assert.deepEqual(daemon.released, [{ containerId: 'c-gone', ifName: 'eth0' }]);
    } finally {
      await k8s.stop();
    }
  });

  test('a kube-apiserver restart under the watch (an upgrade): nothing released while it is down, the new watch cache answers 410, the watcher relists and releases', async () => {
    const node = await newNode();
    const ns = await kube.namespace('restart');
    const live = podRef(await kube.createPod(ns, 'live', node.name));
    const doomed = podRef(await kube.createPod(ns, 'doomed', node.name));
    const daemon = new ScriptedDaemon();
    const assignedAt = new Date(Date.now() - 3_600_000).toISOString();
    const allocation = (containerId: string, pod: { namespace: string; name: string; uid?: string }) => ({
      containerId,
      ifName: 'eth0',
      ip: `10.1.3.${daemon.allocations.length + 10}`,
      podNamespace: pod.namespace,
      podName: pod.name,
      ...(pod.uid ? { podUid: pod.uid } : {}),
      assignedAt,
    });
    daemon.allocations = [allocation('c-live', live), allocation('c-doomed', doomed)];
    const reflector = createNodePodsReflector(kc, kc.makeApiClient(CoreV1Api), node.name, logger);
    const watcher = new PodWatcher({
      nodeName: node.name,
      allocations: daemon,
      logger,
      reflector,
      policy: { graceMs: 200, settleMs: 50 },
      intervalMs: 25,
    });
    watcher.start();
    try {
      await until('watching', () => reflector.hasSynced && reflector.connectedSince !== null, 30_000);
      // A write this node's watch does not see moves etcd past the watcher's resourceVersion; the
      // restarted server's watch cache starts there, so resuming from the old one is a real 410.
      const unseen = await kube.createPod(ns, 'elsewhere', 'another-node');
      const restarting = kube.cp.restartApiServer();
      await until('the stream ended', () => reflector.connectedSince === null, 30_000);
      daemon.allocations.push(allocation('c-ghost', { namespace: ns, name: 'ghost' }));
      // Up to 1.5 s, for as long as the stream is down (the restarted server may be back sooner,
      // and then releasing the ghost is right): nothing may be released without a live view.
      const downUntil = Date.now() + 1500;
      while (Date.now() < downUntil && reflector.connectedSince === null) {
        assert.equal(daemon.released.length, 0, 'no view while the server is down: nothing released');
        await sleep(25);
      }
      await restarting;
      const staleRv = Number(reflector.lastResourceVersion) < Number(unseen.metadata!.resourceVersion);
      await until(
        'ghost released once the view is live again',
        () => daemon.released.some((k) => k.containerId === 'c-ghost'),
        90_000,
      );
      if (staleRv) {
        assert.equal(reflector.stats.gone, 1, 'the new watch cache refused the old resourceVersion');
        assert.equal(reflector.stats.lists, 2);
      }
      await kube.forceDeletePod(ns, 'doomed');
      await until('doomed released', () => daemon.released.some((k) => k.containerId === 'c-doomed'), 30_000);
      assert.deepEqual(
        daemon.released.map((k) => k.containerId).sort(),
        ['c-doomed', 'c-ghost'],
        'the live pod keeps its IP',
      );
    } finally {
      await watcher.stop();
    }
  });

  test('kubectl cordon / uncordon reaches the daemon: it follows the Node spec.unschedulable', async () => {
    const node = await newNode();
    const seen: boolean[] = [];
    const daemon = Object.assign(new ScriptedDaemon(), {
      setNodeUnschedulable: (u: boolean) => void seen.push(u),
    });
    const k8s = await startKubernetesIntegration({
      daemon,
      settings: settings(node.name),
      logger,
      kubeConfig: kc,
      nodeWatchIntervalMs: 100,
    });
    const cordon = (unschedulable: boolean) =>
      kube.core.patchNode(
        { name: node.name, body: { spec: { unschedulable } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    try {
      await until('the first read', () => seen.length === 1);
      assert.deepEqual(seen, [false]);
      await cordon(true);
      await until('cordoned', () => seen.at(-1) === true);
      await cordon(false);
      await until('uncordoned', () => seen.at(-1) === false);
      assert.deepEqual(seen, [false, true, false], 'one call per change');
    } finally {
      await k8s.stop();
    }
  });

  test('in-cluster config: the ServiceAccount token and CA files, as a pod gets them', async () => {
    const node = await newNode();
    const dir = mkdtempSync(join(tmpdir(), 'vpc-ipam-sa-'));
    try {
      const sa = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount');
      mkdirSync(sa, { recursive: true });
      writeFileSync(join(sa, 'token'), daemonToken);
      writeFileSync(join(sa, 'ca.crt'), readFileSync(kube.cp.pki.ca.cert));
      writeFileSync(join(sa, 'namespace'), 'kube-system');
      const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(kube.cp.apiPort) };
      const incluster = loadKubeConfig({ env, serviceAccountRoot: dir }).makeApiClient(CoreV1Api);
      const got = await incluster.readNode({ name: node.name });
      assert.equal(got.metadata?.uid, node.uid);
      // Authenticated as the chart's daemon ServiceAccount, which may read one Node but not list them.
      await assert.rejects(incluster.listNode(), (e: { code?: number; body?: unknown }) => {
        assert.equal(e.code, 403);
        assert.match(String(e.body), /system:serviceaccount:kube-system:vpc-vpc-ipam-daemon/);
        return true;
      });
      assert.throws(
        () => loadKubeConfig({ env, serviceAccountRoot: '/nonexistent' }),
        /no service account token/,
      );
      assert.throws(
        () => loadKubeConfig({ env: { KUBECONFIG: '/nonexistent/kubeconfig' } }),
        /KUBECONFIG=.*file not found/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
