// The IMDS fake as a separate process (the way e2e nodes and the demo run it), serving a seeded
// LocalStack instance; the provider discovers the node through it, and ENIs attached later show
// up in IMDS as on EC2.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { createAwsProvider } from '../../../../src/providers/aws/index.ts';
import {
  ec2Endpoint,
  LocalStackCluster,
  region,
  requireLocalStack,
  type SeedResult,
} from '../../../helpers/localstack.ts';

const cli = join(import.meta.dirname, '../../../fakes/imds-aws.ts');
const cluster = new LocalStackCluster('aws-imds-cli');
let seed: SeedResult;
let child: ChildProcess | undefined;
let url = '';

async function startCli(
  args: string[],
): Promise<{ proc: ChildProcess; line: string; stderr: () => string; exit: Promise<number> }> {
  const proc = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const lines = createInterface({ input: proc.stdout! });
  const first = once(lines, 'line').then(([l]) => l as string);
  const exit = once(proc, 'exit').then(() => proc.exitCode ?? -1);
  const line = await Promise.race([first, exit.then(() => '')]);
  return { proc, line, stderr: () => err, exit };
}

const setup = async () => {
  seed = await cluster.seed();
};
const teardown = async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
  await cluster.delete();
};

// Outside the suite, so a missing LocalStack counts as a failed test, not only as cancelled ones.
test('LocalStack is reachable', () => requireLocalStack());

describe('IMDS fake CLI on a seeded instance', () => {
  before(setup);
  after(teardown);

  test('refuses a missing or unknown instance with the reason', { timeout: 60_000 }, async () => {
    const none = await startCli(['--port', '0']);
    assert.equal(await none.exit, 1);
    assert.match(none.stderr(), /--instance-id i-<hex> is required/);
    const unknown = await startCli(['--instance-id', 'i-0123456789abcdef0', '--endpoint', ec2Endpoint()]);
    assert.equal(await unknown.exit, 1);
    assert.match(unknown.stderr(), /i-0123456789abcdef0/);
  });

  test('the provider discovers the m5.4xlarge through it, and sees a later ENI in IMDS', {
    timeout: 60_000,
  }, async () => {
    const big = seed.instances.find((i) => i.type === 'm5.4xlarge')!;
    const started = await startCli(['--port', '0', '--instance-id', big.id, '--endpoint', ec2Endpoint()]);
    child = started.proc;
    assert.ok(started.line, `CLI exited: ${started.stderr()}`);
    const info = JSON.parse(started.line) as { url: string; instanceId: string };
    url = info.url;
    assert.equal(info.instanceId, big.id);

    const provider = createAwsProvider({
      region: region(),
      ec2Endpoint: ec2Endpoint(),
      imdsEndpoint: url,
      clusterName: cluster.name,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      pickAddresses: true,
    });
    try {
      const node = await provider.describeNode();
      assert.equal(node.instanceId, big.id);
      assert.equal(node.instanceType, 'm5.4xlarge');
      assert.equal(node.maxInterfaces, 8);
      assert.equal(node.ipsPerInterface, 30);
      assert.equal(node.primaryMac, big.mac);
      assert.equal(node.primaryIp, big.privateIp);

      const eni = await provider.createInterface({
        subnetId: big.subnetId,
        securityGroupIds: [seed.sgId],
        secondaryIpCount: 2,
      });
      const token = await (
        await fetch(`${url}/latest/api/token`, {
          method: 'PUT',
          headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' },
        })
      ).text();
      const get = async (p: string) =>
        (
          await fetch(`${url}/latest/meta-data/${p}`, { headers: { 'x-aws-ec2-metadata-token': token } })
        ).text();
      // The CLI re-reads EC2 at most once a second.
      let macs: string[] = [];
      for (let i = 0; i < 30 && !macs.includes(`${eni.mac}/`); i++) {
        await new Promise((r) => setTimeout(r, 200));
        macs = (await get('network/interfaces/macs/')).split('\n');
      }
      assert.ok(macs.includes(`${eni.mac}/`), `IMDS macs: ${macs.join(' ')}`);
      assert.equal(await get(`network/interfaces/macs/${eni.mac}/device-number`), '1');
      assert.equal(await get(`network/interfaces/macs/${eni.mac}/interface-id`), eni.id);
      const ips = (await get(`network/interfaces/macs/${eni.mac}/local-ipv4s`)).split('\n');
      assert.deepEqual(ips, [eni.primaryIp, ...eni.secondaryIps]);
      await provider.deleteInterface(eni.id);
    } finally {
      await provider.close();
    }
  });
});
