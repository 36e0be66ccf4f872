import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type EngineInterface,
  type EngineSubnet,
  maxPodsFor,
  type Plan,
  type PoolLimits,
  type PoolState,
  type PoolTargets,
  plan,
} from '../../../src/ipam-daemon/pool-engine.ts';
import { m5large } from './pool-limits.ts';

// ---- a tiny simulator: applies plans to a state the way the daemon would (cloud always succeeds) ----

interface Sim {
  ifs: EngineInterface[];
  subnets: EngineSubnet[];
  pending: number;
  excessSince: number | null;
  now: number;
  seq: number;
  ipSeq: number;
  calls: number;
}

function newSim(opts: { primaryIps?: number; subnets?: EngineSubnet[] } = {}): Sim {
  const sim: Sim = {
    ifs: [],
    subnets: opts.subnets ?? [
      { id: 'subnet-a', cidr: '10.0.0.0/24', availableIps: null, backoffUntil: null },
    ],
    pending: 0,
    excessSince: null,
    now: 1_000_000,
    seq: 0,
    ipSeq: 0,
    calls: 0,
  };
  sim.ifs.push({
    id: 'eni-0',
    deviceIndex: 0,
    subnetId: sim.subnets[0]?.id ?? 'subnet-a',
    usable: true,
    deletable: false,
    total: 0,
    assigned: 0,
    cooling: 0,
    freeIps: [],
  });
  addIps(sim, sim.ifs[0] as EngineInterface, opts.primaryIps ?? 0);
  return sim;
}

function addIps(sim: Sim, i: EngineInterface, n: number): void {
  for (let k = 0; k < n; k++) i.freeIps.push(`ip-${++sim.ipSeq}`);
  i.total += n;
}

function stateOf(sim: Sim): PoolState {
  return {
    interfaces: structuredClone(sim.ifs),
    pending: sim.pending,
    excessSince: sim.excessSince,
    subnets: structuredClone(sim.subnets),
    cloudBackoff: null,
  };
}

function apply(sim: Sim, p: Plan): void {
  sim.excessSince = p.excessSince;
  for (const a of p.actions) {
    sim.calls++;
    if (a.kind === 'assign')
      addIps(sim, sim.ifs.find((i) => i.id === a.interfaceId) as EngineInterface, a.count);
    if (a.kind === 'create') {
      const used = new Set(sim.ifs.map((i) => i.deviceIndex));
      let d = 1;
      while (used.has(d)) d++;
      const i: EngineInterface = {
        id: `eni-${++sim.seq}`,
        deviceIndex: d,
        subnetId: a.subnetId,
        usable: true,
        deletable: true,
        total: 0,
        assigned: 0,
        cooling: 0,
        freeIps: [],
      };
      addIps(sim, i, a.ipCount);
      sim.ifs.push(i);
    }
    if (a.kind === 'unassign') {
      const i = sim.ifs.find((x) => x.id === a.interfaceId) as EngineInterface;
      for (const ip of a.ips) assert.ok(i.freeIps.includes(ip), `unassign of non-free ${ip}`);
      i.freeIps = i.freeIps.filter((ip) => !a.ips.includes(ip));
      i.total -= a.ips.length;
    }
    if (a.kind === 'delete') {
      const i = sim.ifs.find((x) => x.id === a.interfaceId) as EngineInterface;
      assert.equal(i.assigned + i.cooling, 0, 'deleted an interface in use');
      assert.ok(i.deletable);
      sim.ifs = sim.ifs.filter((x) => x !== i);
    }
  }
}

/** Plan and apply until the engine is content (bounded). */
function converge(sim: Sim, limits: PoolLimits, targets: PoolTargets): Plan {
  let last: Plan | undefined;
  for (let round = 0; round < 20; round++) {
    last = plan(stateOf(sim), limits, targets, sim.now);
    sim.excessSince = last.excessSince;
    if (last.actions.length === 0) return last;
    apply(sim, last);
  }
  assert.fail(`did not converge: ${last?.why}`);
}

