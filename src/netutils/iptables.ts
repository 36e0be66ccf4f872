// iptables through save/restore: read one table as text, write our chains atomically with
// `iptables-restore --noflush` (other tables and chains untouched). Works on the nft backend
// (iptables-nft) and on legacy hosts when the legacy binaries are configured.
import { type Runner, runChecked } from './exec.ts';

export interface IptablesTool {
  /** `iptables-save -t <table>` output. */
  save(table: string): Promise<string>;
  /** Feeds a restore script with --noflush (one atomic commit per table section). */
  restore(script: string): Promise<void>;
}

export interface IptablesPaths {
  save: string;
  restore: string;
}

export const NFT_PATHS: IptablesPaths = { save: 'iptables-save', restore: 'iptables-restore' };

export function createIptablesTool(runner: Runner, paths: IptablesPaths = NFT_PATHS): IptablesTool {
  return {
    async save(table) {
      if (!/^[a-z]+$/.test(table)) throw new Error(`invalid iptables table ${table}`);
      return (await runChecked(runner, paths.save, ['-t', table])).stdout;
    },
    async restore(script) {
      await runChecked(runner, paths.restore, ['--noflush', '--wait'], { input: script });
    },
  };
}
