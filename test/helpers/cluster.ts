// Test helpers for the cluster suites (test/cluster/): the running cluster test bed (cluster/up.sh
// brings it up when none is), kubectl against it, the daemon's pool as its own CLI reports it from
// inside the DaemonSet pod, the test bed's control socket (stop/start a kubelet, stop a node), and
// what LocalStack says each instance's ENIs hold.
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  DescribeNetworkInterfacesCommand,
  DetachNetworkInterfaceCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { k8sBin } from '../../cluster/proc.ts';
import {
  CONTROL_SOCKET,
  NAMESPACE,
  ROOT,
  readState,
  type TestbedNode,
  type TestbedState,
} from '../../cluster/testbed.ts';
import { localEc2Client } from '../../localstack/seed.ts';
import type { PoolStatus } from '../../src/ipam-daemon/api-types.ts';
import { getJson } from '../../src/ipam-daemon/cli.ts';

const pexec = promisify(execFile);

/** The running test bed, brought up with cluster/up.sh when none is (fails loudly with its log). */
export async function testbed(): Promise<TestbedState> {
  const running = readState();
  if (running) return running;
  try {
    await pexec('bash', [join(ROOT, 'cluster', 'up.sh')], { timeout: 30 * 60_000, maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`cluster/up.sh failed: ${err.stderr?.split('\n').slice(-30).join('\n') || err.message}`);
  }
  const state = readState();
  if (!state)
    throw new Error('cluster/up.sh returned but no test bed is running (see .run/cluster/testbed.log)');
  return state;
}

export async function downTestbed(): Promise<void> {
  await pexec('bash', [join(ROOT, 'cluster', 'down.sh')], { timeout: 5 * 60_000 });
}

export function kubectlFor(state: TestbedState) {
  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const p = pexec(k8sBin('kubectl'), ['--kubeconfig', state.kubeconfig, ...args], {
      maxBuffer: 64 << 20,
      timeout: 120_000,
    });
    if (input !== undefined) p.child.stdin?.end(input);
    try {
      return (await p).stdout;
    } catch (e) {
      const err = e as Error & { stderr?: string };
      throw new Error(`kubectl ${args.join(' ')} failed: ${err.stderr?.trim() || err.message}`);
    }
  };
  const json = async <T>(args: string[]): Promise<T> =>
    JSON.parse(await kubectl([...args, '-o', 'json'])) as T;
  return { kubectl, json };
}

/** The vpc-ipam daemon pod on a node. */
export async function daemonPod(state: TestbedState, node: string): Promise<string> {
  const { json } = kubectlFor(state);
  const pods = await json<{
    items: { metadata: { name: string; deletionTimestamp?: string }; status: { phase: string } }[];
  }>([
    '-n',
    NAMESPACE,
    'get',
    'pods',
    '-l',
    'app.kubernetes.io/component=daemon',
    '--field-selector',
    `spec.nodeName=${node}`,
  ]);
  const pod = pods.items.find((p) => !p.metadata.deletionTimestamp && p.status.phase === 'Running');
  if (!pod) throw new Error(`no running vpc-ipam daemon pod on ${node}`);
  return pod.metadata.name;
}

/** `vpc-ipam <args>` run inside the node's daemon container, as an operator would; its stdout. */
export async function daemonCli(state: TestbedState, node: string, args: string[]): Promise<string> {
  const { kubectl } = kubectlFor(state);
  const pod = await daemonPod(state, node);
  return kubectl([
    '-n',
    NAMESPACE,
    'exec',
    pod,
    '-c',
    'ipamd',
    '--',
    'node',
    '/app/src/ipam-daemon/cli.ts',
    ...args,
  ]);
}

/** The node's pool as `vpc-ipam pool --json` prints it inside the daemon's own container. */
export async function daemonPool(state: TestbedState, node: string): Promise<PoolStatus> {
  return JSON.parse(await daemonCli(state, node, ['pool', '--json'])) as PoolStatus;
}

