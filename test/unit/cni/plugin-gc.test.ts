// The plugin's side of GC and of the pod identity (plugin.ts) with recording fakes for ip and the
// daemon: GC removes stale host veths BEFORE asking the daemon (which releases an allocation only
// once its pod is unwired) and names its network; ADD sends the pod uid and the network name.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig, parseEnv } from '../../../src/cni/config.ts';
import type { DaemonClient } from '../../../src/cni/daemon-client.ts';
import { cmdAdd, cmdGc, type PluginDeps } from '../../../src/cni/plugin.ts';
import type { AllocateRequest } from '../../../src/ipam-daemon/api-types.ts';
import { hostVethName } from '../../../src/netutils/names.ts';

function fakes() {
  const calls: string[] = [];
  const allocs: AllocateRequest[] = [];
  const gcs: { valid: unknown[]; network?: string }[] = [];
  const daemon: DaemonClient = {
    allocate: async (req) => {
      allocs.push(req);
      throw new Error('stop here');
    },
    release: async () => ({ released: null }),
    getAllocation: async () => null,
    gc: async (valid, network) => {
      calls.push('daemon gc');
      gcs.push({ valid, ...(network ? { network } : {}) });
      return { released: [] };
    },
    readiness: async () => null,
  };
  const deps: PluginDeps = {
    ip: {
      batch: async () => {},
      batchBestEffort: async (lines) => {
        calls.push(...lines.map((l) => l.join(' ')));
        return [];
      },
      json: async <T>(args: readonly string[]) =>
        (args[0] === 'link' ? [{ ifname: hostVethName('gone', 'eth0') }, { ifname: 'eth0' }] : []) as T[],
    },
    daemon,
    netnsExists: async () => true,
    log: { debug() {}, info() {}, warn() {}, error() {}, bind() {} },
  };
  return { calls, allocs, gcs, deps };
}

describe('plugin GC and pod identity', () => {
  test('GC unwires stale host veths first, then asks the daemon for its own network only', async () => {
    const f = fakes();
    const conf = parseConfig({
      cniVersion: '1.1.0',
      name: 'vpc-net',
      type: 'vpc-cni',
      'cni.dev/valid-attachments': [{ containerID: 'kept', ifname: 'eth0' }],
    });
    await cmdGc(conf, f.deps);
    assert.deepEqual(f.calls, [`link del dev ${hostVethName('gone', 'eth0')}`, 'daemon gc']);
    assert.deepEqual(f.gcs, [{ valid: [{ containerId: 'kept', ifName: 'eth0' }], network: 'vpc-net' }]);
  });

  test('ADD sends the pod identity, its uid and the network name', async () => {
    const f = fakes();
    const uid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
    const env = parseEnv({
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/run/netns/p',
      CNI_IFNAME: 'eth0',
      CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=${uid}`,
    });
    const conf = parseConfig({ cniVersion: '1.1.0', name: 'vpc-net', type: 'vpc-cni' });
    await assert.rejects(cmdAdd(env, conf, f.deps), /stop here/);
    assert.deepEqual(f.allocs, [
      {
        containerId: 'c1',
        ifName: 'eth0',
        netns: '/run/netns/p',
        podNamespace: 'default',
        podName: 'web-0',
        podUid: uid,
        network: 'vpc-net',
      },
    ]);
  });
});
