// Calls a CNI plugin exactly as a container runtime does: CNI_* env vars, the network config on
// stdin, the result or error as JSON on stdout, exit code 0/1. Optionally inside a node netns
// (`ip netns exec <node>`), since in the e2e VPC that netns is the node's host network.
// Also runs conflists (chaining: name/cniVersion injected, prevResult passed along, DEL reversed).
// vpcCniConfig / addLikeKubelet: the vpc-cni config and the retried ADD the e2e suites and the demo use.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { SLOWDOWN, scaled } from './slowdown.ts';

export interface CniCall {
  command: 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: string;
  /** Directories with chained plugins. */
  cniPath?: string;
}

export interface CniOutcome {
  code: number;
  /** Parsed stdout (result, error or version), null when empty. */
  out: Record<string, unknown> | null;
  stderr: string;
  ms: number;
}

/**
 * Where the plugin runs: the root netns (undefined), a node netns by name (`ip netns exec`), or
 * any command prefix that enters the node (e.g. nsenter into a node's mount and network namespaces).
 */
export type PluginPlace = string | { enter: string[] } | undefined;

export function execPlugin(
  binary: string,
  call: CniCall,
  config: Record<string, unknown>,
  nodeNs?: PluginPlace,
): Promise<CniOutcome> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: call.command,
    CNI_PATH: call.cniPath ?? '/usr/lib/cni',
  };
  if (call.containerId !== undefined) env.CNI_CONTAINERID = call.containerId;
  if (call.netns !== undefined) env.CNI_NETNS = call.netns;
  if (call.ifName !== undefined) env.CNI_IFNAME = call.ifName;
  if (call.args !== undefined) env.CNI_ARGS = call.args;
  const [file, argv] =
    typeof nodeNs === 'object'
      ? [nodeNs.enter[0]!, [...nodeNs.enter.slice(1), binary]]
      : nodeNs
        ? ['ip', ['netns', 'exec', nodeNs, binary]]
        : [binary, []];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv as string[], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const text = Buffer.concat(out).toString('utf8').trim();
      let parsed: Record<string, unknown> | null = null;
      try {
        parsed = text === '' ? null : (JSON.parse(text) as Record<string, unknown>);
      } catch {
        parsed = { unparsable: text };
      }
      resolve({
        code: code ?? -1,
        out: parsed,
        stderr: Buffer.concat(err).toString('utf8'),
        ms: performance.now() - started,
      });
    });
    child.stdin.on('error', () => {}); // the plugin may exit before reading stdin
    child.stdin.end(JSON.stringify(config));
  });
}

/** vpc-cni's network config for a node: its daemon socket, MTU 1500, its log (cniLog or the node's dir). */
export function vpcCniConfig(
  node: { socketPath: string; dir: string; cniLog?: string },
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name: 'vpc',
    type: 'vpc-cni',
    socketPath: node.socketPath,
    mtu: 1500,
    logFile: node.cniLog ?? join(node.dir, 'cni.log'),
    // under TCG (the VM) a busy node's ADD outlasts the default 30 s daemon request timeout, the
    // shim gives up, the runtime retries and redoes the wiring over and over
    // and a connect to the socket can outlast the shim's 2 s (the one bench run before failed so)
    ...(SLOWDOWN > 1
      ? { timeoutMs: Math.min(600_000, scaled(30_000)), connectTimeoutMs: Math.min(600_000, scaled(2_000)) }
      : {}),
    ...extra,
  };
}

/**
 * ADD of a pod's eth0 as the kubelet does it: "try again later" (CNI error 11) is retried 1 s
 * apart, up to maxAttempts calls in all; any other outcome is returned at once. beforeAttempt
 * runs before each call (the demo's deadline check).
 */
export async function addLikeKubelet(
  binary: string,
  pod: { containerId: string; netns: string; podName: string },
  config: Record<string, unknown>,
  nodeNs: string,
  opts: { maxAttempts: number; beforeAttempt?: () => void },
): Promise<CniOutcome & { attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    opts.beforeAttempt?.();
    const o = await execPlugin(
      binary,
      {
        command: 'ADD',
        containerId: pod.containerId,
        netns: pod.netns,
        ifName: 'eth0',
        args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod.podName}`,
      },
      config,
      nodeNs,
    );
    if (o.code === 0 || o.out?.code !== 11 || attempts >= opts.maxAttempts) return { ...o, attempts };
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: Record<string, unknown>[];
}

/** Where a plugin type's binary lives: ours by path, the rest from CNI_PATH. */
export type Resolve = (type: string) => string;

/** ADD through a conflist; returns the last plugin's result (or the first failure). */
export async function conflistAdd(
  list: Conflist,
  call: Omit<CniCall, 'command'>,
  resolve: Resolve,
  nodeNs?: string,
) {
  let prev: Record<string, unknown> | undefined;
  let last: CniOutcome | undefined;
  for (const p of list.plugins) {
    const conf = {
      ...p,
      cniVersion: list.cniVersion,
      name: list.name,
      ...(prev ? { prevResult: prev } : {}),
    };
    last = await execPlugin(resolve(String(p.type)), { ...call, command: 'ADD' }, conf, nodeNs);
    if (last.code !== 0) return last;
    prev = last.out ?? undefined;
  }
  return last!;
}

/** DEL (reverse order) or CHECK (forward) through a conflist with the cached ADD result. */
export async function conflistRun(
  command: 'DEL' | 'CHECK',
  list: Conflist,
  call: Omit<CniCall, 'command'>,
  prevResult: Record<string, unknown> | undefined,
  resolve: Resolve,
  nodeNs?: string,
): Promise<CniOutcome[]> {
  const plugins = command === 'DEL' ? [...list.plugins].reverse() : list.plugins;
  const outcomes: CniOutcome[] = [];
  for (const p of plugins) {
    const conf = {
      ...p,
      cniVersion: list.cniVersion,
      name: list.name,
      ...(prevResult ? { prevResult } : {}),
    };
    const o = await execPlugin(resolve(String(p.type)), { ...call, command }, conf, nodeNs);
    outcomes.push(o);
    if (o.code !== 0 && command === 'CHECK') break;
  }
  return outcomes;
}
