// The daemon's Kubernetes side through the real client against the fake API server: the
// NodeIPAMStatus it publishes (created, owned by the Node, merge-patched, coalesced), the Events
// on no-IP (aggregated), and custom networking selection from PodNetworkConfig objects.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { AttachmentKey, PoolStatus } from '../../../../src/ipam-daemon/api-types.ts';
import type { KubernetesSettings } from '../../../../src/ipam-daemon/k8s/env.ts';
import {
  resolveCustomNetworking,
  startKubernetesIntegration,
} from '../../../../src/ipam-daemon/k8s/integration.ts';
import { loadKubeConfig } from '../../../../src/ipam-daemon/k8s/kube-client.ts';
import type { GcAllocation } from '../../../../src/ipam-daemon/k8s/pod-gc-policy.ts';
import { FakeKubeApiServer, type KubeObject } from '../../../fakes/kube-apiserver.ts';

const logger = pino({ level: 'silent' });
const NODE = 'ip-10-1-2-3.ec2.internal';

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

class FakeDaemon extends EventEmitter {
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
    return { released: null };
  }
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const settings = (over: Partial<KubernetesSettings> = {}): KubernetesSettings => ({
  nodeName: NODE,
  enablePodWatch: false,
  podGcGraceMs: 60_000,
  statusIntervalMs: 200,
  customNetworking: false,
  networkConfigLabel: 'vpc-ipam.io/network-config',
  networkConfigAnnotation: 'k8s.amazonaws.com/eniConfig',
  ...over,
});

