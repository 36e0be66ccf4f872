// Issue 10 ("never take a running pod's address") on the shim's plan path, end to end on the local
// VPC (LocalStack + network namespaces + the real dist/vpc-cni and vpc-ipamd): an ADD whose shim
// was kill -9'd after it took the wiring plan never reports back. The runtime then DELs the
// attachment (or retries the ADD); with IP_COOLDOWN_PERIOD=0 the IP goes straight to the next pod.
// The stale ADD must not roll back later: its rollback removes the host veth named after the
// attachment and the policy rules keyed by the IP, which would now be another pod's.
// The killed shim is played by hand: POST /v1/cni with apply:1 on the daemon's socket, and no
// POST /v1/cni/applied ever (a real shim killed at that moment sends exactly this and nothing
// more). The report timeout is shortened (VPC_IPAM_CNI_APPLY_TIMEOUT=5) and each case waits past it.
// Needs: root, iproute2, iptables, nsenter, LocalStack on VPC_IPAM_EC2_ENDPOINT. Unit level:
// test/unit/ipam-daemon/cni-host.test.ts (session cancel), test/unit/cni/plugin-add-rollback.test.ts.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hostVethName, PRIO_TO_POD } from '../../src/netutils/names.ts';
import { addLikeKubelet, execPlugin, vpcCniConfig } from '../helpers/cni-runtime.ts';
import {
  daemonCall,
  daemonGet,
  INTERNET_SERVER,
  LocalVpc,
  prepareLocalVpcSuite,
  type VpcNode,
} from '../helpers/local-vpc.ts';
import { uniqueClusterName } from '../helpers/localstack.ts';
import { Cleanup, createNetns, ipJson, runPrefix } from '../helpers/netns.ts';
import { probeEventually, startProbeServer } from '../helpers/probe.ts';
import { scaled } from '../helpers/slowdown.ts';

const PORT = 7000;
/**
 * VPC_IPAM_CNI_APPLY_TIMEOUT in the daemon, and how long each case waits after the stale ADD. The
 * stale ADD must still be waiting when the case's next command (a retry, a DEL, a kill) arrives, or
 * it has already rolled back and the case tests nothing: 5 s covers a plugin start on a loaded node.
 */
const REPORT_TIMEOUT_S = Math.ceil(scaled(5_000) / 1000);
const PAST_TIMEOUT_MS = REPORT_TIMEOUT_S * 1000 + 2000;

interface Pod {
  id: string;
  ns: string;
  nsPath: string;
  ip: string;
  result: Record<string, unknown>;
}