/** Give `n` more pods an IP, lowest device index first (as the datastore does). */
function assignPods(sim: Sim, n: number): number {
  let done = 0;
  for (const i of [...sim.ifs].sort((a, b) => a.deviceIndex - b.deviceIndex)) {
    while (done < n && i.freeIps.length > 0) {
      i.freeIps.shift();
      i.assigned++;
      done++;
    }
  }
  return done;
}

function releasePods(sim: Sim, n: number, cooling = false): void {
  let left = n;
  for (const i of [...sim.ifs].sort((a, b) => b.deviceIndex - a.deviceIndex)) {
    while (left > 0 && i.assigned > 0) {
      i.assigned--;
      if (cooling) i.cooling++;
      else i.freeIps.push(`ip-${++sim.ipSeq}-back`);
      left--;
    }
  }
}

/** Bring `pods` pods up on a fresh node the way the daemon does: they wait, the pool grows, they get IPs. */
function runPods(sim: Sim, pods: number, limits: PoolLimits, targets: PoolTargets): Plan {
  converge(sim, limits, targets);
  let left = pods;
  for (let round = 0; left > 0 && round < 20; round++) {
    left -= assignPods(sim, left);
    sim.pending = left;
    converge(sim, limits, targets);
  }
  sim.pending = 0;
  assert.equal(left, 0, 'pods left without IPs');
  return converge(sim, limits, targets);
}

const t3small: PoolLimits = {
  instanceType: 't3.small',
  maxInterfaces: 3,
  ipsPerInterface: 4,
  maxEni: null,
  maxPods: null,
};
const p3dn: PoolLimits = {
  instanceType: 'p3dn.24xlarge',
  maxInterfaces: 15,
  ipsPerInterface: 50,
  maxEni: null,
  maxPods: null,
};

function targets(over: Partial<PoolTargets> = {}): PoolTargets {
  return {
    warmEniTarget: 1,
    warmIpTarget: null,
    minimumIpTarget: null,
    minGrowStep: 1,
    shrinkDelayMs: 0,
    ...over,
  };
}

/** An interface that lends no IP to the pool: not ours, or ours outside the pod subnets (retired). */
function offPool(id: string, deviceIndex: number, over: Partial<EngineInterface> = {}): EngineInterface {
  return {
    id,
    deviceIndex,
    subnetId: 'subnet-old',
    usable: false,
    deletable: true,
    total: 0,
    assigned: 0,
    cooling: 0,
    freeIps: [],
    ...over,
  };
}

function perIf(sim: Sim): number[] {
  return [...sim.ifs].sort((a, b) => a.deviceIndex - b.deviceIndex).map((i) => i.total);
}

describe('pool engine: the AWS VPC CNI documented examples (docs/eni-and-ip-target.md)', () => {
  // instance, WARM_ENI_TARGET, WARM_IP_TARGET, MINIMUM_IP_TARGET, pods, ENIs, secondary IPs, unused, IPs per ENI
  const rows: Array<
    [PoolLimits, number | null, number | null, number | null, number, number, number, number, number[]]
  > = [
    [t3small, 1, null, null, 0, 1, 3, 3, [3]],
    [t3small, 1, null, null, 5, 3, 9, 4, [3, 3, 3]],
    [t3small, 1, null, null, 9, 3, 9, 0, [3, 3, 3]],
    [t3small, null, 1, 1, 0, 1, 1, 1, [1]],
    [t3small, null, 1, 1, 5, 2, 6, 1, [3, 3]],
    [t3small, null, 1, 1, 9, 3, 9, 0, [3, 3, 3]],
    [t3small, null, 2, 5, 0, 2, 5, 5, [3, 2]],
    [t3small, null, 2, 5, 5, 3, 7, 2, [3, 3, 1]],
    [t3small, null, 2, 5, 9, 3, 9, 0, [3, 3, 3]],
    [p3dn, 1, null, null, 0, 1, 49, 49, [49]],
    [p3dn, 1, null, null, 3, 2, 98, 95, [49, 49]],
    [p3dn, 1, null, null, 95, 3, 147, 52, [49, 49, 49]],
    [p3dn, null, 5, 10, 0, 1, 10, 10, [10]],
    [p3dn, null, 5, 10, 7, 1, 12, 5, [12]],
    [p3dn, null, 5, 10, 15, 1, 20, 5, [20]],
    [p3dn, null, 5, 10, 45, 2, 50, 5, [49, 1]],
  ];
  for (const [limits, eni, wip, min, pods, enis, ips, unused, dist] of rows) {
    test(`${limits.instanceType} WARM_ENI_TARGET=${eni ?? '-'} WARM_IP_TARGET=${wip ?? '-'} MINIMUM_IP_TARGET=${min ?? '-'} with ${pods} pods -> ${enis} ENIs, ${ips} IPs`, () => {
      const sim = newSim();
      const t = targets({ warmEniTarget: eni ?? 1, warmIpTarget: wip, minimumIpTarget: min });
      runPods(sim, pods, limits, t);
      assert.equal(sim.ifs.length, enis, 'attached ENIs');
      const total = sim.ifs.reduce((n, i) => n + i.total, 0);
      assert.equal(total, ips, 'secondary IPs');
      assert.equal(total - pods, unused, 'unused IPs');
      assert.deepEqual(perIf(sim), dist, 'IPs per ENI');
    });
  }
});

