// vpc-ipam as users run it: the cluster test bed (cluster/up.sh) — real kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet, kube-proxy and containerd, the chart installed
// with `helm install` and user values only — driven with the real kubectl. Nothing here is a fake:
// EC2 is LocalStack (moto) and IMDS is the project's IMDSv2 server reading LocalStack live.
//
// The scenarios run in order on one test bed; the last one terminates the m5.large's instance, so
// the suite takes the test bed down at the end (cluster/down.sh). Needs root; fails loudly when the
// test bed cannot come up.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '../../cluster/proc.ts';
import {
  helm,
  NAMESPACE,
  RELEASE,
  ROOT,
  type TestbedNode,
  type TestbedState,
} from '../../cluster/testbed.ts';
import {
  controlNode,
  daemonPod,
  daemonPool,
  downTestbed,
  enisExist,
  instanceEnis,
  kubectlFor,
  type PodView,
  pods,
  poolIps,
  socketPool,
  terminateLikeEc2,
  testbed,
} from '../helpers/cluster.ts';
import { requireNetnsPrivileges } from '../helpers/netns.ts';
import { type ProbeServer, startProbeServer } from '../helpers/probe.ts';

const NS = 'scenarios';
const WEB = 'app=web';
const VICTIM = 'app=victim';

function deployment(
  name: string,
  replicas: number,
  image: string,
  extraSpec: Record<string, unknown> = {},
): string {
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: NS },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: 'httpd',
              image,
              imagePullPolicy: 'IfNotPresent',
              command: ['httpd', '-f', '-p', '8080', '-h', '/www'],
            },
          ],
          ...extraSpec,
        },
      },
    },
  });
}