/** The pool straight from the daemon's socket on the node (works while the node's kubelet is down). */
export async function socketPool(node: TestbedNode): Promise<PoolStatus> {
  const r = await getJson(node.socketPath, '/v1/pool');
  if (r.status !== 200)
    throw new Error(`GET /v1/pool on ${node.name}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as PoolStatus;
}

/** IPs of the pool in a given state. */
export function poolIps(pool: PoolStatus, state?: 'free' | 'assigned' | 'cooling' | 'releasing'): string[] {
  return pool.interfaces.flatMap((i) =>
    (i.ips ?? []).filter((a) => !state || a.state === state).map((a) => a.ip),
  );
}

/** Asks the test bed's supervisor: kubelet/stop, kubelet/start, stop (the whole node). */
export function controlNode(node: string, action: 'kubelet/stop' | 'kubelet/start' | 'stop'): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: CONTROL_SOCKET, path: `/nodes/${node}/${action}`, method: 'POST', timeout: 120_000 },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`${action} ${node}: ${body}`)),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export interface EniIps {
  eniId: string;
  primary: string;
  secondaries: string[];
  tags: Record<string, string>;
}

/** What LocalStack says each ENI attached to the instance holds. */
export async function instanceEnis(state: TestbedState, instanceId: string): Promise<EniIps[]> {
  const ec2 = localEc2Client(state.ec2Endpoint, state.region);
  try {
    const out = await ec2.send(
      new DescribeNetworkInterfacesCommand({
        Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }],
      }),
    );
    return (out.NetworkInterfaces ?? []).map((e) => ({
      eniId: e.NetworkInterfaceId!,
      primary: e.PrivateIpAddress ?? '',
      secondaries: (e.PrivateIpAddresses ?? []).filter((a) => !a.Primary).map((a) => a.PrivateIpAddress!),
      tags: Object.fromEntries((e.TagSet ?? []).map((t) => [t.Key ?? '', t.Value ?? ''])),
    }));
  } finally {
    ec2.destroy();
  }
}

export interface PodView {
  name: string;
  node: string;
  ip: string;
  phase: string;
  ready: boolean;
  hostNetwork: boolean;
}

interface PodJson {
  metadata: { name: string; deletionTimestamp?: string };
  spec: { nodeName?: string; hostNetwork?: boolean };
  status: { phase: string; podIP?: string; conditions?: { type: string; status: string }[] };
}

/** Pods of a namespace (optionally a label selector), summarised. */
export async function pods(state: TestbedState, namespace: string, selector?: string): Promise<PodView[]> {
  const { json } = kubectlFor(state);
  const list = await json<{ items: PodJson[] }>([
    '-n',
    namespace,
    'get',
    'pods',
    ...(selector ? ['-l', selector] : []),
  ]);
  return list.items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({
      name: p.metadata.name,
      node: p.spec.nodeName ?? '',
      ip: p.status.podIP ?? '',
      phase: p.status.phase,
      ready: (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
      hostNetwork: p.spec.hostNetwork === true,
    }));
}

/**
 * Terminates the instance in LocalStack, then does what EC2 does and moto does not: moto leaves a
 * terminated instance's ENIs attached ("in-use"), where EC2 detaches every secondary ENI (and
 * deletes those whose DeleteOnTermination is set). The helper detaches them all and deletes none:
 * the leak the janitor exists for (an ENI whose DeleteOnTermination never got set).
 */
export async function terminateLikeEc2(state: TestbedState, instanceId: string): Promise<void> {
  const ec2 = localEc2Client(state.ec2Endpoint, state.region);
  try {
    const out = await ec2.send(
      new DescribeNetworkInterfacesCommand({
        Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }],
      }),
    );
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
    for (const eni of out.NetworkInterfaces ?? []) {
      if ((eni.Attachment?.DeviceIndex ?? 0) === 0 || !eni.Attachment?.AttachmentId) continue;
      await ec2.send(
        new DetachNetworkInterfaceCommand({ AttachmentId: eni.Attachment.AttachmentId, Force: true }),
      );
    }
  } finally {
    ec2.destroy();
  }
}

/** Which of these ENIs LocalStack still has. */
export async function enisExist(state: TestbedState, ids: string[]): Promise<string[]> {
  const ec2 = localEc2Client(state.ec2Endpoint, state.region);
  try {
    const out = await ec2.send(
      new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'network-interface-id', Values: ids }] }),
    );
    return (out.NetworkInterfaces ?? []).map((e) => e.NetworkInterfaceId!);
  } finally {
    ec2.destroy();
  }
}
