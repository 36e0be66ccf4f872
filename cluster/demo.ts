// The main job's second half (`npm run demo` runs it after scripts/demo.ts; see docs/demo.md):
// vpc-ipam as users run it, on the cluster test bed (cluster/up.sh: real kube-apiserver, kubelet,
// containerd; the chart installed with `helm install`).
//   1. bring the test bed up, or reuse the one already up;
//   2. kubectl get nodes -o wide, the vpc-ipam pods;
//   3. a Deployment of 8 busybox pods: kubectl get pods -o wide, each pod IP checked against the
//      ENIs LocalStack says its node holds;
//   4. traffic with kubectl exec: across nodes (the server sees the client's pod IP) and to the
//      internet namespace (SNATed to the node's primary IP);
//   5. kubectl get nodeipamstatuses and `vpc-ipam pool` inside the daemon pod;
//   6. clean-up: the Deployment deleted, its IPs no longer assigned; the test bed taken down again
//      if this run brought it up (--keep leaves it up).
// Prints ✓/✗ per check and ends with "cluster demo: N checks passed, M failed"; exits 1 if any failed.
//
//   node cluster/demo.ts [--keep]
import { parseArgs } from 'node:util';
import {
  daemonCli,
  daemonPool,
  downTestbed,
  instanceEnis,
  kubectlFor,
  type PodView,
  pods,
  poolIps,
  testbed,
} from '../test/helpers/cluster.ts';
import { requireNetnsPrivileges } from '../test/helpers/netns.ts';
import { startProbeServer } from '../test/helpers/probe.ts';
import { waitFor } from './proc.ts';
import { NAMESPACE, readState } from './testbed.ts';

const NS = 'demo';
const REPLICAS = 8;
let passed = 0;
let failed = 0;
const t0 = performance.now();
const color = process.stdout.isTTY === true;
const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const say = (s = '') => process.stdout.write(`${s}\n`);
const step = (s: string) =>
  say(`\n${paint('1', `== ${s}`)}  ${paint('2', `(${((performance.now() - t0) / 1000).toFixed(1)} s)`)}`);
