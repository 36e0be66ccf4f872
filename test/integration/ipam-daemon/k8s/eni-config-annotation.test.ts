// ENI_CONFIG_ANNOTATION_DEF, ENI_CONFIG_LABEL_DEF and AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG (issue 13):
// the AWS VPC CNI's names select the PodNetworkConfig; an annotation wins over the label. Through
// the real @kubernetes/client-node against the fake API server.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { loadKubernetesSettings } from '../../../../src/ipam-daemon/k8s/env.ts';
import { resolveCustomNetworking } from '../../../../src/ipam-daemon/k8s/integration.ts';
import { selectNetworkConfig } from '../../../../src/ipam-daemon/k8s/network-config.ts';
import { FakeKubeApiServer } from '../../../fakes/kube-apiserver.ts';

const NODE = 'ip-10-9-0-1.ec2.internal';
const base = { nodeName: NODE, enablePodWatch: false };

describe('custom networking under the AWS VPC CNI names', () => {
  const server = new FakeKubeApiServer({ token: 't' });
  let kc: KubeConfig;

  before(async () => {
    await server.start();
    kc = new KubeConfig();
    kc.loadFromOptions(server.kubeConfigOptions());
    for (const [name, subnet] of [
      ['us-east-1a', 'subnet-zone'],
      ['by-label', 'subnet-label'],
      ['by-annotation', 'subnet-annotation'],
    ] as const) {
      server.put('podnetworkconfigs.vpc-ipam.io', {
        apiVersion: 'vpc-ipam.io/v1alpha1',
        kind: 'PodNetworkConfig',
        metadata: { name },
        spec: { subnetIds: [subnet] },
      });
    }
  });
  after(() => server.stop());

  const node = (labels: Record<string, string>, annotations: Record<string, string> = {}) =>
    server.put('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels, annotations } });
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
    node({ 'topology.kubernetes.io/zone': 'us-east-1a' });
    assert.equal((await resolve(env))?.name, 'us-east-1a');
    node({ 'topology.kubernetes.io/zone': 'us-east-1a', 'k8s.amazonaws.com/eniConfig': 'by-label' });
    assert.equal((await resolve(env))?.name, 'by-label');
    node(
      { 'topology.kubernetes.io/zone': 'us-east-1a', 'k8s.amazonaws.com/eniConfig': 'by-label' },
      { 'k8s.amazonaws.com/eniConfig': 'by-annotation' },
    );
    const picked = await resolve(env);
    assert.deepEqual(picked?.subnetIds, ['subnet-annotation']);
    node({}, { 'example.com/pnc': 'by-label' });
    assert.equal((await resolve({ ...env, ENI_CONFIG_ANNOTATION_DEF: 'example.com/pnc' }))?.name, 'by-label');
    node({}, { 'k8s.amazonaws.com/eniConfig': 'gone' });
    await assert.rejects(
      resolve(env),
      /node annotation k8s.amazonaws.com\/eniConfig=gone names no PodNetworkConfig/,
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