describe('pool engine: limits', () => {
  test('max pods is ENIs x (IPs per ENI - 1) + 2, or MAX_PODS / MAX_ENI if lower', () => {
    assert.equal(maxPodsFor(m5large), 29);
    assert.equal(
      maxPodsFor({ ...m5large, instanceType: 'm5.4xlarge', maxInterfaces: 8, ipsPerInterface: 30 }),
      234,
    );
    assert.equal(maxPodsFor({ ...m5large, maxEni: 2 }), 20);
    assert.equal(maxPodsFor({ ...m5large, maxPods: 17 }), 17);
  });

  test('m5.large: 27 pod IPs, then instance-limit with an actionable message', () => {
    const sim = newSim();
    runPods(sim, 27, m5large, targets());
    assert.deepEqual(perIf(sim), [9, 9, 9]);
    sim.pending = 1;
    const p = plan(stateOf(sim), m5large, targets(), sim.now);
    assert.deepEqual(p.actions, []);
    assert.equal(p.noIp?.reason, 'instance-limit');
    assert.match(p.noIp?.message ?? '', /m5\.large holds at most 3 interfaces x 9 pod IPs = 27/);
    assert.match(p.noIp?.message ?? '', /--max-pods to 29/);
  });

  test('MAX_ENI caps interfaces and is named as the reason', () => {
    const limits = { ...m5large, maxEni: 2 };
    const sim = newSim();
    runPods(sim, 18, limits, targets());
    assert.equal(sim.ifs.length, 2);
    sim.pending = 1;
    const p = plan(stateOf(sim), limits, targets(), sim.now);
    assert.equal(p.noIp?.reason, 'max-eni');
    assert.match(p.noIp?.message ?? '', /raise MAX_ENI \(the m5\.large limit is 3\)/);
  });

  test('MAX_PODS caps the pool below the interface capacity', () => {
    const limits = { ...m5large, maxPods: 12 };
    const sim = newSim();
    runPods(sim, 12, limits, targets());
    assert.equal(
      sim.ifs.reduce((n, i) => n + i.total, 0),
      12,
      'never holds more IPs than max pods',
    );
    sim.pending = 1;
    const p = plan(stateOf(sim), limits, targets(), sim.now);
    assert.equal(p.noIp?.reason, 'max-pods');
    assert.deepEqual(p.actions, []);
  });

  test('never exceeds the per-interface IP limit or the interface limit', () => {
    for (const pods of [0, 1, 8, 9, 10, 17, 18, 19, 26, 27]) {
      for (const t of [
        targets(),
        targets({ warmEniTarget: 3 }),
        targets({ warmIpTarget: 7, minimumIpTarget: 20 }),
      ]) {
        const sim = newSim();
        runPods(sim, pods, m5large, t);
        assert.ok(sim.ifs.length <= 3, `${pods} pods: ${sim.ifs.length} interfaces`);
        for (const i of sim.ifs) assert.ok(i.total <= 9, `${pods} pods: ${i.total} IPs on ${i.id}`);
      }
    }
  });
});

