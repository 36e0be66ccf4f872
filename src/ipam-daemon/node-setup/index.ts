// Entry point the daemon loads (src/ipam-daemon/main.ts): node networking kept converged.
import type { Logger } from '../../lib/log.ts';
import { spawnRunner } from '../../netutils/exec.ts';
import { createIptablesTool } from '../../netutils/iptables.ts';
import type { DaemonConfig } from '../config.ts';
import { nodeSetupTakeover } from '../takeover/index.ts';
import type { NodeNetOptions } from './plan.ts';
import { createNodeReconciler, type NodeSetup } from './reconciler.ts';

export { createNodeReconciler, InterfaceNotVisibleError, type NodeSetup } from './reconciler.ts';

/** Drift repair interval: cheap (5 reads), so a flushed rule set comes back within half a minute. */
export const RESYNC_INTERVAL_MS = 30_000;

/**
 * The node networking choices of this config. Our host veth prefix is the one route recovery
 * matches too (takeover/index.ts podRoutesReader); node setup adds adopted ones (reconciler.ts).
 */
export function nodeNetOptions(config: DaemonConfig): NodeNetOptions {
  return {
    vethPrefixes: [config.vethPrefix],
    externalServiceCidrs: config.externalServiceCidrs,
    eniMtu: config.eniMtu,
  };
}

export function createNodeSetup(options: { config: DaemonConfig; logger: Logger }): NodeSetup {
  const takeover = nodeSetupTakeover(options.config, {
    runner: spawnRunner,
    iptables: createIptablesTool(spawnRunner),
    logger: options.logger,
  });
  return createNodeReconciler({
    snat: options.config.snat,
    net: nodeNetOptions(options.config),
    logger: options.logger,
    resyncIntervalMs: RESYNC_INTERVAL_MS,
    ...(takeover ? { takeover } : {}),
  });
}
