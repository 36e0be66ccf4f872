// The ADD's failure path (plugin.ts cmdAdd) with recording fakes for ip and the daemon: routes and
// rules are keyed by IP, so a failed ADD rolls back (and releases) only while its attachment still
// holds that IP and no other veth has the IP's route; an ADD cancelled by a later command of the
// same attachment touches nothing at all. The real kernel side: test/e2e/shim-cancel.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig, parseEnv } from '../../../src/cni/config.ts';
import type { DaemonClient } from '../../../src/cni/daemon-client.ts';
import { ApplyCancelledError, cmdAdd, type PluginDeps } from '../../../src/cni/plugin.ts';
import { CniError } from '../../../src/cni/spec.ts';
import type { Allocation } from '../../../src/ipam-daemon/api-types.ts';
import { hostVethName } from '../../../src/netutils/names.ts';
import { alloc } from './allocation-fixture.ts';

const env = parseEnv({
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/run/netns/p',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0',
});
const conf = parseConfig({ cniVersion: '1.1.0', name: 'vpc-net', type: 'vpc-cni' });
const ours = hostVethName('c1', 'eth0');

/** `held`: what the daemon now holds for c1/eth0; `routedTo`: the veth the IP's /32 route names. */
function fakes(o: { applyError: Error; held: Allocation | null; routedTo?: string }) {
  const touched: string[] = [];
  const daemon: DaemonClient = {
    allocate: async () => alloc,
    release: async (key) => {
      touched.push(`release ${key.containerId}/${key.ifName} if ${key.ip}`);
      return { released: alloc.ip };
    },
    getAllocation: async () => o.held,
    gc: async () => ({ released: [] }),
    readiness: async () => null,
  };
  const deps: PluginDeps = {
    ip: {
      batch: async () => {},
      batchBestEffort: async (lines) => {
        touched.push(...lines.map((l) => l.join(' ')));
        return [];
      },
      json: async <T>(args: readonly string[]) =>
        (args[0] === 'route' && o.routedTo ? [{ dst: alloc.ip, dev: o.routedTo }] : []) as T[],
    },
    daemon,
    netnsExists: async () => true,
    log: { debug() {}, info() {}, warn() {}, error() {}, bind() {} },
    apply: async () => {
      throw o.applyError;
    },
  };
  return { touched, deps };
}

async function failedAdd(f: ReturnType<typeof fakes>): Promise<CniError> {
  const err = await cmdAdd(env, conf, f.deps).then(
    () => assert.fail('ADD should fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CniError, String(err));
  return err;
}

describe('ADD failure path: never touch what another command now owns', () => {
  test('still ours (same key, same IP, routed nowhere else): rules, veth and allocation rolled back', async () => {
    const f = fakes({ applyError: new Error('step 2 op 1: no such device'), held: alloc, routedTo: ours });
    assert.equal((await failedAdd(f)).code, 101);
    assert.deepEqual(f.touched, [
      `rule del to ${alloc.ip}/32 lookup main priority 512`,
      `rule del from ${alloc.ip}/32 priority 1536`,
      `link del dev ${ours}`,
      `release c1/eth0 if ${alloc.ip}`,
    ]);
  });

  test('the daemon no longer holds the IP for this attachment (a DEL freed it): nothing touched', async () => {
    const f = fakes({
      applyError: new Error('the shim did not report the wiring within 20000 ms'),
      held: null,
    });
    assert.equal((await failedAdd(f)).code, 101);
    assert.deepEqual(f.touched, []);
  });

  test('the attachment holds another IP now (a retried ADD): nothing touched', async () => {
    const f = fakes({ applyError: new Error('timeout'), held: { ...alloc, ip: '10.0.1.9' } });
    await failedAdd(f);
    assert.deepEqual(f.touched, []);
  });

  test("the IP is routed to another pod's veth: its rules and its allocation are left alone", async () => {
    const f = fakes({
      applyError: new Error('timeout'),
      held: alloc,
      routedTo: hostVethName('podB', 'eth0'),
    });
    await failedAdd(f);
    assert.deepEqual(f.touched, []);
  });

  test('cancelled by a later DEL/ADD of the attachment: try again later, nothing touched', async () => {
    const f = fakes({ applyError: new ApplyCancelledError('a later DEL of c1/eth0 took over'), held: alloc });
    const err = await failedAdd(f);
    assert.equal(err.code, 11);
    assert.match(err.message, /cancelled: a later DEL/);
    assert.deepEqual(f.touched, []);
  });
});
