// A fresh daemon-like process reaches the HTTPS ARM fake only because NODE_EXTRA_CA_CERTS names
// the test CA, and authenticates with the production ManagedIdentityCredential against the IMDS
// fake's token endpoint (AZURE_POD_IDENTITY_AUTHORITY_HOST), built from env by the daemon's own
// config + provider factory.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type AzureTestbed, startAzureTestbed } from '../../../fakes/arm-testbed.ts';

const run = promisify(execFile);
const probe = fileURLToPath(new URL('../../../fakes/arm-describe-node.ts', import.meta.url));

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR']) if (process.env[k]) env[k] = process.env[k]!;
  env.LOG_LEVEL = 'silent';
  return env;
}

describe('Azure provider in a child process', () => {
  let tb: AzureTestbed;
  before(async () => {
    tb = await startAzureTestbed();
  });
  after(async () => {
    await tb?.close();
  });

  test('NODE_EXTRA_CA_CERTS + managed identity: describeNode works', async () => {
    const { stdout } = await run(process.execPath, [probe], {
      env: { ...baseEnv(), ...tb.childEnv() },
      timeout: 30_000,
    });
    const { node, interfaces } = JSON.parse(stdout) as {
      node: { instanceId: string; vpcId: string; maxInterfaces: number };
      interfaces: { id: string }[];
    };
    assert.equal(node.instanceId, tb.vm.vmId);
    assert.equal(node.vpcId, tb.vnetId);
    assert.deepEqual(
      interfaces.map((i) => i.id),
      tb.vm.nicIds,
    );
    assert.ok(
      tb.imds.requests.some(
        (r) => /^\/metadata\/identity\/oauth2\/token\/?$/.test(r.path) && r.status === 200,
      ),
      `the token came from the IMDS managed-identity endpoint: ${JSON.stringify(tb.imds.requests)}`,
    );
  });

  test('without NODE_EXTRA_CA_CERTS the self-signed ARM endpoint is refused', async () => {
    const env = { ...baseEnv(), ...tb.childEnv() };
    delete env.NODE_EXTRA_CA_CERTS;
    await assert.rejects(run(process.execPath, [probe], { env, timeout: 30_000 }), (e: unknown) => {
      const err = e as { code?: number; stderr?: string };
      assert.equal(err.code, 1);
      assert.match(err.stderr ?? '', /certificate|self[- ]signed|unable to verify/i);
      return true;
    });
  });
});