describe('pool engine: one-step growth', () => {
  test('a burst of 20 pods on a fresh node is one round of calls, filling the primary first', () => {
    const sim = newSim();
    sim.pending = 20;
    const p = plan(stateOf(sim), m5large, targets({ warmEniTarget: 0 }), sim.now);
    // ENI mode keeps interfaces full: 20 pods need 3 interfaces' worth.
    assert.deepEqual(p.actions, [
      { kind: 'assign', interfaceId: 'eni-0', count: 9 },
      { kind: 'create', subnetId: 'subnet-a', ipCount: 9 },
      { kind: 'create', subnetId: 'subnet-a', ipCount: 9 },
    ]);
    assert.equal(p.noIp?.reason, 'pool-growing');
  });

  test('IP mode: a burst of 20 is exactly 20 IPs in one round', () => {
    const sim = newSim();
    sim.pending = 20;
    const p = plan(stateOf(sim), m5large, targets({ warmIpTarget: 0, minimumIpTarget: 1 }), sim.now);
    assert.deepEqual(p.actions, [
      { kind: 'assign', interfaceId: 'eni-0', count: 9 },
      { kind: 'create', subnetId: 'subnet-a', ipCount: 9 },
      { kind: 'create', subnetId: 'subnet-a', ipCount: 2 },
    ]);
  });

  test('WARM_IP_TARGET grows exactly to target in one assign', () => {
    const sim = newSim({ primaryIps: 2 });
    assignPods(sim, 2);
    const p = plan(stateOf(sim), m5large, targets({ warmIpTarget: 5 }), sim.now);
    assert.deepEqual(p.actions, [{ kind: 'assign', interfaceId: 'eni-0', count: 5 }]);
  });
});

describe('pool engine: small WARM_IP_TARGET under churn', () => {
  function churn(minGrowStep: number, warmIpTarget: number, minimumIpTarget: number | null): number {
    const sim = newSim();
    const t = targets({ warmIpTarget, minimumIpTarget, minGrowStep, shrinkDelayMs: 0 });
    converge(sim, m5large, t);
    sim.calls = 0;
    // 30 rounds: a pod arrives, later another leaves; the node hovers around 5 pods.
    runPods(sim, 5, m5large, t);
    for (let k = 0; k < 30; k++) {
      runPods(sim, 1, m5large, t);
      releasePods(sim, 1);
      converge(sim, m5large, t);
    }
    return sim.calls;
  }

  test('grow step batching cuts cloud calls under churn', () => {
    const exact = churn(1, 1, null);
    const batched = churn(4, 1, null);
    assert.ok(exact >= 30, `WARM_IP_TARGET=1 without batching calls the cloud per pod (${exact})`);
    assert.ok(batched <= 4, `with a grow step of 4 churn settles (${batched} calls)`);
  });

  test('WARM_IP_TARGET=0 with MINIMUM_IP_TARGET: the floor is held, growth above it is batched', () => {
    const t = targets({ warmIpTarget: 0, minimumIpTarget: 10, minGrowStep: 4 });
    const sim = newSim();
    converge(sim, m5large, t);
    assert.equal(
      sim.ifs.reduce((n, i) => n + i.total, 0),
      10,
      'MINIMUM_IP_TARGET is the floor',
    );
    runPods(sim, 10, m5large, t);
    assert.equal(
      sim.ifs.reduce((n, i) => n + i.total, 0),
      10,
      'no warm buffer: 10 pods use the 10',
    );
    sim.pending = 1;
    const p = plan(stateOf(sim), m5large, t, sim.now);
    const growth = p.actions.reduce(
      (n, a) => n + (a.kind === 'assign' || a.kind === 'create' ? ('count' in a ? a.count : a.ipCount) : 0),
      0,
    );
    assert.equal(growth, 4, 'pod 11 brings a batch of 4, so pods 12-14 do not wait');
  });

  test('WARM_IP_TARGET=0 alone means unset: WARM_ENI_TARGET applies (as in the AWS VPC CNI)', () => {
    const sim = newSim();
    const p = converge(sim, m5large, targets({ warmIpTarget: 0 }));
    assert.equal(p.mode, 'eni');
    assert.deepEqual(perIf(sim), [9]);
  });
});

