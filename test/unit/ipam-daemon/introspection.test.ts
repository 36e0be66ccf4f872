// The AWS-shaped introspection endpoint (issue 13): address forms, the JSON shapes the AWS plugin
// serves, read-only, and a root-only unix socket. The live daemon is checked against LocalStack in
// test/integration/ipam-daemon/localstack-subnet-discovery.test.ts.
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { AllocationRecord, PoolStatus } from '../../../src/ipam-daemon/api-types.ts';
import { loadConfig } from '../../../src/ipam-daemon/config.ts';
import {
  answer,
  type IntrospectionSource,
  ipamdEnvView,
  networkEnvView,
  parseIntrospectionAddress,
  startIntrospectionServer,
} from '../../../src/ipam-daemon/introspection.ts';

const status: PoolStatus = {
  instanceId: 'i-1',
  instanceType: 'm5.large',
  maxPods: 29,
  total: 3,
  assigned: 1,
  cooling: 0,
  free: 2,
  plan: '',
  noIpReason: null,
  interfaces: [
    {
      interfaceId: 'eni-a',
      mac: '02:00:00:00:00:01',
      deviceIndex: 0,
      subnetId: 'subnet-a',
      total: 1,
      assigned: 1,
      cooling: 0,
      free: 0,
      ips: [{ ip: '10.0.0.5', state: 'assigned' }],
    },
    {
      interfaceId: 'eni-b',
      mac: '02:00:00:00:00:02',
      deviceIndex: 1,
      subnetId: 'subnet-b',
      total: 2,
      assigned: 0,
      cooling: 0,
      free: 2,
      ips: [
        { ip: '10.0.1.5', state: 'free' },
        { ip: '10.0.1.6', state: 'free' },
      ],
    },
  ],
};
const alloc = {
  containerId: 'secret-container',
  ifName: 'eth0',
  ip: '10.0.0.5',
  podNamespace: 'default',
  podName: 'web-1',
  assignedAt: '2026-12-01T10:00:00.000Z',
} as AllocationRecord;
const source = (networkConfig: string | null = null): IntrospectionSource => ({
  status: () => status,
  list: () => [alloc],
  ipamdEnv: { WARM_ENI_TARGET: 1 },
  networkEnv: networkEnvView(loadConfig({ AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: '192.0.2.0/24' }), 0x80),
  networkConfig,
});

describe('introspection endpoint', () => {
  test("address forms: the AWS plugin's default, host:port, [v6]:port, unix:", () => {
    assert.deepEqual(loadConfig({}).introspection, { kind: 'tcp', host: '127.0.0.1', port: 61679 });
    assert.equal(loadConfig({ DISABLE_INTROSPECTION: 'true' }).introspection, null);
    assert.deepEqual(parseIntrospectionAddress('[::1]:9'), { kind: 'tcp', host: '::1', port: 9 });
    assert.deepEqual(parseIntrospectionAddress('unix:/run/x.sock'), { kind: 'unix', path: '/run/x.sock' });
    for (const bad of ['61679', 'host:0', 'unix:relative', 'unix:/a/../b', 'a:b:c'])
      assert.throws(() => parseIntrospectionAddress(bad), bad);
    assert.throws(() => loadConfig({ INTROSPECTION_BIND_ADDRESS: 'nope' }), /INTROSPECTION_BIND_ADDRESS/);
  });

  test('/v1/enis has the AWS ENIInfos shape, pods named, container ids blanked', () => {
    const [code, body] = answer('/v1/enis', source());
    assert.equal(code, 200);
    // biome-ignore lint/suspicious/noExplicitAny: the JSON is walked structurally
    type Json = any;
    const card = (
      body as Record<string, { TotalIPs: number; AssignedIPs: number; ENIs: Record<string, Json> }>
    )['0']!;
    assert.deepEqual([card.TotalIPs, card.AssignedIPs], [3, 1]);
    assert.equal(card.ENIs['eni-a'].IsPrimary, true);
    assert.equal(card.ENIs['eni-a'].RouteTableID, 254);
    assert.equal(card.ENIs['eni-b'].RouteTableID, 2);
    assert.equal(card.ENIs['eni-b'].SubnetID, 'subnet-b');
    const cidr = card.ENIs['eni-a'].AvailableIPv4Cidrs['10.0.0.5/32'];
    assert.deepEqual(cidr.Cidr, { IP: '10.0.0.5', Mask: '/////w==' });
    const addr = cidr.IPAddresses['10.0.0.5'];
    assert.deepEqual(addr.IPAMMetadata, { k8sPodNamespace: 'default', k8sPodName: 'web-1' });
    assert.equal(addr.IPAMKey.containerID, '');
    assert.ok(!JSON.stringify(body).includes('secret-container'));
    assert.equal(
      card.ENIs['eni-b'].AvailableIPv4Cidrs['10.0.1.6/32'].IPAddresses['10.0.1.6'].IPAMKey.networkName,
      '',
    );
  });

  test('settings pages and eni-configs; unknown paths 404', () => {
    assert.deepEqual(answer('/', source()), [
      200,
      {
        AvailableCommands: [
          '/v1/enis',
          '/v1/eni-configs',
          '/v1/networkutils-env-settings',
          '/v1/ipamd-env-settings',
        ],
      },
    ]);
    const net = answer('/v1/networkutils-env-settings', source())[1] as Record<string, unknown>;
    assert.deepEqual(net.AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS, ['192.0.2.0/24']);
    assert.equal(net.AWS_VPC_K8S_CNI_VETHPREFIX, 'vpc');
    assert.equal(net.AWS_VPC_K8S_CNI_CONNMARK, 128);
    assert.deepEqual(ipamdEnvView(loadConfig({ WARM_IP_TARGET: '5' }), false), {
      WARM_IP_TARGET: 5,
      WARM_ENI_TARGET: 1,
      AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG: false,
      AWS_MANAGE_ENIS_NON_SCHEDULABLE: false,
      ENABLE_SUBNET_DISCOVERY: true,
    });
    assert.equal(answer('/v1/eni-configs', source())[0], 404);
    assert.deepEqual(answer('/v1/eni-configs', source('us-east-1a')), [200, 'us-east-1a']);
    assert.equal(answer('/v1/nope', source())[0], 404);
  });

  test('served read-only on a root-only unix socket', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'introspect-'));
    const path = join(dir, 'i.sock');
    const server = await startIntrospectionServer(source(), { kind: 'unix', path });
    try {
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      const get = (method: string, p: string) =>
        new Promise<{ status: number; body: string }>((done, fail) => {
          const req = request({ socketPath: path, path: p, method }, (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () => done({ status: res.statusCode ?? 0, body }));
          });
          req.on('error', fail);
          req.end();
        });
      const r = await get('GET', '/v1/enis');
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body)['0'].AssignedIPs, 1);
      assert.equal((await get('DELETE', '/v1/enis')).status, 405);
    } finally {
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
