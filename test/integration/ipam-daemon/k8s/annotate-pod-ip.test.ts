// ANNOTATE_POD_IP (issue 13): with it on, the daemon's 'allocated' event becomes a merge patch of
// the pod's vpc.amazonaws.com/pod-ips annotation; off (the default), nothing is written. Against
// the real kube-apiserver (test/helpers/kube-apiserver.ts), as the chart's daemon ServiceAccount
// under the chart's own RBAC: `pods/patch` is granted only when the knob is on, so the knob on with
// a chart rendered without it is a real 403 (logged, nothing written, no crash).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { CoreV1Api, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { PoolStatus } from '../../../../src/ipam-daemon/api-types.ts';
import { loadKubernetesSettings } from '../../../../src/ipam-daemon/k8s/env.ts';
import { startKubernetesIntegration } from '../../../../src/ipam-daemon/k8s/integration.ts';
import { POD_IPS_ANNOTATION } from '../../../../src/ipam-daemon/k8s/pod-annotator.ts';
import { type KubeApiServer, startKubeApiServer } from '../../../helpers/kube-apiserver.ts';

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

describe('ANNOTATE_POD_IP against the real kube-apiserver, under the chart RBAC', {
  timeout: 300_000,
}, () => {
  let kube: KubeApiServer;
  /** The daemon's credentials from a chart rendered with the knob off (the default) and on. */
  let chartOff: KubeConfig;
  let chartOn: KubeConfig;
  let ns: string;

  before(async () => {
    kube = await startKubeApiServer('annotate-pod-ip');
    chartOff = (await kube.installChart('off')).daemonKubeConfig;
    chartOn = (await kube.installChart('on', ['--set-string', 'daemon.env.ANNOTATE_POD_IP=true']))
      .daemonKubeConfig;
    await kube.createNode(NODE);
    ns = await kube.namespace('shop');
    for (const name of ['web-1', 'web-2', 'web-3']) await kube.createPod(ns, name, NODE, { keep: 'me' });
  });
  after(async () => {
    await kube?.stop();
  });

  const start = (env: Record<string, string>, kubeConfig: KubeConfig, logger = pino({ level: 'silent' })) => {
    const daemon = new QuietDaemon();
    const settings = loadKubernetesSettings(env, { nodeName: NODE, enablePodWatch: false });
    return startKubernetesIntegration({ daemon, settings, logger, kubeConfig }).then((k8s) => ({
      daemon,
      k8s,
    }));
  };
  const annotations = async (name: string) =>
    (await kube.core.readNamespacedPod({ name, namespace: ns })).metadata?.annotations ?? {};

  test('off by default: no annotator, nothing written, and the chart grants no pods/patch', async () => {
    const { daemon, k8s } = await start({}, chartOff);
    assert.equal(k8s.annotator, null);
    daemon.emit('allocated', { ip: '10.9.1.5', podNamespace: ns, podName: 'web-1' });
    await k8s.stop();
    assert.deepEqual(await annotations('web-1'), { keep: 'me' });
    await assert.rejects(
      chartOff
        .makeApiClient(CoreV1Api)
        .patchNamespacedPod(
          { name: 'web-1', namespace: ns, body: { metadata: { annotations: { x: 'y' } } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
      (e: { code?: number }) => e.code === 403,
    );
  });

  test("on: the pod gets its IP under the AWS plugin's annotation, other annotations kept", async () => {
    const { daemon, k8s } = await start({ ANNOTATE_POD_IP: 'true' }, chartOn);
    daemon.emit('allocated', { ip: '10.9.1.6', podNamespace: ns, podName: 'web-2' });
    // No pod name (a runtime call outside Kubernetes) and a pod that does not exist: no crash.
    daemon.emit('allocated', { ip: '10.9.1.7' });
    daemon.emit('allocated', { ip: '10.9.1.8', podNamespace: ns, podName: 'gone' });
    await k8s.annotator!.flush();
    assert.deepEqual(await annotations('web-2'), { keep: 'me', [POD_IPS_ANNOTATION]: '10.9.1.6' });
    await k8s.stop();
  });

  test('on, but the chart was rendered without it: the real 403 is logged, nothing written, no crash', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
    const { daemon, k8s } = await start({ ANNOTATE_POD_IP: 'true' }, chartOff, logger);
    daemon.emit('allocated', { ip: '10.9.1.9', podNamespace: ns, podName: 'web-3' });
    await k8s.annotator!.flush();
    await k8s.stop();
    assert.deepEqual(await annotations('web-3'), { keep: 'me' });
    const warned = lines.map((l) => JSON.parse(l) as { msg: string; err?: string; pod?: string });
    const refused = warned.find((l) => l.msg === 'could not annotate the pod with its IP');
    assert.equal(refused?.pod, `${ns}/web-3`);
    assert.match(refused?.err ?? '', /403|forbidden/i);
  });
});