describe('pool engine: the worked examples in docs/warm-pool.md', () => {
  test('WARM_IP_TARGET=2, MINIMUM_IP_TARGET=10 with the default grow step of 4', () => {
    const t = targets({ warmIpTarget: 2, minimumIpTarget: 10, minGrowStep: 4 });
    const sim = newSim();
    converge(sim, m5large, t);
    assert.deepEqual(perIf(sim), [9, 1], 'fresh node: 9 on the primary, 1 on a new ENI');
    runPods(sim, 10, m5large, t);
    assert.deepEqual(perIf(sim), [9, 5], '10 pods: one assign of 4 (12 needed)');
    releasePods(sim, 9);
    converge(sim, m5large, t);
    assert.equal(
      sim.ifs.reduce((n, i) => n + i.total, 0),
      10,
      'back to the floor of 10',
    );
  });

  test('default WARM_ENI_TARGET=1 on an m5.large: 1 pod means a second ENI', () => {
    const sim = newSim();
    runPods(sim, 1, m5large, targets());
    assert.deepEqual(perIf(sim), [9, 9]);
    runPods(sim, 9, m5large, targets());
    assert.deepEqual(perIf(sim), [9, 9, 9]);
  });
});

describe('pool engine: shrinking', () => {
  test('waits for the shrink delay, then deletes empty unneeded interfaces (never the primary)', () => {
    const t = targets({ shrinkDelayMs: 60_000 });
    const sim = newSim();
    runPods(sim, 20, m5large, t);
    assert.equal(sim.ifs.length, 3);
    releasePods(sim, 20);
    let p = plan(stateOf(sim), m5large, t, sim.now);
    assert.deepEqual(p.actions, [], 'no shrink before the delay');
    assert.match(p.why, /shrink in 60s/);
    apply(sim, p);
    sim.now += 59_000;
    p = plan(stateOf(sim), m5large, t, sim.now);
    assert.deepEqual(p.actions, []);
    apply(sim, p);
    sim.now += 1_000;
    p = plan(stateOf(sim), m5large, t, sim.now);
    assert.deepEqual(
      p.actions.map((a) => a.kind),
      ['delete', 'delete'],
    );
    apply(sim, p);
    assert.deepEqual(perIf(sim), [9], 'back to WARM_ENI_TARGET=1: the primary, full');
  });

  test('a pod coming back during the delay resets it', () => {
    const t = targets({ warmIpTarget: 2, shrinkDelayMs: 10_000 });
    const sim = newSim();
    runPods(sim, 6, m5large, t);
    releasePods(sim, 4);
    apply(sim, plan(stateOf(sim), m5large, t, sim.now));
    assert.notEqual(sim.excessSince, null);
    sim.now += 5_000;
    runPods(sim, 4, m5large, t);
    assert.equal(sim.excessSince, null);
  });

  test('cooling IPs are neither given back nor counted as free', () => {
    const t = targets({ warmIpTarget: 1 });
    const sim = newSim();
    runPods(sim, 5, m5large, t);
    releasePods(sim, 5, true);
    const p = plan(stateOf(sim), m5large, t, sim.now);
    for (const a of p.actions) assert.notEqual(a.kind, 'delete');
    assert.equal(p.used, 5, 'cooling IPs count as used');
  });

  test('never shrinks below MINIMUM_IP_TARGET', () => {
    const t = targets({ warmIpTarget: 1, minimumIpTarget: 8 });
    const sim = newSim();
    runPods(sim, 15, m5large, t);
    releasePods(sim, 15);
    converge(sim, m5large, t);
    assert.equal(
      sim.ifs.reduce((n, i) => n + i.total, 0),
      8,
    );
  });

  test('IP mode drains the highest, least used interface first and deletes it when empty', () => {
    const t = targets({ warmIpTarget: 1 });
    const sim = newSim();
    runPods(sim, 12, m5large, t);
    assert.deepEqual(perIf(sim), [9, 4]);
    releasePods(sim, 4); // the pods on the secondary interface go
    converge(sim, m5large, t);
    assert.deepEqual(perIf(sim), [9], 'the emptied secondary interface is deleted, the primary stays');
  });

  test('never deletes an interface that still holds a pod', () => {
    const t = targets({ warmEniTarget: 0 });
    const sim = newSim();
    runPods(sim, 19, m5large, t);
    releasePods(sim, 10);
    converge(sim, m5large, t);
    for (const i of sim.ifs) assert.ok(i.total >= i.assigned);
    assert.equal(
      sim.ifs.reduce((n, i) => n + i.assigned, 0),
      9,
    );
  });
});

