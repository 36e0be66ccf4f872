// The shim's plan executor (src/cni/shim/apply.go) on real network namespaces: the plan the
// daemon builds for a pod, applied by dist/vpc-cni with netlink, must leave exactly the kernel
// state that `ip -batch` makes from the same ops (the daemon-side path, proven end to end by
// local-vpc.test.ts), and a failing op must stop the plan and be reported by name. A DEL's plan
// must leave nothing of the pod behind, succeed again when run twice or after the pod netns is
// gone, and leave the IP's rules alone once the IP routes to another veth. The DEL plan that leaves
// the veth (version 3) must leave no rule or route of the pod, report the veth's real ifindex, and
// the veth must go with the pod netns. The plan comes from a stand-in socket here so each case can
// hand the shim the plan it needs.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ipArgv, type NetPlan } from '../../src/cni/wiring/net-ops.ts';
import { planVethAdd, vethDelPlan, vethNetPlan } from '../../src/cni/wiring/veth.ts';
import { execPlugin } from '../helpers/cni-runtime.ts';
import {
  Cleanup,
  createNetns,
  ip,
  ipBatch,
  ipJson,
  requireNetnsPrivileges,
  runPrefix,
} from '../helpers/netns.ts';
import { ensurePluginBuilt } from '../helpers/plugin-binary.ts';
import { standIn } from '../helpers/stand-in-daemon.ts';

const TICKET = '0b7e4f4c-3f7e-4e56-a0a4-4bb1c43d1f0e';
const spec = { containerId: 'shimnetlink0', ifName: 'eth0', ip: '10.77.0.9', routeTable: 3, mtu: 1400 };

type Row = Record<string, unknown>;
const pick = (rows: Row[], keys: string[]) =>
  rows.map((r) => Object.fromEntries(keys.filter((k) => r[k] !== undefined).map((k) => [k, r[k]])));

/** What a pod's wiring left in the kernel, without what differs between namespaces (ifindex, netnsid). */
async function observe(node: string, pod: string, hostName: string) {
  const links = async (ns: string, dev: string) =>
    pick(await ipJson<Row>(ns, 'link', 'show', 'dev', dev), ['ifname', 'address', 'mtu', 'flags']).map(
      (l): Row => ({ ...l, flags: (l.flags as string[]).filter((f) => f !== 'LOWER_UP' && f !== 'M-DOWN') }),
    );
  const addrs = (await ipJson<{ addr_info: Row[] }>(pod, 'addr', 'show', 'dev', spec.ifName)).flatMap((a) =>
    pick(a.addr_info, ['family', 'local', 'prefixlen', 'scope']),
  );
  const routeKeys = ['dst', 'gateway', 'dev', 'scope', 'protocol', 'table', 'flags'];
  const ruleKeys = ['priority', 'src', 'srclen', 'dst', 'dstlen', 'table', 'protocol'];
  return {
    hostLink: await links(node, hostName),
    hostRoutes: pick(await ipJson<Row>(node, 'route', 'show', 'table', 'all', 'dev', hostName), routeKeys),
    rules: pick(await ipJson<Row>(node, 'rule', 'show'), ruleKeys).filter((r) =>
      [512, 1536].includes(r.priority as number),
    ),
    podLink: await links(pod, spec.ifName),
    podAddrs: addrs,
    podRoutes: pick(await ipJson<Row>(pod, 'route', 'show', 'table', 'all'), routeKeys).filter(
      (r) => r.table !== 'local',
    ),
    podNeigh: pick(await ipJson<Row>(pod, 'neigh', 'show', 'dev', spec.ifName), ['dst', 'lladdr', 'state']),
  };
}

