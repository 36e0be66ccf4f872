// ENI_CONFIG_ANNOTATION_DEF, ENI_CONFIG_LABEL_DEF and AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG (issue 13):
// the AWS VPC CNI's names select the PodNetworkConfig; an annotation wins over the label. Against
// the real kube-apiserver with the chart's CRDs (their schema validates every PodNetworkConfig),
// read as the chart's daemon ServiceAccount under the chart's RBAC (test/helpers/kube-apiserver.ts).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { loadKubernetesSettings } from '../../../../src/ipam-daemon/k8s/env.ts';
import { resolveCustomNetworking } from '../../../../src/ipam-daemon/k8s/integration.ts';
import { NETWORK_CONFIG_API, selectNetworkConfig } from '../../../../src/ipam-daemon/k8s/network-config.ts';
import { type KubeApiServer, startKubeApiServer } from '../../../helpers/kube-apiserver.ts';

const NODE = 'ip-10-9-0-1.ec2.internal';
const base = { nodeName: NODE, enablePodWatch: false };

describe('custom networking under the AWS VPC CNI names', { timeout: 300_000 }, () => {
  let kube: KubeApiServer;
  /** The daemon's credentials: the chart's daemon ServiceAccount. */
  let kc: KubeConfig;

  before(async () => {
    kube = await startKubeApiServer('eni-config');
    kc = (await kube.installChart('vpc')).daemonKubeConfig;
    await kube.createNode(NODE);
    for (const [name, subnet] of [
      ['us-east-1a', 'subnet-zone'],
      ['by-label', 'subnet-label'],
      ['by-annotation', 'subnet-annotation'],
    ] as const) {
      await kube.custom.createClusterCustomObject({
        ...NETWORK_CONFIG_API,
        body: {
          apiVersion: 'vpc-ipam.io/v1alpha1',
          kind: 'PodNetworkConfig',
          metadata: { name },
          spec: { subnetIds: [subnet] },
        },
      });
    }
  });
  after(async () => {
    await kube?.stop();
  });

  /** The Node's labels and annotations become exactly these (as a user's kubectl label/annotate). */
  const node = (labels: Record<string, string>, annotations: Record<string, string> = {}) =>
    kube.setNodeMeta(NODE, { labels, annotations });
  const resolve = (env: Record<string, string>) =>
    resolveCustomNetworking({
      settings: loadKubernetesSettings(env, base),
      logger: pino({ level: 'silent' }),
      kubeConfig: kc,
    });

  test('the AWS names are read: custom networking on, label key, annotation key (default k8s.amazonaws.com/eniConfig)', () => {
    const s = loadKubernetesSettings(
      { AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: 'true', ENI_CONFIG_LABEL_DEF: 'example.com/eni' },
      base,
    );
    assert.equal(s.customNetworking, true);
    assert.equal(s.networkConfigLabel, 'example.com/eni');
    assert.equal(s.networkConfigAnnotation, 'k8s.amazonaws.com/eniConfig');
    // vpc-ipam's names win when both are set; a bad value is named under the variable that was set.
    assert.equal(
      loadKubernetesSettings(
        { VPC_IPAM_CUSTOM_NETWORKING: 'false', AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: 'true' },
        base,
      ).customNetworking,
      false,
    );
    assert.throws(
      () => loadKubernetesSettings({ ENI_CONFIG_ANNOTATION_DEF: 'not a key!' }, base),
      /ENI_CONFIG_ANNOTATION_DEF="not a key!" is invalid/,
    );
    assert.throws(
      () => loadKubernetesSettings({ ENI_CONFIG_LABEL_DEF: '%' }, base),
      /ENI_CONFIG_LABEL_DEF="%"/,
    );
  });

  test('annotation wins over label, label over zone; a dangling annotation is a clear error', async () => {
    const env = {
      AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: 'true',
      ENI_CONFIG_LABEL_DEF: 'k8s.amazonaws.com/eniConfig',
    };
    await node({ 'topology.kubernetes.io/zone': 'us-east-1a' });
    assert.equal((await resolve(env))?.name, 'us-east-1a');
    await node({ 'topology.kubernetes.io/zone': 'us-east-1a', 'k8s.amazonaws.com/eniConfig': 'by-label' });
    assert.equal((await resolve(env))?.name, 'by-label');
    await node(
      { 'topology.kubernetes.io/zone': 'us-east-1a', 'k8s.amazonaws.com/eniConfig': 'by-label' },
      { 'k8s.amazonaws.com/eniConfig': 'by-annotation' },
    );
    const picked = await resolve(env);
    assert.deepEqual(picked?.subnetIds, ['subnet-annotation']);
    await node({}, { 'example.com/pnc': 'by-label' });
    assert.equal((await resolve({ ...env, ENI_CONFIG_ANNOTATION_DEF: 'example.com/pnc' }))?.name, 'by-label');
    await node({}, { 'k8s.amazonaws.com/eniConfig': 'gone' });
    await assert.rejects(
      resolve(env),
      /node annotation k8s.amazonaws.com\/eniConfig=gone names no PodNetworkConfig/,
    );
  });

  test("the chart's CRD schema refuses an unusable PodNetworkConfig, and the daemon may only read them", async () => {
    const create = (api: CustomObjectsApi, name: string, spec: unknown) =>
      api.createClusterCustomObject({
        ...NETWORK_CONFIG_API,
        body: { apiVersion: 'vpc-ipam.io/v1alpha1', kind: 'PodNetworkConfig', metadata: { name }, spec },
      });
    const code = (e: { code?: number; body?: unknown }) => `${e.code} ${String(e.body)}`;
    for (const [name, spec, why] of [
      [
        'no-subnets',
        { subnetIds: [] },
        /subnetIds.*should have at least 1 items|subnetIds.*must have at least 1 items/,
      ],
      ['no-spec-subnets', { securityGroupIds: ['sg-1'] }, /subnetIds: Required value/],
      ['empty-id', { subnetIds: [''] }, /subnetIds\[0\].*at least 1 chars/],
    ] as const) {
      await assert.rejects(create(kube.custom, name, spec), (e: { code?: number; body?: unknown }) => {
        assert.equal(e.code, 422, code(e));
        assert.match(String(e.body), why);
        return true;
      });
    }
    await assert.rejects(
      create(kc.makeApiClient(CustomObjectsApi), 'from-the-daemon', { subnetIds: ['subnet-x'] }),
      (e: { code?: number }) => e.code === 403,
    );
  });

  test('selection without an annotation key is unchanged (label, then zone)', () => {
    const configs = [{ name: 'z', subnetIds: ['s'], securityGroupIds: [], availabilityZone: null }];
    const s = selectNetworkConfig({
      nodeLabels: {},
      labelKey: 'l',
      nodeAnnotations: { x: 'y' },
      zone: 'z',
      configs,
    });
    assert.equal(s.config?.name, 'z');
  });
});