describe('pool engine: subnets and backoff', () => {
  test('a full subnet is skipped for the next allowed one', () => {
    const subnets: EngineSubnet[] = [
      { id: 'subnet-a', cidr: '10.0.9.0/27', availableIps: 0, backoffUntil: null },
      { id: 'subnet-b', cidr: '10.0.1.0/24', availableIps: 200, backoffUntil: null },
    ];
    const sim = newSim({ primaryIps: 9, subnets });
    assignPods(sim, 9);
    const p = plan(stateOf(sim), m5large, targets(), sim.now);
    assert.deepEqual(p.actions, [{ kind: 'create', subnetId: 'subnet-b', ipCount: 9 }]);
  });

  test('a small subnet gets only what it has left', () => {
    const subnets: EngineSubnet[] = [
      { id: 'subnet-a', cidr: '10.0.9.0/27', availableIps: 5, backoffUntil: null },
    ];
    const sim = newSim({ primaryIps: 9, subnets });
    assignPods(sim, 9);
    const p = plan(stateOf(sim), m5large, targets(), sim.now);
    assert.deepEqual(p.actions, [{ kind: 'create', subnetId: 'subnet-a', ipCount: 4 }]);
  });

  // An Azure node: one NIC of 256 IPs (no NIC can be added), WARM_IP_TARGET=16.
  const azureVm: PoolLimits = {
    instanceType: 'Standard_D4s_v5',
    maxInterfaces: 1,
    ipsPerInterface: 256,
    maxEni: null,
    maxPods: null,
  };

  test('a grow batch is capped at the subnet free addresses (ARM refuses a batch that does not fit)', () => {
    const subnets: EngineSubnet[] = [
      { id: 'subnet-a', cidr: '10.0.9.0/27', availableIps: 3, backoffUntil: null },
    ];
    const sim = newSim({ subnets });
    const p = plan(stateOf(sim), azureVm, targets({ warmIpTarget: 16, minGrowStep: 4 }), sim.now);
    assert.deepEqual(p.actions, [{ kind: 'assign', interfaceId: 'eni-0', count: 3 }]);
    assert.match(p.why, /grow by 3 \(13 more cannot be had\)/);
    // Unknown free count: the full batch.
    const unknown = newSim();
    const q = plan(stateOf(unknown), azureVm, targets({ warmIpTarget: 16, minGrowStep: 4 }), unknown.now);
    assert.deepEqual(q.actions, [{ kind: 'assign', interfaceId: 'eni-0', count: 16 }]);
  });

  test('interfaces in one subnet share its free addresses, and new interfaces get what is left', () => {
    const subnets: EngineSubnet[] = [
      { id: 'subnet-a', cidr: '10.0.9.0/27', availableIps: 6, backoffUntil: null },
    ];
    const sim = newSim({ primaryIps: 5, subnets });
    sim.ifs.push({
      id: 'eni-1',
      deviceIndex: 1,
      subnetId: 'subnet-a',
      usable: true,
      deletable: true,
      total: 5,
      assigned: 5,
      cooling: 0,
      freeIps: [],
    });
    assignPods(sim, 10);
    sim.pending = 20;
    const p = plan(stateOf(sim), m5large, targets({ warmIpTarget: 1 }), sim.now);
    // 4 + 2 fit on the existing ENIs (6 addresses left); nothing is left for a third ENI.
    assert.deepEqual(p.actions, [
      { kind: 'assign', interfaceId: 'eni-0', count: 4 },
      { kind: 'assign', interfaceId: 'eni-1', count: 2 },
    ]);
  });

  test('a subnet with no free address left: no assign, and the reason is subnet-full', () => {
    const subnets: EngineSubnet[] = [
      { id: 'subnet-a', cidr: '10.0.9.0/27', availableIps: 0, backoffUntil: null },
    ];
    const sim = newSim({ primaryIps: 4, subnets });
    assignPods(sim, 4);
    sim.pending = 1;
    const p = plan(stateOf(sim), azureVm, targets({ warmIpTarget: 16 }), sim.now);
    assert.deepEqual(p.actions, []);
    assert.equal(p.noIp?.reason, 'subnet-full');
  });

  test('all subnets full: subnet-full, naming them and POD_SUBNET_IDS', () => {
    const subnets: EngineSubnet[] = [
      { id: 'subnet-123', cidr: '10.0.9.0/27', availableIps: null, backoffUntil: 2_000_000 },
    ];
    const sim = newSim({ primaryIps: 9, subnets });
    assignPods(sim, 9);
    sim.pending = 1;
    const p = plan(stateOf(sim), m5large, targets(), sim.now);
    assert.deepEqual(p.actions, []);
    assert.equal(p.noIp?.reason, 'subnet-full');
    assert.match(
      p.noIp?.message ?? '',
      /subnet subnet-123 \(10\.0\.9\.0\/27\) has no free addresses; add subnets to POD_SUBNET_IDS/,
    );
    // After the backoff the subnet is tried again.
    const later = plan(stateOf(sim), m5large, targets(), 2_000_001);
    assert.equal(later.actions[0]?.kind, 'create');
  });

  test('throttling: no calls until the backoff ends, and the reason says so', () => {
    const sim = newSim();
    sim.pending = 1;
    const s = {
      ...stateOf(sim),
      cloudBackoff: {
        reason: 'throttled' as const,
        message: 'throttled, retrying in 4s',
        until: sim.now + 4000,
      },
    };
    const p = plan(s, m5large, targets(), sim.now);
    assert.deepEqual(p.actions, []);
    assert.equal(p.noIp?.reason, 'throttled');
    const after = plan(s, m5large, targets(), sim.now + 4000);
    assert.ok(after.actions.length > 0, 'calls resume after the backoff');
  });

  test('unusable interfaces (not ours / not a pod subnet) take a slot but get no IPs', () => {
    const sim = newSim();
    sim.ifs.push(offPool('eni-efa', 1, { subnetId: 'subnet-x', deletable: false }));
    sim.pending = 27;
    const p = plan(stateOf(sim), m5large, targets(), sim.now);
    for (const a of p.actions) if (a.kind === 'assign') assert.notEqual(a.interfaceId, 'eni-efa');
    assert.equal(p.actions.filter((a) => a.kind === 'create').length, 1, 'only one slot left');
    assert.equal(p.ceiling, 18);
  });

  test('empty interfaces outside the pod subnets are deleted at once when a grow needs their slot', () => {
    // A pod-subnet change left two of our ENIs in the old subnet (retired: usable false, no pods),
    // and the primary is full: without the delete the node would say instance-limit at 9 pods.
    const sim = newSim({ primaryIps: 9 });
    assignPods(sim, 9);
    for (const d of [1, 2]) sim.ifs.push(offPool(`eni-old${d}`, d));
    sim.pending = 1;
    const p = plan(stateOf(sim), m5large, targets(), sim.now);
    assert.deepEqual(p.actions.map((a) => (a.kind === 'delete' ? a.interfaceId : a.kind)).sort(), [
      'eni-old1',
      'eni-old2',
    ]);
    assert.equal(p.ceiling, 27, 'the dead slots count as room');
    assert.equal(p.noIp?.reason, 'pool-growing');
    assert.match(p.noIp?.message ?? '', /2 empty interface\(s\) outside the pod subnets are being deleted/);
    apply(sim, p);
    const next = plan(stateOf(sim), m5large, targets(), sim.now);
    assert.deepEqual(
      next.actions.map((a) => a.kind),
      ['create', 'create'],
      'the freed slots are used on the next round',
    );
  });

  test('a dead slot is kept while the grow does not need it, and a retired interface with a pod is never deleted', () => {
    const sim = newSim({ primaryIps: 9 });
    assignPods(sim, 1);
    sim.ifs.push(offPool('eni-old', 1, { total: 1, assigned: 1 }));
    sim.pending = 30;
    const busy = plan(stateOf(sim), m5large, targets(), sim.now);
    assert.ok(!busy.actions.some((a) => a.kind === 'delete'), 'its pod keeps the interface');
    assert.equal(busy.actions.filter((a) => a.kind === 'create').length, 1, 'one free slot');
    const empty = newSim({ primaryIps: 9 });
    empty.ifs.push(offPool('eni-old', 1));
    const calm = plan(stateOf(empty), m5large, targets({ shrinkDelayMs: 60_000 }), empty.now);
    assert.ok(
      !calm.actions.some((a) => a.kind === 'delete'),
      'room on a free slot: the dead one waits for the shrink delay',
    );
  });

  test('the why line carries the numbers', () => {
    const sim = newSim();
    const p = plan(stateOf(sim), m5large, targets(), sim.now);
    assert.match(
      p.why,
      /^ENI mode \(WARM_ENI_TARGET=1\): 0 IPs, 0 assigned, 0 cooling, 0 free, 0 waiting; target 9 \(max 27\); grow by 9$/,
    );
  });
});