describe('shim plan executor (netlink) on real namespaces', { timeout: 120_000 }, () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  let bin: string;
  let dir: string;
  before(async () => {
    requireNetnsPrivileges(['ip']);
    bin = await ensurePluginBuilt();
    dir = await mkdtemp(join(tmpdir(), 'shim-netlink-'));
  });
  after(async () => {
    const errors = await cleanup.run();
    await rm(dir, { recursive: true, force: true });
    assert.deepEqual(errors, []);
  });

  /** Runs an ADD (or DEL) through the shim in `node`; the stand-in hands it `plan`, then a final answer. */
  async function shimApplies(
    node: string,
    podPath: string,
    plan: NetPlan,
    sock: string,
    command: 'ADD' | 'DEL' = 'ADD',
  ) {
    const final = { stdout: '{"cniVersion":"1.0.0"}\n', exitCode: 0 };
    const d = await standIn(sock, (_body, url) => ({
      status: 200,
      body: JSON.stringify(url === '/v1/cni' ? { apply: plan, ticket: TICKET } : final),
    }));
    try {
      const o = await execPlugin(
        bin,
        { command, containerId: spec.containerId, netns: podPath, ifName: spec.ifName },
        { cniVersion: '1.0.0', name: 'vpc', type: 'vpc-cni', socketPath: sock },
        node,
      );
      const reports = d.seen.filter((s) => s.url === '/v1/cni/applied');
      assert.equal(reports.length, 1, JSON.stringify(d.seen));
      assert.equal(
        (JSON.parse(d.seen[0]!.body) as { apply?: number }).apply,
        3,
        'the shim says it applies plans, DEL deletions and routeDel included (version 3)',
      );
      const report = JSON.parse(reports[0]!.body) as {
        ticket: string;
        error: string | null;
        links?: Record<string, number>;
      };
      return { o, report };
    } finally {
      await d.close();
    }
  }

  test("the shim's netlink wiring equals what ip -batch makes from the same plan", async () => {
    const [nodeA, podA, nodeB, podB] = ['na', 'pa', 'nb', 'pb'].map((n) => `${prefix}-${n}`) as [
      string,
      string,
      string,
      string,
    ];
    for (const ns of [nodeA, podA, nodeB, podB]) await createNetns(ns, cleanup);
    const podAPath = `/run/netns/${podA}`;
    const podBPath = `/run/netns/${podB}`;
    const a = planVethAdd({ ...spec, netns: podAPath });
    const { o, report } = await shimApplies(nodeA, podAPath, vethNetPlan(a, podAPath), join(dir, 'a.sock'));
    assert.deepEqual(report, { ticket: TICKET, error: null, links: {} });
    assert.equal(o.code, 0, JSON.stringify(o.out));
    assert.deepEqual(o.out, { cniVersion: '1.0.0' }, 'the final answer is relayed');

    const b = vethNetPlan(planVethAdd({ ...spec, netns: podBPath }), podBPath);
    await ipBatch(
      nodeB,
      b.steps[0]!.ops.map((op) => ipArgv(op).join(' ')),
    );
    await ipBatch(
      podB,
      b.steps[1]!.ops.map((op) => ipArgv(op).join(' ')),
    );

    const byShim = await observe(nodeA, podA, a.hostName);
    const byIp = await observe(nodeB, podB, a.hostName);
    assert.deepEqual(byShim, byIp);
    // And it is the pod's wiring, not two equally empty namespaces.
    assert.equal(byShim.hostLink[0]?.address, a.hostMac);
    assert.equal(byShim.hostLink[0]?.mtu, 1400);
    assert.deepEqual(
      byShim.podAddrs.filter((x) => x.family === 'inet'),
      [{ family: 'inet', local: spec.ip, prefixlen: 32, scope: 'global' }],
    );
    assert.ok(byShim.podRoutes.some((r) => r.dst === 'default' && r.gateway === '169.254.1.1'));
    assert.deepEqual(byShim.podNeigh, [{ dst: '169.254.1.1', lladdr: a.hostMac, state: ['PERMANENT'] }]);
    assert.equal(byShim.rules.length, 2, 'to-pod and from-pod rules');
    assert.ok(byShim.hostRoutes.some((r) => r.dst === spec.ip && r.protocol === '118'));
  });

  test('a failing op stops the plan: the ops before it applied, none after, the error names it', async () => {
    const [node, pod] = ['nf', 'pf'].map((n) => `${prefix}-${n}`) as [string, string];
    for (const ns of [node, pod]) await createNetns(ns, cleanup);
    const podPath = `/run/netns/${pod}`;
    const p = planVethAdd({ ...spec, netns: podPath });
    const plan = vethNetPlan(p, podPath);
    // The pod side's second op names a device that does not exist.
    plan.steps[1]!.ops.splice(1, 0, { op: 'up', dev: 'nosuchdev0' });
    const { o, report } = await shimApplies(node, podPath, plan, join(dir, 'f.sock'));
    assert.match(String(report.error), /^step 1 op 1 up .*nosuchdev0/);
    assert.equal(o.code, 0, "the final answer is the daemon's to give (it rolls back), relayed as is");
    assert.equal((await ipJson(node, 'link', 'show', 'dev', p.hostName)).length, 1, 'step 0 applied');
    const podAddrs = await ipJson<{ addr_info: Row[] }>(pod, 'addr', 'show', 'dev', spec.ifName);
    assert.equal(podAddrs[0]?.addr_info.length, 1, 'op 0 (the address) applied');
    const routes = await ipJson<Row>(pod, 'route', 'show');
    assert.ok(!routes.some((r) => r.dst === 'default'), 'nothing after the failing op');
  });

  /** The node's state that names the pod: its host veth, routes through it, rules of its IP. */
  async function podLeftovers(node: string, hostName: string) {
    const links = await ipJson<Row>(node, 'link', 'show', 'type', 'veth');
    const routes = await ipJson<Row>(node, 'route', 'show', 'table', 'all');
    const rules = await ipJson<Row>(node, 'rule', 'show');
    return {
      links: links.filter((l) => l.ifname === hostName).map((l) => l.ifname),
      routes: routes.filter((r) => r.dst === spec.ip).map((r) => `${r.dst} dev ${r.dev}`),
      rules: rules.filter((r) => r.src === spec.ip || r.dst === spec.ip).map((r) => r.priority),
    };
  }

  test('DEL: the plan leaves nothing of the pod; run again, or after the pod netns is gone, it succeeds', async () => {
    const [node, pod] = ['nd', 'pd'].map((n) => `${prefix}-${n}`) as [string, string];
    for (const ns of [node, pod]) await createNetns(ns, cleanup);
    const podPath = `/run/netns/${pod}`;
    const p = planVethAdd({ ...spec, netns: podPath });
    const add = await shimApplies(node, podPath, vethNetPlan(p, podPath), join(dir, 'da.sock'));
    assert.equal(add.report.error, null);
    const wired = await podLeftovers(node, p.hostName);
    assert.deepEqual(wired, {
      links: [p.hostName],
      routes: [`${spec.ip} dev ${p.hostName}`],
      rules: [512, 1536],
    });

    const del = vethDelPlan(p.hostName, spec.ip);
    const first = await shimApplies(node, podPath, del, join(dir, 'd1.sock'), 'DEL');
    assert.deepEqual(first.report, { ticket: TICKET, error: null, links: {} });
    assert.deepEqual(await podLeftovers(node, p.hostName), { links: [], routes: [], rules: [] });
    assert.deepEqual(
      await ipJson(pod, 'link', 'show', 'dev', spec.ifName).catch(() => []),
      [],
      'the pod end went with the host end',
    );
    // The runtime may call DEL again (and must get success): everything is gone already.
    const again = await shimApplies(node, podPath, del, join(dir, 'd2.sock'), 'DEL');
    assert.equal(again.report.error, null);
    // The pod netns deleted before the DEL: the plan touches only the node's side.
    await ip(null, 'netns', 'del', pod);
    const gone = await shimApplies(node, podPath, del, join(dir, 'd3.sock'), 'DEL');
    assert.equal(gone.report.error, null);
  });

  test('DEL leaving the veth: no rule or route of the pod, the real ifindex reported, the veth gone with the netns', async () => {
    const [node, pod] = ['nl', 'pl'].map((n) => `${prefix}-${n}`) as [string, string];
    for (const ns of [node, pod]) await createNetns(ns, cleanup);
    const podPath = `/run/netns/${pod}`;
    const p = planVethAdd({ ...spec, netns: podPath });
    const add = await shimApplies(node, podPath, vethNetPlan(p, podPath), join(dir, 'la.sock'));
    assert.equal(add.report.error, null);
    const [link] = await ipJson<{ ifindex: number }>(node, 'link', 'show', 'dev', p.hostName);
    const del = vethDelPlan(p.hostName, spec.ip, true);
    const first = await shimApplies(node, podPath, del, join(dir, 'l1.sock'), 'DEL');
    assert.deepEqual(first.report, { ticket: TICKET, error: null, links: { [p.hostName]: link!.ifindex } });
    assert.deepEqual(await podLeftovers(node, p.hostName), { links: [p.hostName], routes: [], rules: [] });
    // Again (the runtime retries a DEL): nothing to remove, still a success.
    const again = await shimApplies(node, podPath, del, join(dir, 'l2.sock'), 'DEL');
    assert.deepEqual(again.report, { ticket: TICKET, error: null, links: { [p.hostName]: link!.ifindex } });
    // What the runtime does after DEL: the netns goes, and the kernel takes the pair with it.
    await ip(null, 'netns', 'del', pod);
    for (let i = 0; ; i++) {
      if ((await podLeftovers(node, p.hostName)).links.length === 0) break;
      assert.ok(i < 100, 'the veth is gone within 10 s of the netns deletion');
      await new Promise((r) => setTimeout(r, 100));
    }
    const gone = await shimApplies(node, podPath, del, join(dir, 'l3.sock'), 'DEL');
    assert.deepEqual(gone.report, { ticket: TICKET, error: null, links: {} }, 'no veth: no link reported');
  });

  test("DEL: once the IP routes to another pod's veth, its rules are that pod's and stay", async () => {
    const [node, pod, other] = ['ng', 'pg', 'og'].map((n) => `${prefix}-${n}`) as [string, string, string];
    for (const ns of [node, pod, other]) await createNetns(ns, cleanup);
    const podPath = `/run/netns/${pod}`;
    const p = planVethAdd({ ...spec, netns: podPath });
    // The same IP wired to another attachment (a stale DEL after the IP moved on) ...
    const q = planVethAdd({ ...spec, containerId: 'shimnetlink1', netns: `/run/netns/${other}` });
    await ipBatch(
      node,
      [...q.linkLines, ...q.hostLines].map((l) => l.join(' ')),
    );
    // ... and our veth still there, without its route (the other pod's `replace` took it).
    await ipBatch(
      node,
      p.linkLines.map((l) => l.join(' ')),
    );
    const r = await shimApplies(node, podPath, vethDelPlan(p.hostName, spec.ip), join(dir, 'g.sock'), 'DEL');
    assert.equal(r.report.error, null);
    assert.deepEqual(await podLeftovers(node, p.hostName), {
      links: [],
      routes: [`${spec.ip} dev ${q.hostName}`],
      rules: [512, 1536],
    });
    assert.equal(
      (await ipJson(node, 'link', 'show', 'dev', q.hostName)).length,
      1,
      "the other pod's veth stays",
    );
  });

  test('an unknown op or a missing netns is an error, not a crash', async () => {
    const [node] = ['nu'].map((n) => `${prefix}-${n}`) as [string];
    await createNetns(node, cleanup);
    const bad = { steps: [{ ops: [{ op: 'tunnel', dev: 'x' }] }] } as unknown as NetPlan;
    const r1 = await shimApplies(node, '/proc/self/ns/net', bad, join(dir, 'u.sock'));
    assert.match(String(r1.report.error), /unknown op "tunnel"/);
    const gone = {
      steps: [{ netns: `/run/netns/${prefix}-none`, ops: [{ op: 'up', dev: 'lo' }] }],
    } as NetPlan;
    const r2 = await shimApplies(node, '/proc/self/ns/net', gone, join(dir, 'g.sock'));
    assert.match(String(r2.report.error), /open netns .*-none/);
  });
});
