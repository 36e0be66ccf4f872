// Removing aws-node's node-level packet filter state (aws-host-plan.ts) once node setup has put
// ours in place. Called by the node reconciler right after a run whose iptables are converged, so
// SNAT for new pod connections never lapses. Idempotent: a node without aws-node's state costs the
// reads only.
import type { Logger } from '../../lib/log.ts';
import { type Runner, runChecked } from '../../netutils/exec.ts';
import type { IptablesTool } from '../../netutils/iptables.ts';
import { type AwsHostCleanup, planAwsHostCleanup } from './aws-host-plan.ts';

export interface AwsHostCleaner {
  /** Removes what is left of aws-node's SNAT/connmark state; returns what was removed. */
  clean(observed: { nat: string; mangle: string }): Promise<AwsHostCleanup>;
}

export function createAwsHostCleaner(deps: {
  runner: Runner;
  iptables: IptablesTool;
  logger: Logger;
}): AwsHostCleaner {
  const { runner, iptables, logger } = deps;
  let nftMissing = false;
  const nftTables = async (): Promise<string> => {
    if (nftMissing) return '';
    try {
      return (await runChecked(runner, 'nft', ['list', 'tables'])).stdout;
    } catch (err) {
      // Without nft there can be no aws-cni nftables table that we could remove anyway.
      if (/cannot run nft/.test((err as Error).message)) {
        nftMissing = true;
        logger.warn("nft is not installed: aws-node's nftables connmark table (if any) is left in place");
        return '';
      }
      throw err;
    }
  };
  return {
    async clean(observed) {
      const plan = planAwsHostCleanup({ ...observed, nftTables: await nftTables() });
      if (plan.found.length === 0) return plan;
      if (plan.iptables) await iptables.restore(plan.iptables);
      for (const [family, name] of plan.nftTables)
        await runChecked(runner, 'nft', ['delete', 'table', family, name]);
      logger.info(
        { removed: plan.found },
        "takeover: removed aws-node's SNAT and connmark rules (ours are in place)",
      );
      return plan;
    },
  };
}
