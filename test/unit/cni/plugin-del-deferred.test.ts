// A DEL while vpc-ipamd is down (plugin.ts cmdDel): the host side is cleaned, the DEL succeeds, and
// the release is noted for the daemon (deferred-release.ts) instead of left to a GC that may never
// come. The daemon's side (each pool round frees the noted keys) is in
// test/unit/ipam-daemon/daemon/gc.test.ts.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseConfig, parseEnv } from '../../../src/cni/config.ts';
import { createDaemonClient, DaemonUnreachableError } from '../../../src/cni/daemon-client.ts';
import { deferredReleaseDir, readDeferredReleases } from '../../../src/cni/deferred-release.ts';
import { cmdDel, type PluginDeps } from '../../../src/cni/plugin.ts';
import type { ReleaseRequest } from '../../../src/ipam-daemon/api-types.ts';

const env = parseEnv({
  CNI_COMMAND: 'DEL',
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/run/netns/p',
  CNI_IFNAME: 'eth0',
});
const conf = (socketPath: string) =>
  parseConfig({
    cniVersion: '1.1.0',
    name: 'vpc-net',
    type: 'vpc-cni',
    socketPath,
    prevResult: {
      cniVersion: '1.1.0',
      interfaces: [{ name: 'eth0', sandbox: '/run/netns/p' }],
      ips: [{ address: '10.0.1.7/32', interface: 0 }],
    },
  });

function deps(daemon: PluginDeps['daemon']): PluginDeps {
  return {
    ip: { batch: async () => {}, batchBestEffort: async () => [], json: async <T>() => [] as T[] },
    daemon,
    netnsExists: async () => false,
    log: { debug() {}, info() {}, warn() {}, error() {}, bind() {} },
  };
}

describe('DEL with the daemon down', () => {
  test('succeeds and notes the release (with the pod IP) for the daemon', async () => {
    const noted: ReleaseRequest[] = [];
    const down = async (): Promise<never> => {
      throw new DaemonUnreachableError('/x.sock', new Error('connect ENOENT'));
    };
    const r = await cmdDel(
      env,
      conf('/x.sock'),
      deps({
        allocate: down,
        release: down,
        getAllocation: down,
        gc: down,
        readiness: down,
        deferRelease: async (k) => {
          noted.push(k);
        },
      }),
    );
    assert.equal(r, null);
    assert.deepEqual(noted, [{ containerId: 'c1', ifName: 'eth0', ip: '10.0.1.7' }]);
  });

  test('the socket client writes the note beside the socket, where the daemon reads it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cni-deferred-'));
    try {
      const socketPath = join(dir, 'ipamd.sock'); // nothing listens
      const client = createDaemonClient(socketPath, 2000);
      assert.equal(await cmdDel(env, conf(socketPath), deps(client)), null);
      const notes = await readDeferredReleases(socketPath);
      assert.deepEqual(
        notes.map((n) => n.key),
        [{ containerId: 'c1', ifName: 'eth0', ip: '10.0.1.7' }],
      );
      assert.equal((await readdir(deferredReleaseDir(socketPath))).length, 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
