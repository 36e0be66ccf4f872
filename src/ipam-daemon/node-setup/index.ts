// Entry point the daemon loads (src/ipam-daemon/main.ts): node networking kept converged.
import type { Logger } from '../../lib/log.ts';
import type { DaemonConfig } from '../config.ts';
import { createNodeReconciler, type NodeSetup } from './reconciler.ts';

export { createNodeReconciler, InterfaceNotVisibleError, type NodeSetup } from './reconciler.ts';

/** Drift repair interval: cheap (5 reads), so a flushed rule set comes back within half a minute. */
export const RESYNC_INTERVAL_MS = 30_000;

export function createNodeSetup(options: { config: DaemonConfig; logger: Logger }): NodeSetup {
  return createNodeReconciler({
    snat: options.config.snat,
    logger: options.logger,
    resyncIntervalMs: RESYNC_INTERVAL_MS,
  });
}
