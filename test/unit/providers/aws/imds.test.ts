// readImdsIdentity (the real @aws-sdk/ec2-metadata-service client) against the IMDSv2 fake, and
// the fake's protocol rules (tokens, TTL, 401s) checked over plain HTTP.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readImdsIdentity, readImdsInterfaces } from '../../../../src/providers/aws/imds.ts';
import { OtherProviderError } from '../../../../src/providers/errors.ts';
import { type ImdsFake, type ImdsInstanceData, startImdsFake } from '../../../fakes/imds-aws.ts';

const instance: ImdsInstanceData = {
  instanceId: 'i-0123456789abcdef0',
  instanceType: 'm5.large',
  availabilityZone: 'us-east-1a',
  region: 'us-east-1',
  interfaces: [
    {
      mac: '02:00:00:aa:bb:02',
      deviceNumber: 1,
      interfaceId: 'eni-00000000000000002',
      subnetId: 'subnet-0000000000000000b',
      subnetCidr: '10.70.16.0/20',
      vpcId: 'vpc-00000000000000001',
      vpcCidrs: ['10.70.0.0/16', '100.70.0.0/16'],
      localIpv4s: ['10.70.16.9'],
      securityGroupIds: ['sg-00000000000000001'],
    },
    {
      mac: '02:00:00:aa:bb:01',
      deviceNumber: 0,
      interfaceId: 'eni-00000000000000001',
      subnetId: 'subnet-0000000000000000a',
      subnetCidr: '10.70.0.0/20',
      vpcId: 'vpc-00000000000000001',
      vpcCidrs: ['10.70.0.0/16', '100.70.0.0/16'],
      localIpv4s: ['10.70.0.4', '10.70.0.17'],
      securityGroupIds: ['sg-00000000000000001', 'sg-00000000000000002'],
    },
  ],
};

let fake: ImdsFake;
let clock = 1_000_000;
before(async () => {
  fake = await startImdsFake({ instance, now: () => clock });
});
after(async () => {
  await fake.close();
});

async function token(ttl: string | undefined, headers: Record<string, string> = {}) {
  return fetch(`${fake.url}/latest/api/token`, {
    method: 'PUT',
    headers: { ...(ttl === undefined ? {} : { 'x-aws-ec2-metadata-token-ttl-seconds': ttl }), ...headers },
  });
}

describe('IMDSv2 fake protocol', () => {
  test('GET without a token is 401; with a token it answers', async () => {
    assert.equal((await fetch(`${fake.url}/latest/meta-data/instance-id`)).status, 401);
    const t = await token('60');
    assert.equal(t.status, 200);
    assert.equal(t.headers.get('x-aws-ec2-metadata-token-ttl-seconds'), '60');
    const res = await fetch(`${fake.url}/latest/meta-data/instance-id`, {
      headers: { 'x-aws-ec2-metadata-token': await t.text() },
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), instance.instanceId);
  });
  test('token TTL must be 1..21600; proxied token requests are refused', async () => {
    for (const ttl of [undefined, '0', '21601', 'abc', '-5'])
      assert.equal((await token(ttl)).status, 400, String(ttl));
    assert.equal((await token('21600')).status, 200);
    assert.equal((await token('60', { 'x-forwarded-for': '1.2.3.4' })).status, 403);
    assert.equal((await fetch(`${fake.url}/latest/api/token`)).status, 405);
  });
  test('tokens expire', async () => {
    const t = await (await token('2')).text();
    const get = () =>
      fetch(`${fake.url}/latest/meta-data/mac`, { headers: { 'x-aws-ec2-metadata-token': t } });
    assert.equal((await get()).status, 200);
    clock += 2001;
    assert.equal((await get()).status, 401);
    assert.equal(
      (await fetch(`${fake.url}/latest/meta-data/mac`, { headers: { 'x-aws-ec2-metadata-token': 'forged' } }))
        .status,
      401,
    );
  });
  test('directories list their entries; unknown paths are 404', async () => {
    const t = await (await token('60')).text();
    const get = (p: string) => fetch(`${fake.url}${p}`, { headers: { 'x-aws-ec2-metadata-token': t } });
    const macs = await (await get('/latest/meta-data/network/interfaces/macs/')).text();
    assert.deepEqual(macs.split('\n').sort(), ['02:00:00:aa:bb:01/', '02:00:00:aa:bb:02/']);
    const top = (await (await get('/latest/meta-data/')).text()).split('\n');
    assert.ok(top.includes('network/') && top.includes('instance-id'));
    assert.equal(
      await (await get('/latest/meta-data/network/interfaces/macs/02:00:00:aa:bb:02/device-number')).text(),
      '1',
    );
    assert.equal((await get('/latest/meta-data/nope')).status, 404);
    const doc = JSON.parse(await (await get('/latest/dynamic/instance-identity/document')).text());
    assert.equal(doc.region, 'us-east-1');
  });
});

describe('readImdsInterfaces', () => {
  test('every interface by MAC: id, device number, local-ipv4s (primary first), by device index', async () => {
    const before = fake.stats.requests;
    const ifs = await readImdsInterfaces({ endpoint: fake.url });
    assert.deepEqual(ifs, [
      {
        interfaceId: 'eni-00000000000000001',
        mac: '02:00:00:aa:bb:01',
        deviceIndex: 0,
        ips: ['10.70.0.4', '10.70.0.17'],
      },
      { interfaceId: 'eni-00000000000000002', mac: '02:00:00:aa:bb:02', deviceIndex: 1, ips: ['10.70.16.9'] },
    ]);
    assert.ok(fake.stats.requests > before);
  });

  test('an unreachable IMDS is a clear OtherProviderError', async () => {
    await assert.rejects(
      readImdsInterfaces({ endpoint: 'http://127.0.0.1:9', retries: 0, timeoutMs: 500 }),
      (e) => e instanceof OtherProviderError && /network\/interfaces\/macs/.test(e.message),
    );
  });
});

describe('readImdsIdentity', () => {
  test('reads the node identity through the SDK client with the token flow', async () => {
    const issued = fake.stats.tokensIssued;
    const refused = fake.stats.unauthorized;
    const id = await readImdsIdentity({ endpoint: fake.url });
    assert.deepEqual(id, {
      instanceId: 'i-0123456789abcdef0',
      instanceType: 'm5.large',
      availabilityZone: 'us-east-1a',
      region: 'us-east-1',
      primaryMac: '02:00:00:aa:bb:01',
      primaryInterfaceId: 'eni-00000000000000001',
      primaryIp: '10.70.0.4',
      subnetId: 'subnet-0000000000000000a',
      subnetCidr: '10.70.0.0/20',
      vpcId: 'vpc-00000000000000001',
      vpcCidrs: ['10.70.0.0/16', '100.70.0.0/16'],
      securityGroupIds: ['sg-00000000000000001', 'sg-00000000000000002'],
    });
    assert.equal(fake.stats.tokensIssued - issued, 1, 'one IMDSv2 token for the 12 reads');
    assert.equal(fake.stats.unauthorized - refused, 0, 'every GET carried it');
  });
  test('an unreachable IMDS is a clear OtherProviderError', async () => {
    const closed = await startImdsFake({ instance });
    const url = closed.url;
    await closed.close();
    await assert.rejects(readImdsIdentity({ endpoint: url, retries: 0, timeoutMs: 500 }), (e) => {
      assert.ok(e instanceof OtherProviderError);
      assert.match(e.message, new RegExp(`IMDS ${url.replace(/[.]/g, '\\.')} GET`));
      return true;
    });
  });
});
