// A veth DEL through a shim that applies plans (plugin.ts cmdDel, PluginDeps.apply): the host-side
// teardown goes to the shim as one plan (wiring/veth.ts vethDelPlan) and no `ip` process runs; the
// IP is released only after the shim reported the plan applied (issue #10: an IP is never handed
// out while the old pod's route can still carry it). A failed plan falls back to `ip`, a cancelled
// one releases nothing, and older shims, ipvlan and adopted veths keep the `ip` path. From plan
// version 3, with the daemon's sweep (a cooldown), the plan removes the rules and the route and
// leaves the veth, handed to the sweep (name + ifindex) before the release.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig, parseEnv } from '../../../src/cni/config.ts';
import type { DaemonClient } from '../../../src/cni/daemon-client.ts';
import { ApplyCancelledError, cmdDel, type LeftVeth, type PluginDeps } from '../../../src/cni/plugin.ts';
import { CniError } from '../../../src/cni/spec.ts';
import type { AppliedLinks, NetPlan } from '../../../src/cni/wiring/net-ops.ts';
import { vethDelPlan } from '../../../src/cni/wiring/veth.ts';
import type { Allocation } from '../../../src/ipam-daemon/api-types.ts';
import { hostVethName } from '../../../src/netutils/names.ts';
import { alloc } from './allocation-fixture.ts';

const env = parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_NETNS: '', CNI_IFNAME: 'eth0' });
const veth = parseConfig({ cniVersion: '1.1.0', name: 'vpc-net', type: 'vpc-cni' });
const ours = hostVethName('c1', 'eth0');

/** Records, in order, every `ip` line, lookup, plan and release; `apply` decides the shim's report. */
function fakes(o: {
  held: Allocation | null;
  apply?: (plan: NetPlan) => Promise<AppliedLinks | undefined>;
  planVersion?: number;
  /** The daemon sweeps veths a DEL leaves (it has a cooldown). */
  sweeps?: boolean;
}) {
  const events: string[] = [];
  const daemon: DaemonClient = {
    allocate: async () => alloc,
    release: async (key) => {
      events.push(`release ${key.containerId}/${key.ifName}`);
      return { released: o.held?.ip ?? null };
    },
    getAllocation: async () => o.held,
    gc: async () => ({ released: [] }),
    readiness: async () => null,
  };
  const plans: NetPlan[] = [];
  const deps: PluginDeps = {
    ip: {
      batch: async (lines) => {
        events.push(...lines.map((l) => l.join(' ')));
      },
      batchBestEffort: async (lines) => {
        events.push(...lines.map((l) => l.join(' ')));
        return [];
      },
      json: async <T>(args: readonly string[]) => {
        events.push(`lookup ${args.join(' ')}`);
        return [] as T[];
      },
    },
    daemon,
    netnsExists: async () => false,
    log: { debug() {}, info() {}, warn() {}, error() {}, bind() {} },
    apply: async (plan) => {
      plans.push(plan);
      events.push('plan applied by the shim');
      return (await o.apply?.(plan)) ?? undefined;
    },
    planVersion: o.planVersion ?? 2,
  };
  const left: LeftVeth[] = [];
  if (o.sweeps) {
    deps.leaveVeth = (v) => {
      left.push(v);
      events.push(`left ${v.hostName}#${v.ifindex} (${v.ip} cools until it is gone)`);
    };
  }
  return { events, plans, deps, left };
}

const ipCleanup = [
  `lookup route show table main ${alloc.ip}/32`,
  `rule del to ${alloc.ip}/32 lookup main priority 512`,
  `rule del from ${alloc.ip}/32 priority 1536`,
  `link del dev ${ours}`,
];