function check(ok: boolean, what: string, detail = ''): boolean {
  if (ok) passed++;
  else failed++;
  say(`  ${ok ? paint('32', '✓') : paint('31', '✗')} ${what}${detail ? paint('2', `  ${detail}`) : ''}`);
  return ok;
}
const indent = (text: string) =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { keep: { type: 'boolean', default: false } } });
  requireNetnsPrivileges();
  step('1. the cluster test bed (cluster/up.sh; reused when already up)');
  const wasUp = readState() !== undefined;
  const state = await testbed();
  say(
    `  ${wasUp ? 'reused the running test bed' : `brought up in ${state.upSeconds.toFixed(0)} s`}; KUBECONFIG=${state.kubeconfig}`,
  );
  const { kubectl } = kubectlFor(state);
  try {
    step('2. kubectl get nodes -o wide; the vpc-ipam pods (DaemonSet + janitor, helm install)');
    await waitFor(
      'both vpc-ipam daemons ready',
      async () => {
        const ds = JSON.parse(
          await kubectl(['-n', NAMESPACE, 'get', 'daemonset', 'vpc-ipam-daemon', '-o', 'json']),
        ) as {
          status: { numberReady: number };
        };
        return ds.status.numberReady === state.nodes.length ? true : undefined;
      },
      240_000,
      1000,
    );
    say(indent(await kubectl(['get', 'nodes', '-o', 'wide'])));
    say(indent(await kubectl(['-n', NAMESPACE, 'get', 'pods', '-o', 'wide'])));

    step(`3. a Deployment of ${REPLICAS} pods: kubectl get pods -o wide`);
    await kubectl(['create', 'namespace', NS]).catch(() => '');
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: NS },
        spec: {
          replicas: REPLICAS,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: {
              terminationGracePeriodSeconds: 1,
              topologySpreadConstraints: [
                {
                  maxSkew: 1,
                  topologyKey: 'kubernetes.io/hostname',
                  whenUnsatisfiable: 'DoNotSchedule',
                  labelSelector: { matchLabels: { app: 'web' } },
                },
              ],
              containers: [
                {
                  name: 'httpd',
                  image: state.images.busybox.ref,
                  command: ['httpd', '-f', '-p', '8080', '-h', '/www'],
                },
              ],
            },
          },
        },
      }),
    );
    const ps = await waitFor(
      `${REPLICAS} pods Running`,
      async () => {
        const list = await pods(state, NS, 'app=web');
        return list.length === REPLICAS && list.every((p) => p.ready && p.ip) ? list : undefined;
      },
      240_000,
      1000,
    );
    say(indent(await kubectl(['-n', NS, 'get', 'pods', '-o', 'wide'])));
    check(new Set(ps.map((p) => p.ip)).size === REPLICAS, `${REPLICAS} pods Running with distinct IPs`);
    for (const n of state.nodes) {
      const enis = await instanceEnis(state, n.instanceId);
      const mine = ps.filter((p) => p.node === n.name);
      const onEni = mine.filter((p) => enis.some((e) => e.secondaries.includes(p.ip)));
      check(
        onEni.length === mine.length,
        `${n.name} (${n.instanceType}): every pod IP is a secondary IP of its ENIs in LocalStack`,
        `${onEni.length}/${mine.length} on ${enis.length} ENI(s)`,
      );
    }

    step('4. traffic (kubectl exec): across nodes keeps the pod IP, to the internet SNATs');
    const a = ps.find((p) => p.node === state.nodes[0]!.name);
    const b = ps.find((p) => p.node === state.nodes[1]!.name);
    if (check(a !== undefined && b !== undefined, 'pods on both nodes')) {
      const whoami = async (from: PodView, to: PodView) => {
        const req = `printf 'GET /cgi-bin/whoami HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${to.ip} 8080`;
        return (await kubectl(['-n', NS, 'exec', from.name, '--', 'sh', '-c', req]))
          .trim()
          .split('\n')
          .pop()
          ?.trim();
      };
      const seen = await whoami(a!, b!).catch((e: Error) => e.message);
      check(
        seen === a!.ip,
        `${a!.name} -> ${b!.ip}:8080 across nodes: the server saw ${seen}`,
        `pod IP ${a!.ip}`,
      );
      const probe = await startProbeServer(state.internetNs, 8099);
      try {
        const out = await kubectl([
          '-n',
          NS,
          'exec',
          a!.name,
          '--',
          'nc',
          '-w',
          '5',
          state.internetServer,
          '8099',
        ]).catch((e: Error) => e.message);
        const primary = state.nodes.find((n) => n.name === a!.node)!.privateIp;
        check(
          out.trim() === primary,
          `${a!.name} -> internet ${state.internetServer}: seen as ${out.trim()}`,
          `node primary ${primary}`,
        );
      } finally {
        probe.stop();
      }
    }

    step('5. the pool: kubectl get nodeipamstatuses; vpc-ipam pool inside the daemon pod');
    await new Promise((r) => setTimeout(r, 2000));
    say(indent(await kubectl(['get', 'nodeipamstatuses'])));
    const small = state.nodes.find((n) => n.instanceType === 'm5.large') ?? state.nodes[0]!;
    say(indent(await daemonCli(state, small.name, ['pool'])));

    step('6. clean-up: delete the Deployment; its IPs are no longer assigned');
    await kubectl(['-n', NS, 'delete', 'deployment', 'web']);
    for (const n of state.nodes) {
      const mine = ps.filter((p) => p.node === n.name).map((p) => p.ip);
      const ok = await waitFor(
        `${n.name}: pod IPs released`,
        async () => {
          const assigned = poolIps(await daemonPool(state, n.name), 'assigned');
          return mine.every((ip) => !assigned.includes(ip)) ? true : undefined;
        },
        120_000,
        2000,
      ).catch(() => false);
      check(ok, `${n.name}: the ${mine.length} pod IPs went back to the pool (kubelet's CNI DEL)`);
    }
  } finally {
    if (!wasUp && !values.keep) {
      step('the test bed goes down again (it was not up before; --keep leaves it up)');
      await downTestbed();
      check(readState() === undefined, 'cluster/down.sh: test bed down');
    }
  }
}

main()
  .catch((e: unknown) => check(false, 'cluster demo', (e as Error).message))
  .finally(() => {
    say(
      `\ncluster demo: ${passed} checks passed, ${failed} failed (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    process.exitCode = failed > 0 ? 1 : 0;
  });