describe('cluster: vpc-ipam Helm-installed on real kubelet + containerd', { timeout: 30 * 60_000 }, () => {
  let state: TestbedState;
  let k: ReturnType<typeof kubectlFor>;
  let small: TestbedNode; // m5.large
  let large: TestbedNode; // m5.4xlarge
  let inetProbe: ProbeServer | undefined;

  before(async () => {
    requireNetnsPrivileges();
    state = await testbed();
    k = kubectlFor(state);
    small = state.nodes.find((n) => n.instanceType === 'm5.large')!;
    large = state.nodes.find((n) => n.instanceType === 'm5.4xlarge')!;
    assert.ok(small && large, 'the test bed has an m5.large and an m5.4xlarge');
    await k.kubectl(['create', 'namespace', NS]).catch(() => {});
  });

  after(async () => {
    inetProbe?.stop();
    await downTestbed();
  });

  const webPods = async (): Promise<PodView[]> => pods(state, NS, WEB);
  const waitRunning = (selector: string, n: number, withinMs = 240_000) =>
    waitFor(
      `${n} pods ${selector} Running and Ready`,
      async () => {
        const ps = await pods(state, NS, selector);
        return ps.length === n && ps.every((p) => p.ready && p.ip) ? ps : undefined;
      },
      withinMs,
      1000,
    );
  const nodeOf = (name: string) => state.nodes.find((n) => n.name === name)!;

  test('both nodes Ready, the daemon Running on each under the chart ServiceAccount, the janitor holds its Lease', async () => {
    await waitFor(
      'two Ready nodes',
      async () => {
        const nodes = await k.json<{
          items: { status: { conditions: { type: string; status: string }[] } }[];
        }>(['get', 'nodes']);
        return nodes.items.length === 2 &&
          nodes.items.every((n) => n.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True'))
          ? true
          : undefined;
      },
      180_000,
      1000,
    );
    const ds = await waitFor(
      'DaemonSet ready on both nodes',
      async () => {
        const d = await k.json<{
          status: { numberReady: number };
          spec: { template: { spec: { serviceAccountName: string } } };
        }>(['-n', NAMESPACE, 'get', 'daemonset', `${RELEASE}-daemon`]);
        return d.status.numberReady === 2 ? d : undefined;
      },
      180_000,
      1000,
    );
    assert.equal(ds.spec.template.spec.serviceAccountName, `${RELEASE}-daemon`);
    const lease = await waitFor(
      'janitor Lease held',
      async () => {
        const l = await k.json<{ spec: { holderIdentity?: string } }>([
          '-n',
          NAMESPACE,
          'get',
          'lease',
          'vpc-ipam-janitor',
        ]);
        return l.spec.holderIdentity ? l : undefined;
      },
      180_000,
      2000,
    );
    assert.match(lease.spec.holderIdentity!, new RegExp(`^${RELEASE}-janitor-`));
  });

  test('node readiness: NotReady until the daemon is ready; no pod sandbox attempted before', async () => {
    // before `helm install`, kubelet had no CNI config: every node NotReady
    for (const n of state.beforeInstall) {
      assert.equal(n.ready, false, `${n.name} NotReady before the chart`);
      assert.match(n.message, /network|cni/i);
    }
    const { json, kubectl } = k;
    for (const n of state.nodes) {
      // the daemon wrote the conflist once ready (its log line, with pino's epoch-ms time) ...
      const pod = await daemonPod(state, n.name);
      const lines = (await kubectl(['-n', NAMESPACE, 'logs', pod, '-c', 'ipamd'])).split('\n');
      const written = lines
        .map((l) => {
          try {
            return JSON.parse(l) as { msg?: string; time?: number };
          } catch {
            return {};
          }
        })
        .find((l) => l.msg?.startsWith('CNI conflist installed'));
      assert.ok(written?.time, `${n.name}: the daemon logged installing the conflist`);
      // ... and the node turned Ready only after that (condition times have 1 s resolution)
      const node = await json<{
        status: { conditions: { type: string; status: string; lastTransitionTime: string }[] };
      }>(['get', 'node', n.name]);
      const ready = node.status.conditions.find((c) => c.type === 'Ready')!;
      assert.equal(ready.status, 'True');
      assert.ok(
        Date.parse(ready.lastTransitionTime) >= Math.floor(written.time / 1000) * 1000,
        `${n.name} Ready at ${ready.lastTransitionTime}, conflist at ${new Date(written.time).toISOString()}`,
      );
    }
    // no sandbox was tried (and failed) on a node whose daemon was not ready yet
    const failed = await json<{ items: { message: string }[] }>([
      '-n',
      NAMESPACE,
      'get',
      'events',
      '--field-selector',
      'reason=FailedCreatePodSandBox',
    ]);
    assert.deepEqual(
      failed.items.map((e) => e.message),
      [],
    );
  });

  test('kubectl get nodeipamstatuses shows each node pool (written by the daemon through real RBAC and CRD validation)', async () => {
    const list = await waitFor(
      'a NodeIPAMStatus per node with IPs',
      async () => {
        const l = await k.json<{
          items: { metadata: { name: string }; status?: { maxPods: number; total: number } }[];
        }>(['get', 'nodeipamstatuses']);
        return l.items.length === 2 && l.items.every((i) => (i.status?.total ?? 0) > 0) ? l : undefined;
      },
      120_000,
      2000,
    );
    const byName = new Map(list.items.map((i) => [i.metadata.name, i.status!]));
    assert.equal(byName.get(small.name)?.maxPods, 29);
    assert.equal(byName.get(large.name)?.maxPods, 234);
    const table = await k.kubectl(['get', 'nis']);
    assert.match(table, /MAX-PODS\s+ASSIGNED\s+FREE\s+INTERFACES/);
    for (const n of state.nodes) assert.match(table, new RegExp(n.name.replaceAll('.', '\\.')));
  });

  test('a Deployment scaled to 12: every pod Running with an address LocalStack shows on its node ENI; cross-node traffic keeps pod IPs; internet traffic is SNATed', async () => {
    const image = state.images.busybox.ref;
    await k.kubectl(
      ['apply', '-f', '-'],
      deployment('web', 12, image, {
        topologySpreadConstraints: [
          {
            maxSkew: 1,
            topologyKey: 'kubernetes.io/hostname',
            whenUnsatisfiable: 'DoNotSchedule',
            labelSelector: { matchLabels: { app: 'web' } },
          },
        ],
      }),
    );
    const ps = await waitRunning(WEB, 12);
    assert.equal(new Set(ps.map((p) => p.ip)).size, 12, 'twelve distinct pod IPs');
    for (const n of state.nodes) {
      const onEnis = (await instanceEnis(state, n.instanceId)).flatMap((e) => e.secondaries);
      for (const p of ps.filter((x) => x.node === n.name))
        assert.ok(
          onEnis.includes(p.ip),
          `${p.name} ${p.ip} is a secondary IP of ${n.name}'s ENIs in LocalStack`,
        );
    }
    const a = ps.find((p) => p.node === small.name)!;
    const b = ps.find((p) => p.node === large.name)!;
    assert.ok(a && b, 'pods on both nodes');
    // busybox httpd's CGI answers with the address the connection came from (busybox-static's wget
    // segfaults here, so a plain HTTP/1.0 request through nc)
    const whoami = async (from: PodView, to: PodView) => {
      const request = `printf 'GET /cgi-bin/whoami HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${to.ip} 8080`;
      const out = await k.kubectl(['-n', NS, 'exec', from.name, '--', 'sh', '-c', request]);
      return out.trim().split('\n').pop()?.trim();
    };
    assert.equal(await whoami(a, b), a.ip, 'cross-node: B sees A own pod IP');
    assert.equal(await whoami(b, a), b.ip, 'cross-node: A sees B own pod IP');
    inetProbe = await startProbeServer(state.internetNs, 8099);
    const seenByInternet = await k.kubectl([
      '-n',
      NS,
      'exec',
      a.name,
      '--',
      'nc',
      '-w',
      '5',
      state.internetServer,
      '8099',
    ]);
    assert.equal(seenByInternet.trim(), nodeOf(a.node).privateIp, 'internet: SNATed to the node primary IP');
  });

  test('scaled down to 4: kubelet CNI DEL returns each removed pod IP to the pool', async () => {
    const before = await webPods();
    await k.kubectl(['-n', NS, 'scale', 'deployment', 'web', '--replicas=4']);
    const left = await waitFor(
      '4 web pods left',
      async () => {
        const ps = await webPods();
        return ps.length === 4 ? ps : undefined;
      },
      120_000,
      1000,
    );
    const gone = before.filter((p) => !left.some((l) => l.name === p.name));
    assert.equal(gone.length, 8);
    for (const n of state.nodes) {
      const removed = gone.filter((p) => p.node === n.name).map((p) => p.ip);
      if (removed.length === 0) continue;
      await waitFor(
        `${n.name}: the ${removed.length} removed IPs no longer assigned`,
        async () => {
          const assigned = poolIps(await daemonPool(state, n.name), 'assigned');
          return removed.every((ip) => !assigned.includes(ip)) ? true : undefined;
        },
        60_000,
        2000,
      );
    }
  });

  test('scaled past the m5.large limit: extra pods stay ContainerCreating, their FailedCreatePodSandBox Events carry the daemon words', async () => {
    await k.kubectl(
      ['apply', '-f', '-'],
      deployment('crowd', 30, state.images.busybox.ref, {
        nodeSelector: { 'kubernetes.io/hostname': small.name },
      }),
    );
    const limitEvent = await waitFor(
      'a FailedCreatePodSandBox Event naming instance-limit',
      async () => {
        const ev = await k.json<{
          items: { reason: string; message: string; involvedObject: { name: string } }[];
        }>(['-n', NS, 'get', 'events', '--field-selector', 'reason=FailedCreatePodSandBox']);
        return ev.items.find(
          (e) => e.involvedObject.name.startsWith('crowd-') && e.message.includes('instance-limit'),
        );
      },
      300_000,
      2000,
    );
    assert.match(limitEvent.message, /m5\.large holds at most 3 interfaces x 9 pod IPs = 27 pod IPs/);
    assert.match(limitEvent.message, /--max-pods to 29/);
    // the node is full: every pod-network pod on it holds one of its 27 IPs, the rest wait
    const onSmall = async () =>
      (await pods(state, NS))
        .filter((p) => p.node === small.name)
        .concat((await pods(state, NAMESPACE)).filter((p) => p.node === small.name && !p.hostNetwork));
    const settled = await waitFor(
      '27 pod IPs in use on the m5.large',
      async () => {
        const ps = await onSmall();
        return ps.filter((p) => p.ip && !p.hostNetwork).length === 27 ? ps : undefined;
      },
      300_000,
      2000,
    );
    const crowd = settled.filter((p) => p.name.startsWith('crowd-'));
    const waiting = crowd.filter((p) => !p.ip);
    assert.ok(waiting.length > 0, 'some crowd pods wait');
    for (const p of waiting) assert.equal(p.phase, 'Pending', `${p.name} is still being created (no IP)`);
    const pool = await daemonPool(state, small.name);
    assert.equal(pool.assigned, 27);
    assert.equal(pool.noIpReason?.split(':')[0], 'instance-limit');
    await k.kubectl(['-n', NS, 'delete', 'deployment', 'crowd', '--wait=false']);
    await waitFor(
      'crowd pods gone',
      async () => ((await pods(state, NS, 'app=crowd')).length === 0 ? true : undefined),
      180_000,
      2000,
    );
  });

  test('a pod force-deleted while its node kubelet is stopped: its IP comes back once kubelet returns', async () => {
    // its own pod pinned to the m5.4xlarge: which web pods survived the scale-down is the
    // ReplicaSet's choice (equal per-node counts tie-break on age), and it may keep none there
    await k.kubectl(
      ['apply', '-f', '-'],
      deployment('victim', 1, state.images.busybox.ref, {
        nodeSelector: { 'kubernetes.io/hostname': large.name },
      }),
    );
    const victim = (await waitRunning(VICTIM, 1))[0]!;
    assert.equal(victim.node, large.name, 'the victim runs on the m5.4xlarge');
    await controlNode(large.name, 'kubelet/stop');
    try {
      await k.kubectl(['-n', NS, 'delete', 'pod', victim.name, '--force', '--grace-period=0']);
      // still assigned: kubelet is down, nobody on the node has been told (kubectl exec needs the
      // kubelet, so ask the daemon's socket on the node directly)
      assert.ok(poolIps(await socketPool(large), 'assigned').includes(victim.ip));
    } finally {
      await controlNode(large.name, 'kubelet/start');
    }
    await waitFor(
      `${victim.ip} no longer assigned on ${large.name}`,
      async () =>
        poolIps(await daemonPool(state, large.name), 'assigned').includes(victim.ip) ? undefined : true,
      180_000,
      3000,
    );
    const again = (await waitRunning(VICTIM, 1))[0]!;
    assert.notEqual(again.name, victim.name, 'the Deployment replaced the force-deleted pod');
  });

  test('the daemon pod deleted mid scale-up: all pods Running, no address on two pods, none leaked', async () => {
    const oldDaemon = await daemonPod(state, large.name);
    await k.kubectl(['-n', NS, 'scale', 'deployment', 'web', '--replicas=20']);
    await k.kubectl(['-n', NAMESPACE, 'delete', 'pod', oldDaemon, '--wait=false']);
    const ps = await waitRunning(WEB, 20, 300_000);
    assert.equal(new Set(ps.map((p) => p.ip)).size, 20, 'twenty distinct pod IPs');
    assert.notEqual(await daemonPod(state, large.name), oldDaemon, 'the DaemonSet recreated the daemon');
    for (const n of state.nodes) {
      const podIps = [...(await pods(state, NS)), ...(await pods(state, NAMESPACE))]
        .filter((p) => p.node === n.name && !p.hostNetwork && p.ip)
        .map((p) => p.ip)
        .sort();
      const pool = await daemonPool(state, n.name);
      assert.deepEqual(
        poolIps(pool, 'assigned').sort(),
        podIps,
        `${n.name}: assigned IPs are exactly its pods' IPs`,
      );
      const held = new Set(poolIps(pool));
      const inCloud = (await instanceEnis(state, n.instanceId)).flatMap((e) => e.secondaries);
      for (const ip of inCloud)
        assert.ok(held.has(ip), `${n.name}: LocalStack IP ${ip} is known to the pool (not leaked)`);
    }
  });

  test('helm upgrade changing WARM_IP_TARGET rolls the DaemonSet and the pool follows', async () => {
    const before = new Set([await daemonPod(state, small.name), await daemonPod(state, large.name)]);
    await helm(state.kubeconfig, [
      'upgrade',
      RELEASE,
      join(ROOT, 'helm', 'vpc-ipam'),
      '--namespace',
      NAMESPACE,
      '--reuse-values',
      '--set',
      'daemon.env.WARM_IP_TARGET=3',
      '--set',
      'daemon.env.VPC_IPAM_SHRINK_DELAY=5',
    ]);
    await waitFor(
      'both daemon pods replaced and ready',
      async () => {
        const ds = await k.json<{ status: { updatedNumberScheduled?: number; numberReady: number } }>([
          '-n',
          NAMESPACE,
          'get',
          'daemonset',
          `${RELEASE}-daemon`,
        ]);
        if (ds.status.updatedNumberScheduled !== 2 || ds.status.numberReady !== 2) return undefined;
        const now = [await daemonPod(state, small.name), await daemonPod(state, large.name)];
        return now.every((p) => !before.has(p)) ? true : undefined;
      },
      300_000,
      2000,
    );
    const pool = await waitFor(
      'the m5.4xlarge pool shrinks to WARM_IP_TARGET=3 free IPs',
      async () => {
        const p = await daemonPool(state, large.name);
        return p.plan.includes('WARM_IP_TARGET=3') && p.free <= 3 + 4 && p.cooling === 0 ? p : undefined;
      },
      180_000,
      3000,
    );
    assert.ok(pool.free >= 3, `at least 3 free IPs kept (${pool.free})`);
    const nis = await k.json<{ status: { free: number; plan: string } }>(['get', 'nis', large.name]);
    assert.match(nis.status.plan, /WARM_IP_TARGET=3/);
  });

  test('a node whose instance is terminated and deleted from the cluster: the janitor removes its ENIs, and no other', async () => {
    const smallEnis = await instanceEnis(state, small.instanceId);
    const secondaries = smallEnis.filter((e) => e.primary !== small.privateIp).map((e) => e.eniId);
    assert.ok(secondaries.length > 0, 'the daemon attached secondary ENIs to the m5.large');
    const largeEnis = (await instanceEnis(state, large.instanceId)).map((e) => e.eniId);
    await controlNode(small.name, 'stop');
    await terminateLikeEc2(state, small.instanceId);
    await k.kubectl(['delete', 'node', small.name]);
    await waitFor(
      `the m5.large's ${secondaries.length} secondary ENIs deleted`,
      async () => {
        const left = await enisExist(state, secondaries);
        return left.length === 0 ? true : undefined;
      },
      240_000,
      3000,
    );
    const stillThere = await enisExist(state, largeEnis);
    assert.deepEqual(stillThere.sort(), [...largeEnis].sort(), 'every ENI of the m5.4xlarge is untouched');
  });
});