describe('DEL through the shim: one plan, release after it applied', () => {
  test('the teardown is the plan (no ip process), and the release comes only after the report', async () => {
    let report: (() => void) | undefined;
    const f = fakes({
      held: alloc,
      apply: () =>
        new Promise((r) => {
          report = () => r(undefined);
        }),
    });
    const del = cmdDel(env, veth, f.deps);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(
      f.events,
      ['plan applied by the shim'],
      'nothing released while the shim has not reported',
    );
    report?.();
    assert.equal(await del, null);
    assert.deepEqual(f.events, ['plan applied by the shim', 'release c1/eth0']);
    assert.deepEqual(f.plans, [vethDelPlan(ours, alloc.ip)]);
  });

  test('the IP from prevResult goes into the plan (the rules it guards are that IP’s)', async () => {
    const f = fakes({ held: alloc });
    const conf = parseConfig({
      cniVersion: '1.1.0',
      name: 'vpc-net',
      type: 'vpc-cni',
      prevResult: {
        cniVersion: '1.1.0',
        interfaces: [{ name: ours }, { name: 'eth0', sandbox: '/run/netns/p' }],
        ips: [{ address: '10.0.1.44/32', interface: 1 }],
      },
    });
    await cmdDel(env, conf, f.deps);
    assert.deepEqual(f.plans, [vethDelPlan(ours, '10.0.1.44')]);
  });

  test('the shim failed the plan: cleaned up with ip (safe to repeat), then released', async () => {
    const f = fakes({
      held: alloc,
      apply: async () => {
        throw new Error('step 1 op 0 linkDel: operation not permitted');
      },
    });
    assert.equal(await cmdDel(env, veth, f.deps), null);
    assert.deepEqual(f.events, ['plan applied by the shim', ...ipCleanup, 'release c1/eth0']);
  });

  test('cancelled by a later command of the attachment: try again later, nothing more touched or released', async () => {
    const f = fakes({
      held: alloc,
      apply: async () => {
        throw new ApplyCancelledError('a later DEL of c1/eth0 took over', 'DEL');
      },
    });
    const err = await cmdDel(env, veth, f.deps).then(
      () => assert.fail('the DEL should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof CniError && err.code === 11, String(err));
    assert.match(err.message, /DEL cancelled/);
    assert.deepEqual(f.events, ['plan applied by the shim']);
  });

  test('the `ip` path stays for an older shim (plan version 1), ipvlan, an adopted veth and an unknown IP', async () => {
    const v1 = fakes({ held: alloc, planVersion: 1 });
    await cmdDel(env, veth, v1.deps);
    assert.deepEqual(v1.events, [...ipCleanup, 'release c1/eth0']);

    const ipvlan = fakes({ held: alloc });
    await cmdDel(
      env,
      parseConfig({ cniVersion: '1.1.0', name: 'n', type: 'vpc-cni', mode: 'ipvlan' }),
      ipvlan.deps,
    );
    assert.deepEqual(ipvlan.plans, []);

    const adopted = fakes({ held: { ...alloc, hostVeth: 'eni0123456789a' } });
    await cmdDel(env, veth, adopted.deps);
    assert.deepEqual(adopted.plans, []);
    assert.ok(adopted.events.includes(`lookup route show table main ${alloc.ip}/32`));

    // Neither prevResult nor the daemon names the IP: only the veth's route can, so `ip` looks.
    const unknown = fakes({ held: null });
    await cmdDel(env, veth, unknown.deps);
    assert.deepEqual(unknown.plans, []);
    assert.deepEqual(unknown.events, [
      `lookup route show table main dev ${ours}`,
      `link del dev ${ours}`,
      'release c1/eth0',
    ]);
  });

  test('plan version 3 with the sweep: rules and route go, the veth is left (name + ifindex) before the release', async () => {
    const f = fakes({ held: alloc, planVersion: 3, sweeps: true, apply: async () => ({ [ours]: 41 }) });
    assert.equal(await cmdDel(env, veth, f.deps), null);
    assert.deepEqual(f.plans, [vethDelPlan(ours, alloc.ip, true)]);
    assert.deepEqual(f.events, [
      'plan applied by the shim',
      `left ${ours}#41 (${alloc.ip} cools until it is gone)`,
      'release c1/eth0',
    ]);
    assert.deepEqual(f.left, [
      { containerId: 'c1', ifName: 'eth0', hostName: ours, ifindex: 41, ip: alloc.ip },
    ]);
  });

  test('plan version 3, veth already gone (the netns went first): nothing left to sweep, released', async () => {
    const f = fakes({ held: alloc, planVersion: 3, sweeps: true, apply: async () => ({}) });
    await cmdDel(env, veth, f.deps);
    assert.deepEqual(f.plans, [vethDelPlan(ours, alloc.ip, true)]);
    assert.deepEqual(f.events, ['plan applied by the shim', 'release c1/eth0']);
  });

  test('no sweep (IP_COOLDOWN_PERIOD=0) or an older shim (plan version 2): the DEL deletes the veth itself', async () => {
    const noCooldown = fakes({ held: alloc, planVersion: 3 });
    await cmdDel(env, veth, noCooldown.deps);
    assert.deepEqual(noCooldown.plans, [vethDelPlan(ours, alloc.ip)]);
    const v2 = fakes({ held: alloc, planVersion: 2, sweeps: true, apply: async () => ({ [ours]: 41 }) });
    await cmdDel(env, veth, v2.deps);
    assert.deepEqual(v2.plans, [vethDelPlan(ours, alloc.ip)]);
    assert.deepEqual(v2.left, []);
  });

  test('plan version 3 failed: the `ip` path deletes the veth synchronously and nothing is left to the sweep', async () => {
    const f = fakes({
      held: alloc,
      planVersion: 3,
      sweeps: true,
      apply: async () => {
        throw new Error('step 1 op 0 routeDel: operation not permitted');
      },
    });
    await cmdDel(env, veth, f.deps);
    assert.deepEqual(f.events, ['plan applied by the shim', ...ipCleanup, 'release c1/eth0']);
    assert.deepEqual(f.left, []);
  });
});