describe('pool engine: a cordoned node (AWS_MANAGE_ENIS_NON_SCHEDULABLE=false)', () => {
  const limits: PoolLimits = {
    instanceType: 'm5.large',
    maxInterfaces: 3,
    ipsPerInterface: 10,
    maxEni: null,
    maxPods: null,
  };
  const targets: PoolTargets = {
    warmEniTarget: 1,
    warmIpTarget: null,
    minimumIpTarget: null,
    minGrowStep: 1,
    shrinkDelayMs: 0,
  };
  const iface = (id: string, deviceIndex: number, assigned: number, free: number): EngineInterface => ({
    id,
    deviceIndex,
    subnetId: 'subnet-1',
    usable: true,
    deletable: deviceIndex !== 0,
    total: assigned + free,
    assigned,
    cooling: 0,
    freeIps: Array.from({ length: free }, (_, n) => `${id}-ip${n}`),
  });
  const state = (interfaces: EngineInterface[], cordoned: boolean): PoolState => ({
    interfaces,
    pending: 0,
    excessSince: null,
    subnets: [{ id: 'subnet-1', availableIps: null, backoffUntil: null }],
    cloudBackoff: null,
    cordoned,
  });

  test('no new interface: a full node answers node-cordoned; uncordoned it creates one', () => {
    const full = [iface('eni-0', 0, 9, 0)];
    const p = plan(state(full, true), limits, targets, 0);
    assert.deepEqual(p.actions, []);
    assert.equal(p.noIp?.reason, 'node-cordoned');
    assert.match(p.noIp?.message ?? '', /unschedulable.*AWS_MANAGE_ENIS_NON_SCHEDULABLE/);
    assert.deepEqual(
      plan(state(full, false), limits, targets, 0).actions.map((a) => a.kind),
      ['create'],
    );
  });

  test('existing interfaces are still filled', () => {
    const p = plan(state([iface('eni-0', 0, 3, 0)], true), limits, targets, 0);
    assert.deepEqual(p.actions, [{ kind: 'assign', interfaceId: 'eni-0', count: 6 }]);
  });

  test('nothing is given back while it drains; uncordoned the empty interface goes', () => {
    const drained = [iface('eni-0', 0, 1, 8), iface('eni-1', 1, 0, 9), iface('eni-2', 2, 0, 9)];
    const p = plan(state(drained, true), limits, targets, 0);
    assert.deepEqual(p.actions, []);
    assert.match(p.why, /cordoned\): not shrinking/);
    assert.ok(plan(state(drained, false), limits, targets, 0).actions.some((a) => a.kind === 'delete'));
  });
});
