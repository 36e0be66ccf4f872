// ANNOTATE_POD_IP (issue 13): with it on, the daemon's 'allocated' event becomes a merge patch of
// the pod's vpc.amazonaws.com/pod-ips annotation, through the real @kubernetes/client-node against
// the fake API server; off (the default), nothing is written. The chart's RBAC follows the knob
// (test/helm/chart.test.ts).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { PoolStatus } from '../../../../src/ipam-daemon/api-types.ts';
import { loadKubernetesSettings } from '../../../../src/ipam-daemon/k8s/env.ts';
import { startKubernetesIntegration } from '../../../../src/ipam-daemon/k8s/integration.ts';
import { POD_IPS_ANNOTATION } from '../../../../src/ipam-daemon/k8s/pod-annotator.ts';
import { FakeKubeApiServer } from '../../../fakes/kube-apiserver.ts';

const NODE = 'ip-10-9-0-2.ec2.internal';

class QuietDaemon extends EventEmitter {
  status(): PoolStatus {
    return {
      instanceId: 'i-1',
      instanceType: 'm5.large',
      maxPods: 29,
      total: 0,
      assigned: 0,
      cooling: 0,
      free: 0,
      plan: '',
      noIpReason: null,
      interfaces: [],
    };
  }
  list() {
    return [];
  }
  async releaseIfUnwired(): Promise<{ released: string | null }> {
    return { released: null };
  }
}

describe('ANNOTATE_POD_IP against the fake API server', () => {
  const server = new FakeKubeApiServer({ token: 't' });
  let kc: KubeConfig;

  before(async () => {
    await server.start();
    kc = new KubeConfig();
    kc.loadFromOptions(server.kubeConfigOptions());
    server.put('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
    for (const name of ['web-1', 'web-2']) {
      server.put('pods', {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: 'shop', annotations: { keep: 'me' } },
        spec: { nodeName: NODE },
      });
    }
  });
  after(() => server.stop());

  const start = (env: Record<string, string>) => {
    const daemon = new QuietDaemon();
    const settings = loadKubernetesSettings(env, { nodeName: NODE, enablePodWatch: false });
    return startKubernetesIntegration({
      daemon,
      settings,
      logger: pino({ level: 'silent' }),
      kubeConfig: kc,
    }).then((k8s) => ({ daemon, k8s }));
  };
  const annotations = (name: string) => server.get('pods', name, 'shop')?.metadata?.annotations ?? {};

  test('off by default: no annotator, nothing written', async () => {
    const { daemon, k8s } = await start({});
    assert.equal(k8s.annotator, null);
    daemon.emit('allocated', { ip: '10.9.1.5', podNamespace: 'shop', podName: 'web-1' });
    await k8s.stop();
    assert.deepEqual(annotations('web-1'), { keep: 'me' });
  });

  test("on: the pod gets its IP under the AWS plugin's annotation, other annotations kept", async () => {
    const { daemon, k8s } = await start({ ANNOTATE_POD_IP: 'true' });
    daemon.emit('allocated', { ip: '10.9.1.6', podNamespace: 'shop', podName: 'web-2' });
    // No pod name (a runtime call outside Kubernetes) and a pod that does not exist: no crash.
    daemon.emit('allocated', { ip: '10.9.1.7' });
    daemon.emit('allocated', { ip: '10.9.1.8', podNamespace: 'shop', podName: 'gone' });
    await k8s.annotator!.flush();
    assert.deepEqual(annotations('web-2'), { keep: 'me', [POD_IPS_ANNOTATION]: '10.9.1.6' });
    await k8s.stop();
  });
});
