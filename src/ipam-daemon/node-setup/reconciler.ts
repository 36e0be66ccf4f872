// Node setup as the daemon runs it: observe the kernel (3 `ip -j` reads, 2 iptables-save), plan
// (pure, plan.ts), apply (one `ip -batch`, sysctl writes, one iptables-restore). Runs are serialised;
// an interface the cloud attached but the kernel does not show yet makes the run fail after
// everything else is applied, so the daemon keeps that interface's IPs back and retries.
import type { Logger } from '../../lib/log.ts';
import { type Runner, spawnRunner } from '../../netutils/exec.ts';
import { createIpTool, type IpTool } from '../../netutils/ip.ts';
import { createIptablesTool, type IptablesTool } from '../../netutils/iptables.ts';
import { createSysctlTool, type SysctlTool } from '../../netutils/sysctl.ts';
import type { InterfaceInfo, NodeInfo } from '../../providers/types.ts';
import type { SnatConfig } from '../config.ts';
import type { NodeSetupHook } from '../daemon.ts';
import type { AwsHostCleaner } from '../takeover/aws-host.ts';
import {
  DEFAULT_NODE_NET,
  type NodeNetOptions,
  type NodeSetupPlan,
  type ObservedNode,
  planNodeSetup,
} from './plan.ts';

export interface NodeSetupOptions {
  snat: SnatConfig;
  /** Veth prefixes, external service CIDRs, ENI MTU (default DEFAULT_NODE_NET). */
  net?: NodeNetOptions;
  logger: Logger;
  /** Re-run with the last inputs this often to repair drift (0: only when the daemon asks). */
  resyncIntervalMs?: number;
  runner?: Runner;
  ip?: IpTool;
  iptables?: IptablesTool;
  sysctl?: SysctlTool;
  /**
   * Taking the node over from aws-node (takeover/): our chains also match the adopted pods' host
   * veths (`eni+`), and once ours are in place aws-node's SNAT/connmark state is removed.
   */
  takeover?: { vethPrefixes: readonly string[]; cleaner?: AwsHostCleaner };
}

export class InterfaceNotVisibleError extends Error {
  override name = 'InterfaceNotVisibleError';
}

export interface NodeSetup extends NodeSetupHook {
  /** The last plan applied (for tests and diagnostics). */
  readonly lastPlan: NodeSetupPlan | null;
  /** Stops the periodic resync. */
  stop(): void;
}

export function createNodeReconciler(options: NodeSetupOptions): NodeSetup {
  const runner = options.runner ?? spawnRunner;
  const ip = options.ip ?? createIpTool(runner);
  const iptables = options.iptables ?? createIptablesTool(runner);
  const sysctl = options.sysctl ?? createSysctlTool();
  const log = options.logger;
  let chain: Promise<void> = Promise.resolve();
  let lastPlan: NodeSetupPlan | null = null;
  let lastInputs: [NodeInfo, InterfaceInfo[]] | null = null;
  let timer: NodeJS.Timeout | null = null;

  const observe = async (): Promise<ObservedNode> => {
    const [links, routes, rules, nat, mangle] = await Promise.all([
      ip.json<ObservedNode['links'][number]>(['addr', 'show']),
      ip.json<ObservedNode['routes'][number]>(['route', 'show', 'table', 'all', 'proto', '118']),
      ip.json<ObservedNode['rules'][number]>(['rule', 'show']),
      iptables.save('nat'),
      iptables.save('mangle'),
    ]);
    return { links, routes, rules, nat, mangle };
  };

  const run = async (node: NodeInfo, interfaces: InterfaceInfo[]): Promise<void> => {
    const observed = await observe();
    // Our veth prefix and, when taking over, aws-node's: both carry pod traffic.
    const net = options.net ?? DEFAULT_NODE_NET;
    const vethPrefixes = [...new Set([...net.vethPrefixes, ...(options.takeover?.vethPrefixes ?? [])])];
    const plan = planNodeSetup(node, interfaces, options.snat, observed, { ...net, vethPrefixes });
    lastPlan = plan;
    if (plan.ipLines.length > 0) {
      log.info({ changes: plan.ipLines.map((l) => l.join(' ')) }, 'node setup: applying routes/rules/links');
      await ip.batch(plan.ipLines);
    }
    const changed: string[] = [];
    for (const s of plan.sysctls) {
      if (await sysctl.ensure(s.key, s.value)) changed.push(`${s.key.join('.')}=${s.value}`);
    }
    if (changed.length > 0) log.info({ changed }, 'node setup: sysctls');
    if (plan.iptables) {
      log.info({ script: plan.iptables }, 'node setup: applying iptables');
      await iptables.restore(plan.iptables);
    }
    // Only now, with our SNAT and connmark rules committed: new pod connections never lack SNAT.
    await options.takeover?.cleaner?.clean(observed);
    if (plan.missing.length > 0) {
      const list = plan.missing.map((m) => `${m.interfaceId} (${m.mac})`).join(', ');
      throw new InterfaceNotVisibleError(`attached interface(s) not visible on the node yet: ${list}`);
    }
  };

  return {
    get lastPlan() {
      return lastPlan;
    },
    reconcile(node, interfaces) {
      lastInputs = [node, interfaces];
      const next = chain.then(() => run(node, interfaces));
      chain = next.catch(() => {});
      if (!timer && (options.resyncIntervalMs ?? 0) > 0) {
        // Drift repair: someone flushed iptables or deleted a route; converge again.
        timer = setInterval(() => {
          if (!lastInputs) return;
          const [n, i] = lastInputs;
          chain = chain
            .then(() => run(n, i))
            .catch((err: Error) => log.warn({ err: err.message }, 'node setup resync failed'));
        }, options.resyncIntervalMs);
        timer.unref();
      }
      return next;
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