describe('an ADD whose shim was killed never rolls back over a later command (local VPC)', {
  timeout: scaled(600_000),
}, () => {
  const cleanup = new Cleanup();
  const prefix = runPrefix();
  const clusterName = uniqueClusterName('shim-kill');
  const dir = mkdtempSync(join(tmpdir(), 'vpc-shim-kill-'));
  let plugin: string;
  let vpc: LocalVpc;
  let node: VpcNode;
  let seq = 0;

  const conf = (extra: Record<string, unknown> = {}) => vpcCniConfig(node, extra);

  async function sandbox(): Promise<{ id: string; ns: string; nsPath: string }> {
    const n = ++seq;
    const ns = `${prefix}-p${n}`;
    return { id: `${prefix}pod${n}`, ns, nsPath: await createNetns(ns, cleanup) };
  }

  async function add(s: { id: string; ns: string; nsPath: string }): Promise<Pod> {
    const o = await addLikeKubelet(
      plugin,
      { containerId: s.id, netns: s.nsPath, podName: s.id },
      conf(),
      node.ns,
      {
        maxAttempts: 11,
      },
    );
    assert.equal(o.code, 0, `ADD ${s.id}: ${JSON.stringify(o.out)} ${o.stderr}`);
    return { ...s, ip: (o.out!.ips as { address: string }[])[0]!.address.split('/')[0]!, result: o.out! };
  }

  /** An ADD through a shim that takes the plan and dies: the IP the plan wires, and its ticket. */
  async function addShimKilled(s: { id: string; nsPath: string }): Promise<{ ip: string; ticket: string }> {
    const r = await daemonCall(
      node.socketPath,
      'POST',
      '/v1/cni',
      {
        env: {
          CNI_COMMAND: 'ADD',
          CNI_CONTAINERID: s.id,
          CNI_NETNS: s.nsPath,
          CNI_IFNAME: 'eth0',
          CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${s.id}`,
        },
        stdin: JSON.stringify(conf()),
        apply: 1,
      },
      scaled(30_000),
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const body = r.body as { apply?: unknown; ticket?: string };
    assert.ok(body.apply && body.ticket, `the daemon handed out a plan: ${JSON.stringify(r.body)}`);
    const ip = (await held(s.id)) ?? assert.fail(`${s.id} holds no IP after its plan was handed out`);
    return { ip, ticket: body.ticket };
  }

  async function held(id: string): Promise<string | null> {
    const r = await daemonGet(node.socketPath, `/v1/allocation?containerId=${id}&ifName=eth0`);
    return r.status === 200 ? (r.body as { ip: string }).ip : null;
  }

  /** An allocation held on the daemon alone (no pod wired): it keeps an IP out of the way. */
  async function hold(id: string): Promise<{ ip: string; deviceIndex: number }> {
    const r = await daemonCall(
      node.socketPath,
      'POST',
      '/v1/allocate',
      { containerId: id, ifName: 'eth0', podNamespace: 'default', podName: id },
      scaled(30_000),
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as { ip: string; deviceIndex: number };
  }

  async function unhold(id: string): Promise<void> {
    const r = await daemonCall(node.socketPath, 'POST', '/v1/release', { containerId: id, ifName: 'eth0' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }

  /**
   * Leaves exactly one free IP on the primary interface: the lowest device index is handed out
   * first, so the next pods get that IP, however many the pool holds on other interfaces.
   */
  async function oneFreeOnPrimary(): Promise<string[]> {
    const fillers: string[] = [];
    for (let n = 0; ; n++) {
      assert.ok(n < 40, 'the primary interface should fill up');
      const id = `${prefix}fill${n}`;
      if ((await hold(id)).deviceIndex !== 0) {
        await unhold(id);
        break;
      }
      fillers.push(id);
    }
    await unhold(fillers.pop() ?? assert.fail('no IP on the primary interface'));
    return fillers;
  }

  async function del(id: string, nsPath: string, result?: Record<string, unknown>): Promise<void> {
    const o = await execPlugin(
      plugin,
      { command: 'DEL', containerId: id, netns: nsPath, ifName: 'eth0' },
      conf(result ? { prevResult: result } : {}),
      node.ns,
    );
    assert.equal(o.code, 0, `DEL ${id}: ${JSON.stringify(o.out)} ${o.stderr}`);
  }

  /** What the node holds for a pod's IP: its host veth, the /32 route to it, the to-pod rule. */
  async function hostState(p: Pod) {
    const veth = hostVethName(p.id, 'eth0');
    const links = await ipJson<{ ifname: string }>(node.ns, 'link', 'show', 'dev', veth).catch(() => []);
    const routes = await ipJson<{ dev?: string }>(node.ns, 'route', 'show', 'table', 'main', `${p.ip}/32`);
    const rules = await ipJson<{ dst?: string; priority: number }>(node.ns, 'rule', 'show');
    return {
      veth: links.length === 1,
      routedTo: routes.map((r) => r.dev),
      toPodRules: rules.filter((r) => r.priority === PRIO_TO_POD && r.dst === p.ip).length,
      heldBy: (await held(p.id)) === p.ip,
    };
  }

  /** The pod is fully wired and working: host side intact, and it reaches the internet. */
  async function assertWired(p: Pod): Promise<void> {
    assert.deepEqual(await hostState(p), {
      veth: true,
      routedTo: [hostVethName(p.id, 'eth0')],
      toPodRules: 1,
      heldBy: true,
    });
    assert.equal(
      await probeEventually(p.ns, INTERNET_SERVER, PORT),
      node.instance.privateIp,
      `${p.id} reaches out`,
    );
  }

  before(async () => {
    const prepared = await prepareLocalVpcSuite(clusterName, dir, cleanup);
    plugin = prepared.plugin;
    const seed = prepared.seed;
    const small = seed.instances.find((i) => i.type === 'm5.large');
    assert.ok(small, 'seed has an m5.large');
    vpc = new LocalVpc(seed, prefix, dir, cleanup);
    await vpc.build();
    node = await vpc.addNode(small);
    vpc.startSyncLoop(300);
    await vpc.startDaemon(node, {
      IP_COOLDOWN_PERIOD: '0',
      VPC_IPAM_CNI_APPLY_TIMEOUT: String(REPORT_TIMEOUT_S),
      VPC_IPAM_ALLOCATE_WAIT: '20',
    });
    const s = await startProbeServer(vpc.inet, PORT);
    cleanup.add('probe server', () => s.stop());
  });

  after(async () => {
    const errors = await cleanup.run();
    assert.deepEqual(errors, []);
  });

  test("DEL after the killed ADD, the IP goes to pod B at once: B's route, rule and traffic survive", async () => {
    const fillers = await oneFreeOnPrimary();
    const a = await sandbox();
    const { ip } = await addShimKilled(a);
    const started = performance.now();
    await del(a.id, a.nsPath); // the runtime's DEL after the failed ADD (no prevResult: none came)
    assert.ok(performance.now() - started < scaled(15_000), 'the DEL did not wait for the stale ADD');
    assert.equal(await held(a.id), null, 'the DEL released the IP');
    const b = await add(await sandbox());
    assert.equal(b.ip, ip, 'precondition: B got the IP the killed ADD had (cooldown 0, the only one free)');
    await new Promise((r) => setTimeout(r, PAST_TIMEOUT_MS));
    await assertWired(b);
    await del(b.id, b.nsPath, b.result);
    for (const f of fillers) await unhold(f);
  });

  test('a retried ADD of the same attachment keeps its veth, its rule and its IP', async () => {
    const c = await sandbox();
    const { ip } = await addShimKilled(c);
    const retried = await add(c); // the runtime retries the same container id + ifname
    assert.equal(retried.ip, ip, 'the retry is handed the attachment it already holds');
    await new Promise((r) => setTimeout(r, PAST_TIMEOUT_MS));
    await assertWired(retried);
    await del(retried.id, retried.nsPath, retried.result);
  });

  test('the daemon is kill -9ed while the ADD waits: the new one refuses the ticket, and no rollback follows', async () => {
    // The open session dies with the process (no timer survives it); this guards that it stays so.
    const fillers = await oneFreeOnPrimary();
    const a = await sandbox();
    const { ip, ticket } = await addShimKilled(a);
    const old = node.daemon ?? assert.fail('no daemon');
    const exited = once(old, 'exit');
    old.kill('SIGKILL');
    await exited;
    await vpc.respawnDaemon(node);
    const late = await daemonCall(node.socketPath, 'POST', '/v1/cni/applied', { ticket, error: null });
    assert.equal(late.status, 400, 'a report to the restarted daemon is refused (the shim answers 11)');
    assert.equal(await held(a.id), ip, "the checkpoint kept the allocation for the runtime's DEL");
    await del(a.id, a.nsPath);
    const b = await add(await sandbox());
    assert.equal(b.ip, ip, 'precondition: B got the IP the interrupted ADD had');
    await new Promise((r) => setTimeout(r, PAST_TIMEOUT_MS));
    await assertWired(b);
    await del(b.id, b.nsPath, b.result);
    for (const f of fillers) await unhold(f);
  });
});