describe('daemon Kubernetes integration against the fake API server', () => {
  const server = new FakeKubeApiServer({ token: 'sa-token' });
  let kc: KubeConfig;
  let nodeUid: string;

  before(async () => {
    await server.start();
    kc = new KubeConfig();
    kc.loadFromOptions(server.kubeConfigOptions());
    const node = server.put('nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: NODE, labels: { 'topology.kubernetes.io/zone': 'us-east-1a' } },
    });
    nodeUid = node.metadata!.uid!;
  });
  after(async () => {
    await server.stop();
  });

  test('publishes NodeIPAMStatus owned by the Node, then merge-patches it, coalescing bursts', async () => {
    const daemon = new FakeDaemon();
    const k8s = await startKubernetesIntegration({ daemon, settings: settings(), logger, kubeConfig: kc });
    try {
      await until('status created', () => server.get('nodeipamstatuses.vpc-ipam.io', NODE) !== undefined);
      const created = server.get('nodeipamstatuses.vpc-ipam.io', NODE)!;
      const owner = (created.metadata as { ownerReferences?: { kind: string; uid: string }[] })
        .ownerReferences?.[0];
      assert.deepEqual({ kind: owner?.kind, uid: owner?.uid }, { kind: 'Node', uid: nodeUid });
      assert.equal((created.status as { maxPods: number }).maxPods, 29);
      // A burst of 50 changes within one interval: one or two writes, ending with the latest.
      const writesBefore = k8s.publisher.writes;
      for (let i = 1; i <= 50; i++) {
        daemon.current = pool(i % 9);
        daemon.emit('pool-changed', daemon.current);
      }
      daemon.current = pool(7, 'subnet-full');
      daemon.emit('pool-changed', daemon.current);
      await until('latest state published', () => {
        const s = server.get('nodeipamstatuses.vpc-ipam.io', NODE)?.status as
          | { assigned?: number }
          | undefined;
        return s?.assigned === 7;
      });
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(
        k8s.publisher.writes - writesBefore <= 2,
        `${k8s.publisher.writes - writesBefore} writes for a burst`,
      );
      const status = server.get('nodeipamstatuses.vpc-ipam.io', NODE)!.status as Record<string, unknown>;
      assert.equal(status.noIpReason, 'subnet-full');
      assert.equal(status.free, 2);
      const patches = server.requests.filter(
        (q) => q.method === 'PATCH' && q.path.includes('nodeipamstatuses'),
      );
      assert.ok(patches.length >= 1);
      assert.ok(patches.every((p) => p.contentType === 'application/merge-patch+json'));
      // The daemon never writes Nodes.
      assert.ok(!server.requests.some((q) => q.path.startsWith('/api/v1/nodes') && q.method !== 'GET'));
    } finally {
      await k8s.stop();
    }
  });

  test('no-IP occurrences become one aggregated Warning Event on the Node', async () => {
    const daemon = new FakeDaemon();
    const k8s = await startKubernetesIntegration({ daemon, settings: settings(), logger, kubeConfig: kc });
    try {
      for (let i = 0; i < 20; i++) {
        daemon.emit('no-ip', {
          reason: 'subnet-full',
          message: 'subnet subnet-1 has no free addresses',
          containerId: `c${i}`,
        });
      }
      await k8s.events.flush();
      const events = server.list('events', 'default');
      assert.equal(events.length, 1, JSON.stringify(events));
      const e = events[0] as KubeObject & {
        reason: string;
        type: string;
        count: number;
        involvedObject: { kind: string; name: string; uid: string };
      };
      assert.equal(e.reason, 'NoIPSubnetFull');
      assert.equal(e.type, 'Warning');
      assert.equal(e.count, 20);
      assert.deepEqual(
        [e.involvedObject.kind, e.involvedObject.name, e.involvedObject.uid],
        ['Node', NODE, nodeUid],
      );
      assert.ok(k8s.events.writes <= 2, `${k8s.events.writes} writes for 20 occurrences`);
      daemon.emit('no-ip', { reason: 'instance-limit', message: 'm5.large holds 3 interfaces' });
      await k8s.events.flush();
      const reasons = server
        .list('events', 'default')
        .map((x) => (x as { reason: string }).reason)
        .sort();
      assert.deepEqual(reasons, ['NoIPInstanceLimit', 'NoIPSubnetFull']);
    } finally {
      await k8s.stop();
      for (const e of server.list('events', 'default')) server.remove('events', e.metadata!.name!, 'default');
    }
  });

  test("drift 'ip-lost' becomes an aggregated PodIPLost Warning naming the pod, the IP, the interface and the fix", async () => {
    const daemon = new FakeDaemon();
    const k8s = await startKubernetesIntegration({ daemon, settings: settings(), logger, kubeConfig: kc });
    type Ev = KubeObject & {
      reason: string;
      type: string;
      count: number;
      message: string;
      involvedObject: { kind: string; name: string; uid: string };
    };
    try {
      const lost = (n: number) => ({
        kind: 'ip-lost',
        interfaceId: 'eni-0abc',
        ip: `10.0.0.${20 + n}`,
        key: `c${n}/eth0`,
        pod: `default/web-${n}`,
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
      let events = server.list('events', 'default') as Ev[];
      assert.equal(events.length, 1, JSON.stringify(events));
      const e = events[0]!;
      assert.deepEqual(
        [e.reason, e.type, e.count, e.involvedObject.kind, e.involvedObject.name, e.involvedObject.uid],
        ['PodIPLost', 'Warning', 1, 'Node', NODE, nodeUid],
      );
      assert.match(e.message, /pod default\/web-1 lost its IP 10\.0\.0\.21/);
      assert.match(e.message, /interface eni-0abc/);
      assert.match(e.message, /delete the pod so it is recreated with a new IP/);
      // A burst (an interface removed with its pods): one Event, counted, naming every pod.
      for (let n = 2; n <= 6; n++) daemon.emit('drift', lost(n));
      await k8s.events.flush();
      events = server.list('events', 'default') as Ev[];
      assert.equal(events.length, 1, 'aggregated into the same Event');
      assert.equal(events[0]!.count, 6);
      assert.match(events[0]!.message, /pod default\/web-6 lost its IP 10\.0\.0\.26/);
      for (let n = 1; n <= 6; n++)
        assert.ok(
          events[0]!.message.includes(`default/web-${n} (10.0.0.${20 + n} on eni-0abc)`),
          `web-${n} named: ${events[0]!.message}`,
        );
      assert.ok(k8s.events.writes <= 3, `${k8s.events.writes} writes for 6 occurrences`);
      const patches = server.requests.filter((q) => q.method === 'PATCH' && q.path.includes('/events/'));
      assert.ok(patches.every((p) => p.contentType === 'application/merge-patch+json'));
    } finally {
      await k8s.stop();
      for (const e of server.list('events', 'default')) server.remove('events', e.metadata!.name!, 'default');
    }
  });

  test('custom networking: the node label wins, else the zone; a missing config is a clear error', async () => {
    const pnc = (name: string, spec: Record<string, unknown>) =>
      server.put('podnetworkconfigs.vpc-ipam.io', {
        apiVersion: 'vpc-ipam.io/v1alpha1',
        kind: 'PodNetworkConfig',
        metadata: { name },
        spec,
      });
    pnc('us-east-1a', { subnetIds: ['subnet-zone-a'], securityGroupIds: ['sg-a'] });
    pnc('special', { subnetIds: ['subnet-special-1', 'subnet-special-2'] });
    const s = settings({ customNetworking: true });
    const byZone = await resolveCustomNetworking({ settings: s, logger, kubeConfig: kc });
    assert.deepEqual(byZone, {
      name: 'us-east-1a',
      subnetIds: ['subnet-zone-a'],
      securityGroupIds: ['sg-a'],
    });
    const node = server.get('nodes', NODE)!;
    server.put('nodes', {
      ...node,
      metadata: {
        ...node.metadata,
        labels: { ...node.metadata!.labels, 'vpc-ipam.io/network-config': 'special' },
      },
    });
    const byLabel = await resolveCustomNetworking({ settings: s, logger, kubeConfig: kc });
    assert.equal(byLabel?.name, 'special');
    assert.deepEqual(byLabel?.subnetIds, ['subnet-special-1', 'subnet-special-2']);
    server.put('nodes', {
      ...node,
      metadata: { ...node.metadata, labels: { 'vpc-ipam.io/network-config': 'missing' } },
    });
    await assert.rejects(
      resolveCustomNetworking({ settings: s, logger, kubeConfig: kc }),
      /network-config=missing names no PodNetworkConfig/,
    );
    assert.equal(await resolveCustomNetworking({ settings: settings(), logger, kubeConfig: kc }), null);
    server.put('nodes', node);
  });

  test('pod watcher wired to the daemon releases a vanished pod through daemon.release', async () => {
    const daemon = new FakeDaemon();
    daemon.allocations = [
      {
        containerId: 'c-gone',
        ifName: 'eth0',
        ip: '10.1.2.50',
        podNamespace: 'default',
        podName: 'gone',
        assignedAt: new Date(Date.now() - 3_600_000).toISOString(),
      },
    ];
    const k8s = await startKubernetesIntegration({
      daemon,
      settings: settings({ enablePodWatch: true, podGcGraceMs: 200 }),
      logger,
      kubeConfig: kc,
      podGcIntervalMs: 25,
    });
    try {
      await until('released', () => daemon.released.length === 1, 8000);
      assert.deepEqual(daemon.released, [{ containerId: 'c-gone', ifName: 'eth0' }]);
    } finally {
      await k8s.stop();
    }
  });

  test('in-cluster config: service account token and CA over HTTPS, as a pod gets them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vpc-ipam-sa-'));
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=kube-apiserver',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ],
        { stdio: 'ignore' },
      );
      const { readFileSync } = await import('node:fs');
      const tls = {
        key: readFileSync(join(dir, 'key.pem'), 'utf8'),
        cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
      };
      const secure = new FakeKubeApiServer({ tls, token: 'in-cluster-token' });
      const url = new URL(await secure.start());
      try {
        const sa = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount');
        mkdirSync(sa, { recursive: true });
        writeFileSync(join(sa, 'token'), 'in-cluster-token');
        writeFileSync(join(sa, 'ca.crt'), tls.cert);
        writeFileSync(join(sa, 'namespace'), 'kube-system');
        secure.put('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
        const incluster = loadKubeConfig({
          env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: url.port },
          serviceAccountRoot: dir,
        });
        const node = await incluster.makeApiClient(CoreV1Api).readNode({ name: NODE });
        assert.equal(node.metadata?.name, NODE);
        assert.equal(secure.requests.at(-1)?.authorization, 'Bearer in-cluster-token');
        assert.throws(
          () =>
            loadKubeConfig({
              env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: url.port },
              serviceAccountRoot: '/nonexistent',
            }),
          /no service account token/,
        );
        assert.throws(
          () => loadKubeConfig({ env: { KUBECONFIG: '/nonexistent/kubeconfig' } }),
          /KUBECONFIG=.*file not found/,
        );
      } finally {
        await secure.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
